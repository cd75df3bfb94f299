"""``POST /api/v1/bundles/import``: a bundle goes in through the services of live ingest, under
the receiving project's redaction policy, tagged ``source=bundle_import``/``offline``; its run
comes back under a new id that records the original, events in order; importing it twice
changes nothing."""

from __future__ import annotations

import hashlib

import pytest

from payloads.models import PayloadBlob, PayloadRef
from runs.models import Project, Run, RunEvent, Step
from tests.bundles.builders import ORIGINAL_RUN, agent_bundle, sha, upload
from tests.conftest import client_for
from traces.models import Span, Trace

TRACE = "ab" * 16


def _events(run: Run) -> list[tuple]:
    return list(RunEvent.objects.filter(run=run).order_by("seq")
                .values_list("seq", "type", "level", "source", "created_at"))


@pytest.mark.django_db
def test_import_a_trace_with_its_run(post_bundle, project, engineer_client, payload_dir):
    trace = agent_bundle(TRACE)
    resp = post_bundle(trace.zip())
    assert resp.status_code == 201, resp.content
    report = resp.json()
    run = Run.objects.get()
    assert report == {
        "project": "default", "trace_id": TRACE, "run_id": run.id,
        "original_run_id": ORIGINAL_RUN, "already_imported": False, "trace_imported": True,
        "run_imported": True, "run_closed": False, "source": "bundle_import",
        "environment": "offline",
        "counts": {"spans": 4, "run_events": 8, "payloads": 3, "payloads_skipped": 0},
        "export_mode": "full", "redaction_mode": "standard",
    }
    # The trace: through the ingest (summaries, GenAI columns), tagged, linked to the new run.
    stored = Trace.objects.get(trace_id=TRACE)
    assert (stored.source, stored.environment, stored.project) == (
        "bundle_import", "offline", project)
    assert stored.run_id == run.id and run.id != ORIGINAL_RUN
    assert (stored.span_count, stored.root_span_name, stored.status) == (
        4, "invoke_agent planner", "error")
    assert stored.models == ["gpt-4o", "gpt-4o-mini"] and stored.tools == ["sql_query"]
    assert (stored.input_tokens, stored.output_tokens) == (1600, 130)
    spans = {s.span_id: s for s in Span.objects.filter(trace=stored)}
    assert spans["2" * 16].parent_span_id == "1" * 16 and spans["2" * 16].span_type == "llm"
    assert spans["3" * 16].tool_name == "sql_query"
    assert spans["1" * 16].resource["deployment.environment.name"] == "offline"
    assert spans["1" * 16].resource["tracefoundry.bundle.environment"] == "prod"
    assert {s.run_id for s in spans.values()} == {run.id}
    # The run: new id recording the original, events in order, projection from the events.
    assert run.imported_from == ORIGINAL_RUN and run.trace_id == TRACE
    assert (run.state, run.attempt, run.kind, run.name, run.input) == (
        "succeeded", 1, "agent.session", "nightly", {"goal": "report"})
    assert (run.event_count, run.steps_total, run.steps_completed) == (8, 1, 1)
    assert run.output == {"answer": 42}
    assert run.started_at.isoformat() == "2025-03-01T12:00:02+00:00"
    assert run.finished_at.isoformat() == "2025-03-01T12:00:08+00:00"
    assert [e[:4] for e in _events(run)] == [
        (i + 1, e["type"], e["level"], e["source"]) for i, e in enumerate(trace.events)]
    step = Step.objects.get(run=run)
    assert (step.name, step.node_ref, step.state) == ("plan", "planner", "succeeded")
    assert not step.id.endswith("ORIGINALSTEP00000000000")
    assert set(RunEvent.objects.filter(run=run).exclude(step=None)
               .values_list("step_id", flat=True)) == {step.id}
    assert RunEvent.objects.get(run=run, seq=3).payload["step_id"] == step.id
    # The blobs: stored once each, referred to by the spans and the event that carry them.
    assert set(PayloadBlob.objects.values_list("sha256", flat=True)) == set(trace.payloads)
    assert len(list(payload_dir.rglob("*.zst"))) == 3
    refs = {(r.blob_id, r.role, r.json_path, bool(r.span_id), bool(r.run_event_id))
            for r in PayloadRef.objects.all()}
    assert refs == {
        (sha(trace.prompt.encode()), "prompt", "attributes/gen_ai.prompt", True, False),
        (sha(trace.tool_result.encode()), "tool_result", "attributes/gen_ai.tool.call.result",
         True, False),
        (sha(trace.event_text.encode()), "prompt", "/text", False, True),
    }
    blob = engineer_client.get(f"/api/v1/payloads/{sha(trace.prompt.encode())}")
    assert blob.status_code == 200 and blob.content == trace.prompt.encode()


@pytest.mark.django_db
def test_importing_twice_changes_nothing(post_bundle, payload_dir):
    data = agent_bundle(TRACE).zip()
    first = post_bundle(data).json()
    counts = {m.__name__: m.objects.count()
              for m in (Trace, Span, Run, RunEvent, Step, PayloadBlob, PayloadRef)}
    files = sorted(payload_dir.rglob("*"))
    again = post_bundle(data)
    assert again.status_code == 200
    report = again.json()
    assert report["already_imported"] is True
    assert (report["trace_imported"], report["run_imported"]) == (False, False)
    assert report["run_id"] == first["run_id"]
    assert report["counts"] == {"spans": 0, "run_events": 0, "payloads": 0,
                                "payloads_skipped": 0}
    assert {m.__name__: m.objects.count()
            for m in (Trace, Span, Run, RunEvent, Step, PayloadBlob, PayloadRef)} == counts
    assert sorted(payload_dir.rglob("*")) == files


@pytest.mark.django_db
def test_a_key_imports_into_its_own_project(key_client, other_project):
    own = key_client("runs:write", project_obj=other_project)
    resp = own.post("/api/v1/bundles/import", {"file": upload(agent_bundle(TRACE).zip())},
                    format="multipart")
    assert resp.status_code == 201, resp.content
    assert resp.json()["project"] == "other"
    assert Trace.objects.get(trace_id=TRACE).project == other_project
    refused = own.post("/api/v1/bundles/import?project=default",
                       {"file": upload(agent_bundle("cd" * 16).zip())}, format="multipart")
    assert refused.status_code == 403
    assert not Trace.objects.filter(trace_id="cd" * 16).exists()


@pytest.mark.django_db
def test_users_choose_the_project(post_bundle, other_project):
    assert post_bundle(agent_bundle(TRACE).zip(), query="?project=other").status_code == 201
    assert Trace.objects.get(trace_id=TRACE).project == other_project
    missing = post_bundle(agent_bundle("cd" * 16).zip(), query="?project=nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_a_trace_id_another_project_holds_is_a_conflict(post_bundle, other_project,
                                                        nothing_written):
    assert post_bundle(agent_bundle(TRACE).zip(), query="?project=other").status_code == 201
    with nothing_written():
        resp = post_bundle(agent_bundle(TRACE).zip())
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "conflict"


@pytest.mark.django_db
def test_the_receiving_projects_policy_redacts_spans_events_and_blobs(post_bundle,
                                                                      engineer_client):
    secret = "AKIAQ3EGRT5BZQXM7T2N"
    trace = agent_bundle(TRACE, seed=f"use key {secret} ")
    trace.spans[0]["attributes"].append({"key": "note", "value": {"stringValue": secret}})
    resp = post_bundle(trace.zip())
    assert resp.status_code == 201, resp.content
    assert resp.json()["counts"]["payloads"] == 3
    assert Span.objects.get(span_id="1" * 16).attributes["note"] == "[REDACTED:aws_access_key]"
    everything = [str(s.attributes) for s in Span.objects.all()]
    everything += [str(e.payload) for e in RunEvent.objects.all()]
    assert not any(secret in text for text in everything)
    # The blobs held the key too: stored redacted, under the hash of the redacted bytes, and
    # the spans' and events' references follow them.
    assert not PayloadBlob.objects.filter(sha256__in=list(trace.payloads)).exists()
    for blob in PayloadBlob.objects.all():
        content = engineer_client.get(f"/api/v1/payloads/{blob.sha256}").content
        assert secret.encode() not in content and b"[REDACTED:aws_access_key]" in content
        assert hashlib.sha256(content).hexdigest() == blob.sha256
    prompt_ref = Span.objects.get(span_id="2" * 16).attributes["tracefoundry.payload.prompt_ref"]
    assert PayloadRef.objects.get(blob_id=prompt_ref.removeprefix("sha256:")).span.span_id == \
        "2" * 16
    marker = RunEvent.objects.get(type="llm_request").payload["text"]
    assert PayloadRef.objects.get(blob_id=marker["payload_ref"].removeprefix("sha256:")) \
        .run_event.type == "llm_request"


@pytest.mark.django_db
def test_a_strict_project_stores_no_more_than_a_strict_ingest(post_bundle, engineer_client):
    """Strict keeps only allowlisted span attributes: the prompt and the tool result go, with
    their references and blobs, exactly as a strict ingest would never have stored them; the
    event's blob is kept, redacted (events are redacted, not allowlisted)."""
    Project.objects.filter(slug="default").update(redaction_policy="strict")
    email = "jane.doe@example.com"
    trace = agent_bundle(TRACE, seed=f"mail {email} ")
    trace.spans[0]["attributes"].append({"key": "user.contact", "value": {"stringValue": email}})
    resp = post_bundle(trace.zip())
    assert resp.status_code == 201, resp.content
    assert resp.json()["counts"]["payloads"] == 1
    llm = Span.objects.get(span_id="2" * 16).attributes
    assert "user.contact" not in Span.objects.get(span_id="1" * 16).attributes
    assert "gen_ai.prompt" not in llm and "tracefoundry.payload.prompt_ref" not in llm
    assert llm["gen_ai.request.model"] == "gpt-4o"
    (blob,) = PayloadBlob.objects.all()
    content = engineer_client.get(f"/api/v1/payloads/{blob.sha256}").content
    assert content.startswith(b"mail [REDACTED:email] thinking")
    assert blob.redaction_mode == "strict"
    everything = [str(s.attributes) for s in Span.objects.all()]
    everything += [str(e.payload) for e in RunEvent.objects.all()]
    assert not any(email in text for text in everything)


@pytest.mark.django_db
def test_an_unfinished_run_is_closed_as_canceled(post_bundle):
    trace = agent_bundle(TRACE)
    trace.events = trace.events[:5]  # still running when it was exported
    resp = post_bundle(trace.zip())
    assert resp.status_code == 201, resp.content
    assert resp.json()["run_closed"] is True and resp.json()["counts"]["run_events"] == 6
    run = Run.objects.get()
    assert run.state == "canceled" and run.steps_completed == 1
    last = RunEvent.objects.filter(run=run).order_by("seq").last()
    assert (last.seq, last.type, last.source) == (6, "run.canceled", "server")
    assert "imported from a bundle" in last.payload["reason"]
    assert Step.objects.get(run=run).state == "canceled"


@pytest.mark.django_db
def test_a_trace_without_a_run_and_a_run_without_a_trace(post_bundle):
    trace_only = agent_bundle(TRACE, run=False)
    report = post_bundle(trace_only.zip()).json()
    assert (report["trace_imported"], report["run_imported"], report["run_id"]) == (
        True, False, None)
    assert Trace.objects.get(trace_id=TRACE).run_id == ""
    run_only = agent_bundle("cd" * 16)
    entries_zip = run_only.zip(trace_id=None)
    report = post_bundle(entries_zip).json()
    assert (report["trace_imported"], report["run_imported"]) == (False, True)
    assert not Trace.objects.filter(trace_id="cd" * 16).exists()
    assert Run.objects.get(pk=report["run_id"]).imported_from == ORIGINAL_RUN


@pytest.mark.django_db
def test_a_strict_export_without_blobs_keeps_its_references(post_bundle):
    trace = agent_bundle(TRACE)
    trace.payloads = {}
    resp = post_bundle(trace.zip(export_mode="strict", redaction_mode="strict"))
    assert resp.status_code == 201, resp.content
    assert resp.json()["counts"]["payloads"] == 0
    span = Span.objects.get(span_id="2" * 16)
    assert span.attributes["tracefoundry.payload.prompt_ref"] == \
        f"sha256:{sha(trace.prompt.encode())}"
    assert not PayloadRef.objects.exists() and not PayloadBlob.objects.exists()


@pytest.mark.django_db
def test_the_upload_is_required_and_capped(engineer_client, settings):
    missing = engineer_client.post("/api/v1/bundles/import", {}, format="multipart")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid"
    settings.TRACEFOUNDRY_MAX_REQUEST_BYTES = 2048
    big = engineer_client.post("/api/v1/bundles/import",
                               {"file": upload(agent_bundle(TRACE).zip())}, format="multipart")
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    assert not Trace.objects.exists()


@pytest.mark.django_db
def test_viewers_cannot_import(viewer, post_bundle, nothing_written):
    with nothing_written():
        resp = post_bundle(agent_bundle(TRACE).zip(), client=client_for(viewer))
    assert resp.status_code == 403



@pytest.mark.django_db
def test_the_run_api_names_the_original(post_bundle, engineer_client):
    run_id = post_bundle(agent_bundle(TRACE).zip()).json()["run_id"]
    body = engineer_client.get(f"/api/v1/runs/{run_id}").json()
    assert (body["imported_from"], body["trace_id"], body["state"]) == (
        ORIGINAL_RUN, TRACE, "succeeded")
    native = engineer_client.post("/api/v1/runs", {"kind": "x"}, format="json").json()
    assert native["imported_from"] is None
