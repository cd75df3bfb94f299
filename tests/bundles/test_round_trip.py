"""Round trip, on SQLite and PostgreSQL: a trace with payloads and a linked run, ingested the
live way (OTLP, the run services, event appends) → exported → deleted (rows and blob files) →
imported into a fresh project → the same tree, summaries, events and blob hashes. The export
is the API's (``GET /api/v1/traces/{trace_id}/export``), streamed."""

from __future__ import annotations

import pytest
from django.core.files.storage import storages

from payloads.models import PayloadBlob, PayloadRef
from runs import services
from runs.models import Project, Run, RunEvent
from tests.bundles.builders import upload
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import NOW, json_request, json_span
from traces.models import Span, Trace

TRACE = "7a" * 16
MS = 1_000_000
SUMMARY = ("span_count", "error_count", "status", "start_time", "end_time", "duration_ms",
           "input_tokens", "output_tokens", "cost_usd", "models", "tools", "has_retry",
           "has_timeout", "root_span_name", "service_name")
SPAN = ("span_id", "parent_span_id", "name", "kind", "start_time_unix_nano",
        "end_time_unix_nano", "status_code", "status_message", "span_type", "model",
        "input_tokens", "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout",
        "events", "links", "scope")


def _live_trace(project, make_key) -> tuple[Run, str]:
    run = RunFactory(state="running", kind="agent.session", input={"goal": "report"})
    step = services.step_create(run_id=run.id, name="plan", node_ref="planner")
    services.step_transition(run_id=run.id, step_id=step.id, action="start")
    long_text = "thinking about the plan " * 1000  # over the 8 KB inline limit: a blob
    services.event_append_batch(run_id=run.id, events=[
        {"type": "llm_request", "step_id": step.id, "payload": {"model": "gpt-4o",
                                                                "text": long_text}},
        {"type": "tool_call", "step_id": step.id, "payload": {"tool": "sql_query"}},
        {"type": "log", "level": "warn", "payload": {"text": "slow tool", "stream": "stderr"}},
    ])
    services.step_transition(run_id=run.id, step_id=step.id, action="succeed")
    services.run_succeed(run_id=run.id, output={"rows": list(range(3000))})  # a blob too
    prompt = "You are a careful agent. " + "Plan the next step. " * 600
    attrs = {"tracefoundry.run_id": run.id}
    spans = [
        json_span(TRACE, "1" * 16, "invoke_agent planner", start=NOW, duration_ms=900,
                  attributes={"gen_ai.operation.name": "invoke_agent", **attrs}, status=1),
        json_span(TRACE, "2" * 16, "chat gpt-4o", parent="1" * 16, start=NOW + 10 * MS,
                  duration_ms=300, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
                      "gen_ai.prompt": prompt, **attrs}, status=1,
                  events=[{"name": "retry", "timeUnixNano": str(NOW + 20 * MS),
                           "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]}]),
        json_span(TRACE, "3" * 16, "execute_tool sql_query", parent="1" * 16,
                  start=NOW + 320 * MS, duration_ms=200, attributes={
                      "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sql_query",
                      **attrs}, status=2),
    ]
    _, key = make_key("ingest")
    resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces",
                                           json_request(spans, environment="prod"),
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    return Run.objects.get(pk=run.id), prompt


def _spans(trace: Trace) -> dict[str, dict]:
    return {s["span_id"]: s for s in Span.objects.filter(trace=trace).values(*SPAN, "attributes")}


def _events(run: Run) -> list[tuple]:
    return [(e.seq, e.type, e.level, e.source, e.created_at, e.truncated, e.payload_bytes)
            for e in RunEvent.objects.filter(run=run).order_by("seq")]


def _blob_hashes(trace: Trace, run: Run) -> set[str]:
    found = set(PayloadRef.objects.filter(span__trace=trace).values_list("blob_id", flat=True))
    found |= set(PayloadRef.objects.filter(run_event__run=run).values_list("blob_id", flat=True))
    return found | {run.output_ref.removeprefix("sha256:")}


@pytest.mark.django_db
def test_export_delete_import_gives_the_same_trace_and_run(project, make_key, engineer_client,
                                                           payload_dir):
    original, prompt = _live_trace(project, make_key)
    trace = Trace.objects.get(trace_id=TRACE)
    assert trace.run_id == original.id and original.output_ref  # the world is as intended
    summary = {f: getattr(trace, f) for f in SUMMARY}
    spans = _spans(trace)
    events = _events(original)
    hashes = _blob_hashes(trace, original)
    assert len(hashes) == 3
    contents = {h: engineer_client.get(f"/api/v1/payloads/{h}").content for h in hashes}
    projected = {f: getattr(original, f) for f in (
        "state", "attempt", "started_at", "finished_at", "steps_total", "steps_completed",
        "event_count", "error_count", "output_ref", "kind", "input", "correlation_id")}

    resp = engineer_client.get(f"/api/v1/traces/{TRACE}/export")
    assert resp.status_code == 200 and resp.streaming, resp
    assert resp["X-TraceFoundry-Export-Mode"] == "full"
    bundle = b"".join(resp.streaming_content)
    # Gone from this server: rows and blob files, so whatever comes back came from the bundle.
    trace.delete()
    storage = storages["payloads"]
    for blob in PayloadBlob.objects.all():
        storage.delete(blob.storage_key)
    PayloadBlob.objects.all().delete()
    assert not list(payload_dir.rglob("*.zst"))

    fresh = Project.objects.create(slug="fresh", name="Fresh")
    resp = engineer_client.post("/api/v1/bundles/import?project=fresh",
                                {"file": upload(bundle)}, format="multipart")
    assert resp.status_code == 201, resp.content
    report = resp.json()
    assert report["counts"] == {"spans": 3, "run_events": len(events), "payloads": 3,
                                "payloads_skipped": 0}

    back = Trace.objects.get(trace_id=TRACE)
    run = Run.objects.get(pk=report["run_id"])
    assert back.project == fresh and run.project == fresh
    assert {f: getattr(back, f) for f in SUMMARY} == summary
    assert (back.source, back.environment, back.run_id) == ("bundle_import", "offline", run.id)
    again = _spans(back)
    assert again.keys() == spans.keys()
    for span_id, before in spans.items():
        after = again[span_id]
        assert {k: after[k] for k in SPAN} == {k: before[k] for k in SPAN}, span_id
        assert after["attributes"] == {**before["attributes"], "tracefoundry.run_id": run.id}
    assert _events(run) == events
    assert {f: getattr(run, f) for f in projected} == projected
    assert run.imported_from == original.id and run.id != original.id
    assert _blob_hashes(back, run) == hashes
    for sha256, content in contents.items():
        assert engineer_client.get(f"/api/v1/payloads/{sha256}").content == content
    assert prompt.encode() in contents.values()
    # The tree the API draws is the same one.
    tree = engineer_client.get(f"/api/v1/traces/{TRACE}/spans?tree=1").json()
    assert tree["spans"][0]["span_id"] == "1" * 16
    assert [c["span_id"] for c in tree["spans"][0]["children"]] == ["2" * 16, "3" * 16]

