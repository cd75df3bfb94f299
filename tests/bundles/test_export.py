"""Export through the API: ``GET /api/v1/traces/{trace_id}/export`` and ``/runs/{id}/export``.

The format (manifest first, every hash, OTLP JSON any OTLP tool reads, byte-identical twice),
who gets which mode (PRODUCT.md §12), what a strict export leaves out — proved field by field
over every place a value can sit (a field a full export carries must not survive a strict one) —
and the failure cases (unknown ids, other projects' data, bad query, unreadable blobs).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from django.core.files.storage import storages
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bundles import format as fmt
from bundles.exports import (
    EVENT_STRUCTURAL,
    RUN_FIELDS,
    RUN_STRUCTURAL,
    SPAN_COLUMNS,
    SPAN_STRUCTURAL,
)
from payloads.models import PayloadBlob
from runs import services
from runs.models import RUN_EVENT_FIELDS, Run, RunEvent
from tests.bundles.builders import upload
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import NOW
from traces.models import Trace

TRACE = "5e" * 16
MS = 1_000_000
LONG = "Summarise the quarterly numbers for the board. " * 400  # over the inline limit: a blob


def _kv(attributes: dict) -> list[dict]:
    return [{"key": k, "value": {"stringValue": v} if isinstance(v, str)
             else {"intValue": str(v)}} for k, v in attributes.items()]


# Every place a value of a trace or run can sit, with the value that goes there. The run's
# (name, input, output, error…) are set on its row; the rest arrive the live way (OTLP, events).
def _marker(where: str) -> str:
    return f"leak.{where.replace('_', '-')}@example.com"


SPAN_PLACES = ("span_name", "status_message", "attribute", "allowlisted_attribute",
               "event_name", "event_attribute", "link_attribute", "resource_attribute",
               "allowlisted_resource_attribute", "scope_name", "scope_version",
               "scope_attribute")
RUN_PLACES = ("run_name", "run_input", "run_output", "run_error", "idempotency_key",
              "correlation_id", "claimed_by", "event_payload", "event_correlation_id",
              "causation_id", "step_name")
PLACES = SPAN_PLACES + RUN_PLACES
# Which place proves each field a strict export re-redacts (checked against the export's own
# lists below, so a field added to an export is in this sweep or the test fails).
RUN_FIELD_PLACES = {"name": "run_name", "input": "run_input", "output": "run_output",
                    "error": "run_error", "idempotency_key": "idempotency_key",
                    "correlation_id": "correlation_id", "claimed_by": "claimed_by"}
EVENT_FIELD_PLACES = {"payload": "event_payload", "correlation_id": "event_correlation_id",
                      "causation_id": "causation_id"}
SPAN_COLUMN_PLACES = {"name": "span_name", "status_message": "status_message",
                      "attributes": "attribute", "events": "event_attribute",
                      "links": "link_attribute", "resource": "resource_attribute",
                      "scope": "scope_attribute"}


def _otlp(trace_id: str, run_id: str, m=_marker) -> bytes:
    root, llm = "a1" * 8, "b2" * 8
    spans = [
        {"traceId": trace_id, "spanId": root, "name": f"invoke_agent {m('span_name')}",
         "kind": 1, "startTimeUnixNano": str(NOW), "endTimeUnixNano": str(NOW + 900 * MS),
         "attributes": _kv({"gen_ai.operation.name": "invoke_agent",
                            "gen_ai.agent.name": m("allowlisted_attribute"),
                            "custom.note": m("attribute"), "tracefoundry.run_id": run_id}),
         "events": [{"name": m("event_name"), "timeUnixNano": str(NOW + MS),
                     "attributes": _kv({"detail": m("event_attribute")})}],
         "links": [{"traceId": "99" * 16, "spanId": "98" * 8,
                    "attributes": _kv({"why": m("link_attribute")})}],
         "status": {"code": 2, "message": m("status_message")}},
        {"traceId": trace_id, "spanId": llm, "parentSpanId": root, "name": "chat gpt-4o",
         "kind": 3, "startTimeUnixNano": str(NOW + 10 * MS),
         "endTimeUnixNano": str(NOW + 300 * MS),
         "attributes": _kv({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                            "gen_ai.usage.input_tokens": 1200, "gen_ai.prompt": LONG,
                            "tracefoundry.run_id": run_id}),
         "status": {"code": 1}},
    ]
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": _kv({
            "service.name": "agent", "deployment.environment": "prod",
            "service.namespace": m("allowlisted_resource_attribute"),
            "host.owner": m("resource_attribute")})},
        "scopeSpans": [{"scope": {"name": f"agent {m('scope_name')}",
                                  "version": m("scope_version"),
                                  "attributes": _kv({"lib.owner": m("scope_attribute")})},
                        "spans": spans}],
    }]}).encode()


def _world(make_key, trace_id: str = TRACE, m=_marker) -> Run:
    """A failed run with a step and events, linked to a two-span trace; a marker in every
    place of PLACES; one span attribute and one event large enough to be blobs."""
    run = RunFactory(state="running", kind="agent.session", input={"goal": m("run_input")})
    step = services.step_create(run_id=run.id, name=m("step_name"), node_ref="planner")
    services.event_append_batch(run_id=run.id, events=[
        {"type": "log", "step_id": step.id, "payload": {"text": m("event_payload")}},
        {"type": "llm_request", "step_id": step.id, "payload": {"text": LONG + "(event)"}},
        {"type": "note", "payload": {"text": "n"}, "correlation_id": m("event_correlation_id"),
         "causation_id": m("causation_id")},
    ])
    Run.objects.filter(pk=run.id).update(
        state="failed", name=m("run_name"), output={"partial": m("run_output")},
        error=f"tool failed for {m('run_error')}", idempotency_key=m("idempotency_key"),
        correlation_id=m("correlation_id")[:64], claimed_by=m("claimed_by"))
    _, key = make_key("ingest")
    resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces", _otlp(trace_id, run.id, m),
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    return Run.objects.get(pk=run.id)


def _get(client, url: str, **extra):
    resp = client.get(url, **extra)
    body = b"".join(resp.streaming_content) if resp.streaming else resp.content
    return resp, body


def _entries(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


@pytest.fixture
def world(project, make_key, payload_dir):
    return _world(make_key)


# --- the format -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_full_export_holds_every_entry_hashed_in_the_manifest_in_order(world, engineer_client):
    resp, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/zip"
    assert resp["Content-Disposition"] == f'attachment; filename="tracefoundry-{TRACE}.zip"'
    assert resp["X-TraceFoundry-Export-Mode"] == "full"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert all(i.date_time == fmt.ZIP_TIMESTAMP for i in archive.infolist())
    entries = _entries(body)
    payloads = sorted(n for n in names if n.startswith(fmt.PAYLOADS_DIR))
    assert names == [fmt.MANIFEST, fmt.README, fmt.SPANS, fmt.RUN, fmt.RUN_EVENTS, *payloads]
    manifest = json.loads(entries[fmt.MANIFEST])
    assert fmt.ManifestSerializer(data=manifest).is_valid(), manifest
    assert (manifest["trace_id"], manifest["run_id"]) == (TRACE, world.id)
    assert (manifest["export_mode"], manifest["redaction_mode"]) == ("full", "standard")
    assert manifest["counts"] == {"spans": 2, "run_events": world.event_count,
                                  "payloads": len(payloads)}
    assert len(payloads) == 2  # the prompt attribute and the long event
    assert manifest["environment"]["database"] in ("sqlite", "postgresql")
    assert manifest["product_version"]
    assert set(manifest["files"]) == set(names) - {fmt.MANIFEST}
    for name, data in entries.items():
        if name != fmt.MANIFEST:
            assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest(), name
            assert manifest["files"][name]["size"] == len(data), name
    for name in payloads:
        assert name == fmt.PAYLOADS_DIR + hashlib.sha256(entries[name]).hexdigest()
    assert LONG.encode() in b"".join(entries[n] for n in payloads)
    events = [json.loads(line) for line in entries[fmt.RUN_EVENTS].splitlines()]
    assert [e["seq"] for e in events] == list(range(1, world.event_count + 1))
    assert json.loads(entries[fmt.RUN])["id"] == world.id


@pytest.mark.django_db
def test_spans_are_otlp_json_that_opentelemetry_proto_and_the_ingest_read(world, engineer_client,
                                                                         make_key, other_project):
    _, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export")
    spans_json = _entries(body)[fmt.SPANS]
    request = json_format.Parse(spans_json, ExportTraceServiceRequest())
    parsed = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in parsed) == sorted(
        ["chat gpt-4o", f"invoke_agent {_marker('span_name')}"])
    assert {s.kind for s in parsed} == {1, 3}
    # Any OTLP/HTTP JSON receiver takes it as it is: here, another project's ingest.
    _, key = make_key("ingest", project_obj=other_project)
    Trace.objects.filter(trace_id=TRACE).delete()
    resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces", spans_json,
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    assert Trace.objects.get(trace_id=TRACE).span_count == 2


@pytest.mark.django_db
def test_spans_of_several_services_group_by_resource_in_order_of_appearance(
        project, make_key, engineer_client):
    trace_id = "6f" * 16

    def batch(service: str, span_ids: list[str], offset_ms: int) -> dict:
        return {"resource": {"attributes": _kv({"service.name": service})},
                "scopeSpans": [{"scope": {"name": f"{service}-lib"}, "spans": [
                    {"traceId": trace_id, "spanId": sid, "name": f"{service} op {i}",
                     "kind": 2, "startTimeUnixNano": str(NOW + (offset_ms + 10 * i) * MS),
                     "endTimeUnixNano": str(NOW + (offset_ms + 10 * i + 5) * MS),
                     "parentSpanId": "" if sid == "01" * 8 else "01" * 8}
                    for i, sid in enumerate(span_ids)]}]}

    doc = {"resourceSpans": [batch("billing", ["03" * 8, "05" * 8], 1),
                             batch("gateway", ["01" * 8, "04" * 8], 0),
                             batch("billing", ["02" * 8], 2)]}
    _, key = make_key("ingest")
    resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces", json.dumps(doc),
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    _, body = _get(engineer_client, f"/api/v1/traces/{trace_id}/export")
    spans_doc = json.loads(_entries(body)[fmt.SPANS])
    got = [([kv["value"]["stringValue"] for kv in rs["resource"]["attributes"]],
            [ss["scope"]["name"] for ss in rs["scopeSpans"]],
            [s["spanId"] for ss in rs["scopeSpans"] for s in ss["spans"]])
           for rs in spans_doc["resourceSpans"]]
    # The gateway's root starts first; each group keeps its spans in start order.
    assert got == [(["gateway"], ["gateway-lib"], ["01" * 8, "04" * 8]),
                   (["billing"], ["billing-lib"], ["03" * 8, "02" * 8, "05" * 8])]
    json_format.Parse(_entries(body)[fmt.SPANS], ExportTraceServiceRequest())


@pytest.mark.django_db
def test_the_same_trace_exported_twice_differs_only_in_created_at(world, engineer_client):
    first = _entries(_get(engineer_client, f"/api/v1/traces/{TRACE}/export")[1])
    second = _entries(_get(engineer_client, f"/api/v1/traces/{TRACE}/export")[1])
    assert first.keys() == second.keys()
    for name in first:
        if name != fmt.MANIFEST:
            assert first[name] == second[name], name
    one, two = json.loads(first[fmt.MANIFEST]), json.loads(second[fmt.MANIFEST])
    one.pop("created_at"), two.pop("created_at")
    assert one == two


@pytest.mark.django_db
def test_without_payloads_the_references_stay_and_the_blobs_go(world, engineer_client):
    _, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export?mode=full&payloads=0")
    entries = _entries(body)
    assert not [n for n in entries if n.startswith(fmt.PAYLOADS_DIR)]
    manifest = json.loads(entries[fmt.MANIFEST])
    assert manifest["counts"]["payloads"] == 0 and manifest["export_mode"] == "full"
    assert b"tracefoundry.payload.prompt_ref" in entries[fmt.SPANS]


@pytest.mark.django_db
def test_a_run_exports_with_its_trace_and_a_run_without_one_alone(world, engineer_client):
    resp, body = _get(engineer_client, f"/api/v1/runs/{world.id}/export")
    assert resp.status_code == 200
    assert resp["Content-Disposition"] == f'attachment; filename="tracefoundry-{world.id}.zip"'
    manifest = json.loads(_entries(body)[fmt.MANIFEST])
    assert (manifest["trace_id"], manifest["run_id"]) == (TRACE, world.id)
    lone = RunFactory(state="running", kind="report.build", input={"n": 1})
    services.event_append_batch(run_id=lone.id, events=[{"type": "log", "payload": {"text": "x"}}])
    resp, body = _get(engineer_client, f"/api/v1/runs/{lone.id}/export")
    entries = _entries(body)
    assert resp["Content-Disposition"] == f'attachment; filename="tracefoundry-{lone.id}.zip"'
    assert fmt.SPANS not in entries
    manifest = json.loads(entries[fmt.MANIFEST])
    assert (manifest["trace_id"], manifest["run_id"]) == (None, lone.id)
    assert fmt.ManifestSerializer(data=manifest).is_valid()


@pytest.mark.django_db
def test_an_exported_bundle_dry_replays_clean_and_imports(world, engineer_client):
    _, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export")
    report = engineer_client.post("/api/v1/bundles/dry-replay", {"file": upload(body)},
                                  format="multipart").json()
    assert report["findings"] == [], report["findings"]
    assert report["payloads"]["missing_count"] == 0
    resp = engineer_client.post("/api/v1/bundles/import", {"file": upload(body)},
                                format="multipart")
    # Back into the project it came from: everything is here already (the run too: it is the
    # original, not an earlier import of it), so nothing is stored.
    assert resp.status_code == 200, resp.content
    assert resp.json()["already_imported"] and resp.json()["run_id"] == world.id


# --- who gets which mode --------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("who, asked, status, mode", [
    ("viewer", "", 200, "strict"),
    ("viewer", "?mode=strict", 200, "strict"),
    ("viewer", "?mode=full", 403, None),
    ("engineer", "", 200, "full"),
    ("engineer", "?mode=strict", 200, "strict"),
    ("admin", "?mode=full", 200, "full"),
    ("service read key", "", 200, "strict"),
    ("service read key", "?mode=full", 403, None),
    ("engineer read key", "?mode=full", 200, "full"),
    ("viewer read key", "", 200, "strict"),
    ("viewer read key", "?mode=full", 403, None),
    ("ingest key", "", 403, None),
    ("anonymous", "", 401, None),
])
def test_the_mode_follows_the_role(world, who, asked, status, mode, viewer, engineer,
                                   admin_user, make_key):
    users = {"viewer": viewer, "engineer": engineer, "admin": admin_user}
    if who in users:
        client = client_for(users[who])
    elif who == "anonymous":
        client = client_for()
    else:
        scope = "ingest" if who == "ingest key" else "runs:read"
        user = {"engineer read key": engineer, "viewer read key": viewer}.get(who)
        client = client_for(raw_key=make_key(scope, user=user)[1])
    for url in (f"/api/v1/traces/{TRACE}/export{asked}", f"/api/v1/runs/{world.id}/export{asked}"):
        resp, body = _get(client, url)
        assert resp.status_code == status, (url, body[:300])
        if status == 200:
            assert resp["X-TraceFoundry-Export-Mode"] == mode
            assert json.loads(_entries(body)[fmt.MANIFEST])["export_mode"] == mode
        else:
            assert resp["Content-Type"].startswith("application/json")
            assert "error" in json.loads(body)


@pytest.mark.django_db
def test_a_key_never_exports_another_projects_trace_or_run(world, other_project, make_key):
    client = client_for(raw_key=make_key("runs:read", project_obj=other_project)[1])
    for url in (f"/api/v1/traces/{TRACE}/export", f"/api/v1/runs/{world.id}/export"):
        resp, body = _get(client, url)
        assert resp.status_code == 404, body


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?mode=everything", "?payloads=maybe", "?mode="])
def test_a_bad_query_is_a_400_and_exports_nothing(world, engineer_client, query):
    resp, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export{query}")
    assert resp.status_code == 400, body
    assert json.loads(body)["error"]


@pytest.mark.django_db
def test_unknown_ids_are_404_json_even_when_a_zip_was_asked_for(engineer_client):
    for url in (f"/api/v1/traces/{'0' * 32}/export", "/api/v1/runs/run_01NOSUCHRUN/export"):
        resp, body = _get(engineer_client, url, HTTP_ACCEPT="application/zip")
        assert resp.status_code == 404
        assert resp["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_a_client_asking_for_a_zip_gets_one(world, engineer_client):
    resp, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export",
                      HTTP_ACCEPT="application/zip")
    assert resp.status_code == 200 and zipfile.is_zipfile(io.BytesIO(body))


# --- strict: what a viewer may see and nothing more -----------------------------------------------

@pytest.fixture
def both_modes(world, engineer_client) -> tuple[bytes, bytes]:
    def content(mode: str) -> bytes:
        entries = _entries(_get(engineer_client, f"/api/v1/runs/{world.id}/export?mode={mode}")[1])
        return b"\n".join(data for name, data in entries.items() if name != fmt.MANIFEST)

    return content("full"), content("strict")


def test_the_sweep_covers_every_field_a_strict_export_redacts():
    assert set(RUN_FIELDS) - RUN_STRUCTURAL == set(RUN_FIELD_PLACES)
    assert set(RUN_EVENT_FIELDS) - EVENT_STRUCTURAL == set(EVENT_FIELD_PLACES)
    assert set(SPAN_COLUMNS) - SPAN_STRUCTURAL == set(SPAN_COLUMN_PLACES)
    assert set(RUN_FIELD_PLACES.values()) | set(EVENT_FIELD_PLACES.values()) \
        | set(SPAN_COLUMN_PLACES.values()) <= set(PLACES)
    # What is left unredacted is what the server writes itself: no free text or JSON.
    for model, names in ((Run, RUN_STRUCTURAL - {"project"}), (RunEvent, EVENT_STRUCTURAL)):
        for name in names:
            field = model._meta.get_field(name)
            assert field.get_internal_type() not in ("TextField", "JSONField"), (model, name)


@pytest.mark.django_db
@pytest.mark.parametrize("place", PLACES)
def test_strict_removes_what_full_carries_in_every_place(both_modes, place):
    full, strict = both_modes
    marker = _marker(place).encode()
    assert marker in full, f"{place}: the full export does not carry it (is the field exported?)"
    assert marker not in strict, f"{place}: the strict export leaks it"


@pytest.mark.django_db
def test_strict_keeps_the_tree_and_the_genai_facts_and_leaves_blobs_out(world, engineer_client):
    resp, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export?mode=strict")
    entries = _entries(body)
    assert resp["Content-Disposition"] == (
        f'attachment; filename="tracefoundry-{TRACE}-strict.zip"')
    assert not [n for n in entries if n.startswith(fmt.PAYLOADS_DIR)]
    manifest = json.loads(entries[fmt.MANIFEST])
    assert (manifest["export_mode"], manifest["redaction_mode"]) == ("strict", "strict")
    assert manifest["counts"]["payloads"] == 0
    assert LONG[:200].encode() not in entries[fmt.SPANS]  # gen_ai.prompt is not allowlisted
    request = json_format.Parse(entries[fmt.SPANS], ExportTraceServiceRequest())
    spans = {s.name: s for rs in request.resource_spans for ss in rs.scope_spans
             for s in ss.spans}
    llm = spans["chat gpt-4o"]
    attrs = {kv.key: kv.value for kv in llm.attributes}
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o"
    assert attrs["gen_ai.usage.input_tokens"].int_value == 1200
    assert "[REDACTED:email]" in entries[fmt.RUN].decode()
    report = engineer_client.post("/api/v1/bundles/dry-replay", {"file": upload(body)},
                                  format="multipart").json()
    assert len(report["tree"]["roots"]) == 1 and report["payloads"]["left_out_by_export"]


# --- what cannot be read is said, not hidden ------------------------------------------------------

@pytest.mark.django_db
def test_a_blob_that_cannot_be_read_is_left_out_and_named(world, engineer_client):
    blob = PayloadBlob.objects.order_by("sha256").first()
    storages["payloads"].delete(blob.storage_key)
    resp, body = _get(engineer_client, f"/api/v1/traces/{TRACE}/export")
    assert resp.status_code == 200
    entries = _entries(body)
    manifest = json.loads(entries[fmt.MANIFEST])
    assert manifest["payloads_unavailable"] == [blob.sha256]
    assert fmt.PAYLOADS_DIR + blob.sha256 not in entries
    assert manifest["counts"]["payloads"] == 1
    report = engineer_client.post("/api/v1/bundles/dry-replay", {"file": upload(body)},
                                  format="multipart").json()
    assert report["payloads"]["missing"] == [blob.sha256]
