"""Hand-built OTLP requests (JSON and protobuf) for the ingest tests."""

from __future__ import annotations

import json
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

NOW = time.time_ns()


def json_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def json_span(
    trace_id: str,
    span_id: str,
    name: str = "op",
    *,
    parent: str = "",
    start: int = NOW,
    duration_ms: float = 10,
    attributes: dict | None = None,
    status: int = 0,
    events: list | None = None,
    kind: int = 1,
) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(duration_ms * 1e6)),
        "attributes": [{"key": k, "value": json_value(v)} for k, v in (attributes or {}).items()],
        "events": events or [],
        "status": {"code": status},
        "someFutureField": {"ignored": True},
    }


def json_request(spans: list[dict], service: str = "agent", environment: str = "test") -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": service}},
                            {
                                "key": "deployment.environment",
                                "value": {"stringValue": environment},
                            },
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "tests", "version": "1"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def pb_request(spans: list[dict], service: str = "agent") -> bytes:
    """Protobuf with the same span dicts as ``json_span`` builds."""
    pb_spans = []
    for s in spans:
        span = PbSpan(
            trace_id=bytes.fromhex(s["traceId"]) if s["traceId"] else b"",
            span_id=bytes.fromhex(s["spanId"]) if s["spanId"] else b"",
            parent_span_id=bytes.fromhex(s["parentSpanId"]) if s["parentSpanId"] else b"",
            name=s["name"],
            kind=s["kind"],
            start_time_unix_nano=int(s["startTimeUnixNano"]),
            end_time_unix_nano=int(s["endTimeUnixNano"]),
        )
        for attr in s["attributes"]:
            value = attr["value"]
            any_value = (
                AnyValue(string_value=value["stringValue"])
                if "stringValue" in value
                else AnyValue(bool_value=value["boolValue"])
                if "boolValue" in value
                else AnyValue(int_value=int(value["intValue"]))
                if "intValue" in value
                else AnyValue(double_value=value["doubleValue"])
            )
            span.attributes.append(KeyValue(key=attr["key"], value=any_value))
        span.status.code = s["status"]["code"]
        pb_spans.append(span)
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_spans=[ScopeSpans(spans=pb_spans)],
            )
        ]
    )
    return request.SerializeToString()
