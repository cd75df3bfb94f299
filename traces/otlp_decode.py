"""Decoding OTLP/HTTP trace export requests (protobuf or JSON) into plain span records.

Both encodings end in the same ``SpanRecord`` list; spans that break the OTLP data model (bad or
all-zero ids, missing timestamps) are counted as rejected with a reason, so the endpoint can
answer with ``partial_success`` instead of failing the whole batch.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")
_TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID_RE = re.compile(r"^[0-9a-f]{16}$")
MAX_NAME = 512
_BAD_TRACE_ID = "invalid trace id (need 16 non-zero bytes)"
_BAD_SPAN_ID = "invalid span id (need 8 non-zero bytes)"
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
MAX_MESSAGES = 5


class DecodeError(Exception):
    """The body is not an OTLP trace export request (HTTP 400, not retryable)."""


@dataclass(slots=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    attributes: dict
    events: list
    links: list
    resource: dict
    scope: dict

    @property
    def service_name(self) -> str:
        return str(self.resource.get("service.name", ""))[:256]

    @property
    def environment(self) -> str:
        env = self.resource.get("deployment.environment.name",
                                self.resource.get("deployment.environment", ""))
        return str(env)[:128]


@dataclass
class Decoded:
    spans: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_MESSAGES and reason not in self.reasons:
            self.reasons.append(reason)


# --- protobuf ----------------------------------------------------------------------------------

def _pb_value(v) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, which)


def _pb_attrs(attributes) -> dict:
    # The scalar cases inline: this loop runs for every attribute of every span.
    out = {}
    for kv in attributes:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        elif which == "bool_value":
            out[kv.key] = v.bool_value
        elif which == "double_value":
            out[kv.key] = v.double_value
        else:
            out[kv.key] = _pb_value(v)
    return out


def decode_protobuf(body: bytes) -> Decoded:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (ProtobufDecodeError, ValueError) as exc:
        raise DecodeError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    out = Decoded()
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = {"name": ss.scope.name, "version": ss.scope.version}
            if ss.scope.attributes:
                scope["attributes"] = _pb_attrs(ss.scope.attributes)
            for s in ss.spans:
                trace_id, span_id, parent = s.trace_id, s.span_id, s.parent_span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    out.reject(_BAD_TRACE_ID)
                    continue
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    out.reject(_BAD_SPAN_ID)
                    continue
                _add(out, resource, scope, {
                    "trace_id": trace_id.hex(),
                    "span_id": span_id.hex(),
                    "parent_span_id": parent.hex()
                    if len(parent) == 8 and parent != _ZERO_SPAN else "",
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                    "attributes": _pb_attrs(s.attributes),
                    "events": [
                        {"name": e.name, "time_unix_nano": e.time_unix_nano,
                         "attributes": _pb_attrs(e.attributes)}
                        for e in s.events
                    ] if s.events else [],
                    "links": [
                        {"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                         "attributes": _pb_attrs(ln.attributes)}
                        for ln in s.links
                    ] if s.links else [],
                }, ids_checked=True)
    return out


# --- JSON (OTLP/JSON: lowerCamelCase keys, hex ids, enums as integers) ---------------------------

def _json_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return None
    for key, convert in (
        ("stringValue", str), ("boolValue", bool), ("intValue", int), ("doubleValue", float),
    ):
        if key in v:
            try:
                return convert(v[key])
            except (TypeError, ValueError):
                return None
    if "arrayValue" in v:
        return [_json_value(x) for x in (v["arrayValue"] or {}).get("values", []) or []]
    if "kvlistValue" in v:
        return _json_attrs((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _json_attrs(items: Any) -> dict:
    if not isinstance(items, list):
        return {}
    return {str(kv["key"]): _json_value(kv.get("value")) for kv in items
            if isinstance(kv, dict) and "key" in kv}


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        name = value.lower().removeprefix(prefix)
        if name in names:
            return names.index(name)
        if value.isdigit():
            return int(value)
    return 0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def decode_json(body: bytes) -> Decoded:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        raise DecodeError("expected an object with a resourceSpans list")
    out = Decoded()
    for rs in doc.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            raise DecodeError("resourceSpans items must be objects")
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or []:
            if not isinstance(ss, dict):
                raise DecodeError("scopeSpans items must be objects")
            raw_scope = ss.get("scope") or {}
            scope = {"name": str(raw_scope.get("name", "")),
                     "version": str(raw_scope.get("version", ""))}
            if raw_scope.get("attributes"):
                scope["attributes"] = _json_attrs(raw_scope["attributes"])
            for s in ss.get("spans") or []:
                if not isinstance(s, dict):
                    out.reject("a span must be an object")
                    continue
                status = s.get("status") or {}
                _add(out, resource, scope, {
                    "trace_id": str(s.get("traceId", "")).lower(),
                    "span_id": str(s.get("spanId", "")).lower(),
                    "parent_span_id": str(s.get("parentSpanId", "") or "").lower(),
                    "name": s.get("name", ""),
                    "kind": _enum(s.get("kind", 0), KINDS, "span_kind_"),
                    "start": _int(s.get("startTimeUnixNano")),
                    "end": _int(s.get("endTimeUnixNano")),
                    "status_code": _enum(status.get("code", 0), STATUS_CODES, "status_code_"),
                    "status_message": str(status.get("message", "") or ""),
                    "attributes": _json_attrs(s.get("attributes")),
                    "events": [
                        {"name": str(e.get("name", "")),
                         "time_unix_nano": max(_int(e.get("timeUnixNano")), 0),
                         "attributes": _json_attrs(e.get("attributes"))}
                        for e in s.get("events") or [] if isinstance(e, dict)
                    ],
                    "links": [
                        {"trace_id": str(ln.get("traceId", "")).lower(),
                         "span_id": str(ln.get("spanId", "")).lower(),
                         "attributes": _json_attrs(ln.get("attributes"))}
                        for ln in s.get("links") or [] if isinstance(ln, dict)
                    ],
                })
    return out


# --- shared validation -------------------------------------------------------------------------

def _add(out: Decoded, resource: dict, scope: dict, s: dict, *, ids_checked: bool = False) -> None:
    """Validate one span and append its record. ``ids_checked``: the ids are the hex of
    byte strings the caller checked (protobuf), and need no second look."""
    trace_id, span_id, parent = s["trace_id"], s["span_id"], s["parent_span_id"]
    if not ids_checked:
        if not _TRACE_ID_RE.match(trace_id) or trace_id == "0" * 32:
            out.reject(_BAD_TRACE_ID)
            return
        if not _SPAN_ID_RE.match(span_id) or span_id == "0" * 16:
            out.reject(_BAD_SPAN_ID)
            return
        if parent and (not _SPAN_ID_RE.match(parent) or parent == "0" * 16):
            parent = ""
    start, end = s["start"], s["end"]
    if start <= 0 or end < 0 or start >= 2**63 or end >= 2**63:
        out.reject("missing or invalid start/end time")
        return
    name = s["name"] if isinstance(s["name"], str) else str(s["name"])
    kind = s["kind"] if 0 <= s["kind"] < len(KINDS) else 0
    code = s["status_code"] if 0 <= s["status_code"] < len(STATUS_CODES) else 0
    out.spans.append(SpanRecord(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name[:MAX_NAME],
        kind=KINDS[kind], start_ns=start, end_ns=max(end, start),
        status_code=STATUS_CODES[code], status_message=s["status_message"][:4096],
        attributes=s["attributes"], events=s["events"], links=s["links"],
        resource=resource, scope=scope,
    ))


def decode_request(body: bytes, content_type: str) -> Decoded:
    if content_type == "application/json":
        return decode_json(body)
    return decode_protobuf(body)
