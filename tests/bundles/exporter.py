"""A stand-in for the export service while engineer F's ``bundles`` export is not on this branch:
a full bundle of a stored trace and its run, written from the rows as the format describes
(spans as OTLP JSON, the run as the API shows it, its events in seq order, the blobs the spans,
events and output refer to). The round-trip test imports what it writes; once the export
service lands, the test calls that instead (one line: ``export``).
"""

from __future__ import annotations

import json
from typing import Any

from payloads.models import PayloadBlob, PayloadRef
from payloads.store import payload_read
from runs.api.serializers import RunSerializer
from runs.models import Run, RunEvent
from runs.wire import event_dict
from tests.bundles.builders import entries, manifest, zip_entries
from traces.models import Span, Trace
from traces.otlp_decode import KINDS, STATUS_CODES


def any_value(value: Any) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def key_values(attributes: dict) -> list[dict]:
    return [{"key": k, "value": any_value(v)} for k, v in sorted(attributes.items())]


def otlp_span(span: Span) -> dict:
    return {
        "traceId": span.trace.trace_id, "spanId": span.span_id,
        "parentSpanId": span.parent_span_id, "name": span.name,
        "kind": KINDS.index(span.kind), "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": key_values(span.attributes),
        "events": [{"name": e["name"], "timeUnixNano": str(e["time_unix_nano"]),
                    "attributes": key_values(e.get("attributes") or {})} for e in span.events],
        "links": [{"traceId": ln["trace_id"], "spanId": ln["span_id"],
                   "attributes": key_values(ln.get("attributes") or {})} for ln in span.links],
        "status": {"code": STATUS_CODES.index(span.status_code),
                   "message": span.status_message},
    }


def export(trace_id: str) -> bytes:
    trace = Trace.objects.get(trace_id=trace_id)
    spans = list(Span.objects.filter(trace=trace).select_related("trace")
                 .order_by("start_time_unix_nano", "span_id"))
    run = Run.objects.filter(pk=trace.run_id).first() if trace.run_id else None
    events = list(RunEvent.objects.filter(run=run).order_by("seq")) if run else []
    shas = set(PayloadRef.objects.filter(span__trace=trace).values_list("blob_id", flat=True))
    if run:
        shas |= set(PayloadRef.objects.filter(run_event__run=run)
                    .values_list("blob_id", flat=True))
        if run.output_ref:
            shas.add(run.output_ref.removeprefix("sha256:"))
    blobs = {b.sha256: payload_read(b) for b in PayloadBlob.objects.filter(sha256__in=shas)}
    groups: dict[tuple, list[dict]] = {}
    for span in spans:
        key = (repr(sorted(span.resource.items())), repr(sorted(span.scope.items())))
        groups.setdefault(key, [span.resource, span.scope, []])[2].append(otlp_span(span))
    files = entries(spans=[], run=_plain(RunSerializer(run).data) if run else None,
                    events=[_plain(event_dict(e)) for e in events], payloads=blobs)
    files["spans.otlp.json"] = json.dumps({"resourceSpans": [
        {"resource": {"attributes": key_values(resource)},
         "scopeSpans": [{"scope": {"name": scope.get("name", ""),
                                   "version": scope.get("version", "")},
                         "spans": group}]}
        for resource, scope, group in groups.values()
    ]}, sort_keys=True).encode()
    doc = manifest(files, trace_id=trace_id, run_id=run.id if run else None,
                   spans=len(spans), run_events=len(events))
    return zip_entries(files, doc)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
