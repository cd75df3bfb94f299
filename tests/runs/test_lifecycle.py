"""The run and step state machines through the HTTP API, and the event chain they leave."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import RunEvent
from runs.services import retry_delay
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db

ACTIONS = ["start", "succeed", "complete", "fail", "cancel"]
# (state, action) pairs the state machine allows; everything else must be a 409.
ALLOWED = {
    ("queued", "start"), ("queued", "cancel"),
    ("running", "succeed"), ("running", "complete"), ("running", "fail"), ("running", "cancel"),
}


def post(client, run, action, body=None):
    return client.post(f"/api/v1/runs/{run.id}/{action}", body or {}, format="json")


@pytest.mark.parametrize("state", ["queued", "running", "succeeded", "failed", "canceled"])
@pytest.mark.parametrize("action", ACTIONS)
def test_every_transition(engineer_client, project, state, action):
    run = RunFactory(state=state)
    events_before = RunEvent.objects.filter(run=run).count()
    resp = post(engineer_client, run, action)
    if (state, action) in ALLOWED:
        assert resp.status_code in (200, 202), resp.content
    else:
        assert resp.status_code == 409, resp.content
        err = resp.json()["error"]
        assert err["code"] == "invalid_transition"
        assert err["details"]["state"] == state
        assert RunEvent.objects.filter(run=run).count() == events_before
        run.refresh_from_db()
        assert run.state == state


def test_happy_path_and_event_chain(engineer_client, project):
    resp = engineer_client.post("/api/v1/runs", {"kind": "agent.session", "input": {"a": 1}},
                                format="json")
    assert resp.status_code == 201
    run_id = resp.json()["id"]
    assert run_id.startswith("run_") and len(run_id) == 30
    started = engineer_client.post(f"/api/v1/runs/{run_id}/start", {"worker_id": "w-9"},
                                   format="json")
    assert started.json()["state"] == "running"
    step = engineer_client.post(f"/api/v1/runs/{run_id}/steps", {"name": "plan"},
                                format="json").json()
    assert step["state"] == "pending" and step["id"].startswith("step_")
    base = f"/api/v1/runs/{run_id}/steps/{step['id']}"
    assert engineer_client.post(f"{base}/start").json()["state"] == "running"
    assert engineer_client.post(f"{base}/succeed").json()["state"] == "succeeded"
    done = engineer_client.post(f"/api/v1/runs/{run_id}/succeed",
                                {"output": {"ok": True, "log": "x" * 9000}}, format="json").json()
    assert done["state"] == "succeeded"
    assert done["output_ref"].startswith("sha256:")
    assert done["attempt"] == 1 and done["claimed_by"] == "w-9"
    assert done["steps_total"] == 1 and done["steps_completed"] == 1
    assert done["started_at"] and done["finished_at"] and done["duration_ms"] >= 0

    events = list(RunEvent.objects.filter(run_id=run_id).order_by("id"))
    assert [e.type for e in events] == [
        "run.created", "run.started", "step.created", "step.started", "step.succeeded",
        "run.succeeded",
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert len({e.correlation_id for e in events}) == 1 and events[0].correlation_id
    assert events[0].causation_id == ""
    for before, after in itertools.pairwise(events):
        assert after.causation_id == str(before.event_id)


def test_agent_events_do_not_break_the_lifecycle_chain(engineer_client, project):
    run = RunFactory(state="running")
    engineer_client.post(f"/api/v1/runs/{run.id}/events", {"type": "note"}, format="json")
    post(engineer_client, run, "succeed")
    started, note, succeeded = RunEvent.objects.filter(run=run).order_by("id")[1:]
    assert note.causation_id == "" and note.correlation_id == run.correlation_id
    assert succeeded.causation_id == str(started.event_id)


def test_agent_event_keeps_its_own_correlation_id(engineer_client, project):
    run = RunFactory(state="running")
    resp = engineer_client.post(f"/api/v1/runs/{run.id}/events", [
        {"type": "tool_call", "correlation_id": "call-7"},
        {"type": "tool_result", "correlation_id": "call-7", "causation_id": "x"},
    ], format="json")
    assert resp.status_code == 201
    pair = RunEvent.objects.filter(run=run, correlation_id="call-7")
    assert pair.count() == 2


def test_retryable_failure_requeues_with_backoff_until_attempts_spent(engineer_client, project):
    run = RunFactory(max_attempts=2)
    post(engineer_client, run, "start", {"worker_id": "w"})
    before = timezone.now()
    resp = post(engineer_client, run, "fail", {"error": "flaky", "retryable": True})
    body = resp.json()
    assert body["state"] == "queued" and body["attempt"] == 1 and body["error"] == "flaky"
    assert body["claimed_by"] == ""
    run.refresh_from_db()
    assert before <= run.run_after <= timezone.now() + timedelta(seconds=2)
    post(engineer_client, run, "start", {"worker_id": "w"})
    body = post(engineer_client, run, "fail", {"error": "flaky again", "retryable": True}).json()
    assert body["state"] == "failed" and body["attempt"] == 2
    types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True).order_by("id"))
    assert types == ["run.created", "run.started", "run.retrying", "run.started", "run.failed"]


def test_retry_delay_is_full_jitter_within_exponential_bounds(settings):
    settings.TRACEFOUNDRY_RETRY_BASE_SECONDS = 2
    settings.TRACEFOUNDRY_RETRY_MAX_SECONDS = 60
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (6, 60), (20, 60)]:
        delays = [retry_delay(attempt).total_seconds() for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a constant


def test_error_is_capped_and_redacted(engineer_client, project):
    run = RunFactory(state="running")
    secret = "sk-ant-" + "a1B2" * 12
    resp = post(engineer_client, run, "fail", {"error": f"key {secret}\n" + "x" * 40_000})
    body = resp.json()
    assert secret not in body["error"]
    assert len(body["error"].encode()) <= 16 * 1024


def test_cancel_queued_is_immediate(engineer_client, project):
    run = RunFactory()
    resp = post(engineer_client, run, "cancel", {"reason": "not needed"})
    assert resp.status_code == 200 and resp.json()["state"] == "canceled"


def test_cancel_running_is_requested_then_acknowledged_by_its_worker(engineer_client, project):
    run = RunFactory(state="running")  # worker w-1
    step = engineer_client.post(f"/api/v1/runs/{run.id}/steps", {"name": "s"}, format="json")
    first = post(engineer_client, run, "cancel")
    assert first.status_code == 202
    assert first.json()["state"] == "running" and first.json()["cancel_requested_at"]
    again = post(engineer_client, run, "cancel")
    assert again.status_code == 202
    assert RunEvent.objects.filter(run=run, type="run.cancel_requested").count() == 1
    wrong = post(engineer_client, run, "cancel", {"worker_id": "w-other"})
    assert wrong.json()["state"] == "running"
    done = post(engineer_client, run, "cancel", {"worker_id": "w-1"})
    assert done.status_code == 200 and done.json()["state"] == "canceled"
    steps = engineer_client.get(f"/api/v1/runs/{run.id}/steps").json()
    assert [s["state"] for s in steps] == ["canceled"] and steps[0]["id"] == step.json()["id"]


def test_force_cancel_running(engineer_client, project):
    run = RunFactory(state="running")
    resp = post(engineer_client, run, "cancel", {"force": True})
    assert resp.status_code == 200 and resp.json()["state"] == "canceled"


def test_worker_may_only_finish_runs_it_holds(engineer_client, project):
    run = RunFactory(state="running")  # held by w-1
    assert post(engineer_client, run, "succeed", {"worker_id": "w-2"}).status_code == 409
    assert post(engineer_client, run, "fail", {"worker_id": "w-2"}).status_code == 409
    assert post(engineer_client, run, "succeed", {"worker_id": "w-1"}).status_code == 200


STEP_ALLOWED = {
    ("pending", "start"), ("pending", "fail"), ("pending", "skip"),
    ("running", "succeed"), ("running", "fail"),
}


def _step_in(client, run, state):
    step = client.post(f"/api/v1/runs/{run.id}/steps", {"name": "s"}, format="json").json()
    base = f"/api/v1/runs/{run.id}/steps/{step['id']}"
    path = {"pending": [], "running": ["start"], "succeeded": ["start", "succeed"],
            "failed": ["fail"], "skipped": ["skip"]}[state]
    for action in path:
        assert client.post(f"{base}/{action}").status_code == 200
    return base


@pytest.mark.parametrize("state", ["pending", "running", "succeeded", "failed", "skipped"])
@pytest.mark.parametrize("action", ["start", "succeed", "fail", "skip"])
def test_every_step_transition(engineer_client, project, state, action):
    run = RunFactory(state="running")
    base = _step_in(engineer_client, run, state)
    resp = engineer_client.post(f"{base}/{action}", {"error": "e"} if action == "fail" else {},
                                format="json")
    if (state, action) in STEP_ALLOWED:
        assert resp.status_code == 200, resp.content
    else:
        assert resp.status_code == 409
        assert resp.json()["error"]["details"] == {"entity": "step", "state": state,
                                                   "action": action}


def test_step_rules_follow_the_run(engineer_client, project):
    queued = RunFactory()
    base = _step_in(engineer_client, queued, "pending")
    assert engineer_client.post(f"{base}/start").status_code == 409
    done = RunFactory(state="succeeded")
    resp = engineer_client.post(f"/api/v1/runs/{done.id}/steps", {"name": "late"}, format="json")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "run_finished"
    missing = engineer_client.post(f"/api/v1/runs/{queued.id}/steps/step_nope/start")
    assert missing.status_code == 404


def test_steps_are_listed_by_position_and_counted(engineer_client, project):
    run = RunFactory(state="running")
    for name in ("a", "b"):
        engineer_client.post(f"/api/v1/runs/{run.id}/steps", {"name": name}, format="json")
    engineer_client.post(f"/api/v1/runs/{run.id}/steps", {"name": "first", "position": 0},
                         format="json")
    detail = engineer_client.get(f"/api/v1/runs/{run.id}").json()
    assert detail["steps_total"] == 3 and detail["steps_completed"] == 0
    steps = engineer_client.get(f"/api/v1/runs/{run.id}/steps").json()
    assert [s["name"] for s in steps] == ["a", "first", "b"]
    assert [s["position"] for s in steps] == [0, 0, 1]
