"""External workers over HTTP: claim, heartbeat, succeed/fail/cancel of held runs; throttles."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from runs import services
from runs.models import Run, RunEvent
from runs.services import run_claim_next
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.tracefoundry.factories import UserFactory

pytestmark = pytest.mark.django_db


def enqueue(project, kind="ext.job", **kwargs) -> Run:
    return services.run_enqueue(project=project, kind=kind, **kwargs)[0]


def claim(client, **body):
    return client.post("/api/v1/runs/claim", {"worker_id": "ext-1", **body}, format="json")


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.content
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["details"], dict)
    return error


class TestClaimEndpoint:
    def test_claims_and_returns_the_runs(self, worker_client, project):
        runs = [enqueue(project, input={"n": n}) for n in range(3)]
        resp = claim(worker_client, kinds=["ext.job"], limit=2)
        assert resp.status_code == 200
        body = resp.json()["runs"]
        assert [r["id"] for r in body] == [runs[0].id, runs[1].id]
        assert body[0]["state"] == "running" and body[0]["claimed_by"] == "ext-1"
        assert body[0]["attempt"] == 1 and body[0]["input"] == {"n": 0}
        assert body[0]["project"] == "default" and body[0]["heartbeat_at"]
        assert claim(worker_client, limit=5).json()["runs"][0]["id"] == runs[2].id
        assert claim(worker_client).json() == {"runs": []}

    def test_only_the_keys_project(self, make_key, project, other_project):
        enqueue(other_project)
        _, raw = make_key("worker", project_obj=other_project)
        assert claim(client_for(raw_key=raw)).json()["runs"][0]["project"] == "other"
        enqueue(other_project)
        assert claim(client_for(raw_key=make_key("worker")[1])).json() == {"runs": []}

    @pytest.mark.parametrize("body", [{}, {"worker_id": ""}, {"worker_id": "w", "limit": 0},
                                      {"worker_id": "w", "limit": 101},
                                      {"worker_id": "w", "kinds": "a,b"}])
    def test_bad_input(self, worker_client, body):
        resp = worker_client.post("/api/v1/runs/claim", body, format="json")
        assert_error(resp, 400, "invalid")


PRINCIPALS = ["anonymous", "no_role", "viewer", "engineer", "admin", "key:runs:read",
              "key:runs:write", "key:ingest", "key:worker", "key:runs:read,runs:write"]


def principal_client(principal, make_key):
    if principal == "anonymous":
        return client_for()
    if principal.startswith("key:"):
        return client_for(raw_key=make_key(principal[4:])[1])
    user = UserFactory(username=f"u-{principal}")
    if principal != "no_role":
        user.groups.add(Group.objects.get(name=principal))
    return client_for(user)


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("endpoint", ["claim", "heartbeat"])
def test_worker_endpoints_are_for_worker_keys_only(principal, endpoint, make_key, project):
    """PRODUCT.md §12: worker endpoints belong to keys with the `worker` scope."""
    enqueue(project)
    client = principal_client(principal, make_key)
    if endpoint == "claim":
        resp = claim(client)
    else:
        services.run_enqueue(project=project, kind="held.job")
        (run,) = run_claim_next(worker_id="ext-1", kinds=["held.job"])
        resp = client.post(f"/api/v1/runs/{run.id}/heartbeat", {"worker_id": "ext-1"},
                           format="json")
    if principal == "key:worker":
        assert resp.status_code == 200, resp.content
    elif principal == "anonymous":
        assert_error(resp, 401, "not_authenticated")
    else:
        assert_error(resp, 403, "permission_denied")


class TestHeldRuns:
    def claimed(self, worker_client, project) -> str:
        enqueue(project)
        return claim(worker_client).json()["runs"][0]["id"]

    def test_heartbeat(self, worker_client, engineer_client, project):
        run_id = self.claimed(worker_client, project)
        url = f"/api/v1/runs/{run_id}/heartbeat"
        resp = worker_client.post(url, {"worker_id": "ext-1"}, format="json")
        assert resp.status_code == 200
        body = resp.json()
        assert body["run_id"] == run_id and body["state"] == "running"
        assert body["cancel_requested"] is False and body["heartbeat_at"].endswith("Z")
        assert engineer_client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
        assert worker_client.post(url, {"worker_id": "ext-1"},
                                  format="json").json()["cancel_requested"] is True

    def test_heartbeat_of_a_run_held_by_another_worker_is_409(self, worker_client, project):
        run_id = self.claimed(worker_client, project)
        resp = worker_client.post(f"/api/v1/runs/{run_id}/heartbeat", {"worker_id": "ext-2"},
                                  format="json")
        error = assert_error(resp, 409, "invalid_transition")
        assert error["details"]["state"] == "running"
        assert error["details"]["claimed_by"] == "ext-1"

    def test_heartbeat_of_a_finished_run_is_409_with_its_state(self, worker_client, project):
        run_id = self.claimed(worker_client, project)
        assert worker_client.post(f"/api/v1/runs/{run_id}/succeed",
                                  {"worker_id": "ext-1", "output": {"ok": True}},
                                  format="json").status_code == 200
        resp = worker_client.post(f"/api/v1/runs/{run_id}/heartbeat", {"worker_id": "ext-1"},
                                  format="json")
        assert assert_error(resp, 409, "invalid_transition")["details"]["state"] == "succeeded"

    def test_heartbeat_of_another_projects_run_is_404(self, make_key, other_project, project):
        enqueue(other_project)
        other = client_for(raw_key=make_key("worker", project_obj=other_project)[1])
        run_id = claim(other).json()["runs"][0]["id"]
        mine = client_for(raw_key=make_key("worker")[1])
        resp = mine.post(f"/api/v1/runs/{run_id}/heartbeat", {"worker_id": "ext-1"},
                         format="json")
        assert_error(resp, 404, "not_found")

    @pytest.mark.parametrize("action, body", [
        ("succeed", {"output": {"x": 1}}),
        ("fail", {"error": "boom", "retryable": True}),
    ])
    def test_only_the_holder_may_succeed_or_fail(self, worker_client, project, action, body):
        run_id = self.claimed(worker_client, project)
        url = f"/api/v1/runs/{run_id}/{action}"
        resp = worker_client.post(url, {**body, "worker_id": "ext-2"}, format="json")
        assert_error(resp, 409, "invalid_transition")
        # Naming no worker is not holding the run either: a worker key must say who it is.
        resp = worker_client.post(url, body, format="json")
        assert_error(resp, 409, "invalid_transition")
        resp = worker_client.post(url, {**body, "worker_id": "ext-1"}, format="json")
        assert resp.status_code == 200
        assert resp.json()["state"] == ("succeeded" if action == "succeed" else "queued")

    def test_a_worker_key_cannot_finish_a_run_nobody_holds(self, worker_client, project):
        run_id = RunFactory(project=project).id
        services.run_start(run_id=run_id, worker_id="")  # started by hand, held by nobody
        for action in ("succeed", "fail"):
            resp = worker_client.post(f"/api/v1/runs/{run_id}/{action}", {"worker_id": "ext-1"},
                                      format="json")
            assert_error(resp, 409, "invalid_transition")
        assert Run.objects.get(pk=run_id).state == "running"

    def test_worker_acknowledges_a_cancel_of_a_run_it_holds(self, worker_client,
                                                            engineer_client, project):
        run_id = self.claimed(worker_client, project)
        url = f"/api/v1/runs/{run_id}/cancel"
        assert engineer_client.post(url).status_code == 202
        # Without a worker_id a worker key may not cancel; another worker may not either.
        assert_error(worker_client.post(url, {}, format="json"), 403, "permission_denied")
        assert_error(worker_client.post(url, {"worker_id": "ext-2"}, format="json"), 409,
                     "invalid_transition")
        resp = worker_client.post(url, {"worker_id": "ext-1"}, format="json")
        assert resp.status_code == 200 and resp.json()["state"] == "canceled"
        types = list(RunEvent.objects.filter(run_id=run_id).order_by("id")
                     .values_list("type", flat=True))
        assert types[-2:] == ["run.cancel_requested", "run.canceled"]

    def test_a_worker_key_cannot_cancel_a_queued_run(self, worker_client, project):
        run = enqueue(project)
        resp = worker_client.post(f"/api/v1/runs/{run.id}/cancel", {"worker_id": "ext-1"},
                                  format="json")
        assert_error(resp, 409, "invalid_transition")
        run.refresh_from_db()
        assert run.state == "queued"


class TestThrottles:
    def test_enqueue_is_throttled_per_key(self, make_key, settings, project):
        settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": "2/min", "cancel": None,
                                                "ingest": None}
        first = client_for(raw_key=make_key("runs:write")[1])
        second = client_for(raw_key=make_key("runs:write")[1])
        for _ in range(2):
            assert first.post("/api/v1/runs", {"kind": "x"}, format="json").status_code == 201
        resp = first.post("/api/v1/runs", {"kind": "x"}, format="json")
        assert_error(resp, 429, "throttled")
        assert int(resp["Retry-After"]) > 0
        assert second.post("/api/v1/runs", {"kind": "x"}, format="json").status_code == 201

    def test_cancel_is_throttled_per_user(self, engineer_client, admin_client_api, settings,
                                          project):
        settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": None, "cancel": "1/min",
                                                "ingest": None}
        runs = [enqueue(project) for _ in range(3)]
        assert engineer_client.post(f"/api/v1/runs/{runs[0].id}/cancel").status_code == 200
        resp = engineer_client.post(f"/api/v1/runs/{runs[1].id}/cancel")
        error = assert_error(resp, 429, "throttled")
        assert int(resp["Retry-After"]) > 0 and error["details"]["retry_after"] > 0
        assert Run.objects.get(pk=runs[1].pk).state == "queued"
        assert admin_client_api.post(f"/api/v1/runs/{runs[2].id}/cancel").status_code == 200

    def test_claim_is_not_throttled_by_the_enqueue_rate(self, worker_client, settings, project):
        settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": "1/min", "cancel": "1/min",
                                                "ingest": None}
        for _ in range(3):
            assert claim(worker_client).status_code == 200


def test_claim_is_in_the_openapi_schema(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    assert "/api/v1/runs/claim/" in schema["paths"]
    assert "/api/v1/runs/{run_id}/heartbeat/" in schema["paths"]
