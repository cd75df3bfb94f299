"""Enqueue, detail, list: idempotency, filters, sorting and cursor pagination."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs.models import Run, RunEvent
from tests.conftest import client_for
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def enqueue(client, body, **headers):
    return client.post("/api/v1/runs", body, format="json", **headers)


def test_enqueue_creates_a_queued_run(engineer_client):
    resp = enqueue(engineer_client, {"kind": "script.pull", "input": {"url": "x"},
                                     "name": "pull", "max_attempts": 5})
    assert resp.status_code == 201
    body = resp.json()
    assert body["state"] == "queued" and body["project"] == "default"
    assert body["input"] == {"url": "x"} and body["max_attempts"] == 5 and body["attempt"] == 0
    assert resp["Location"] == f"/api/v1/runs/{body['id']}"
    assert body["event_count"] == 1
    assert RunEvent.objects.get(run_id=body["id"]).type == "run.created"


def test_idempotency_key_returns_the_same_run(engineer_client):
    body = {"kind": "script.pull", "input": {"n": 1}}
    first = enqueue(engineer_client, body, HTTP_IDEMPOTENCY_KEY="abc")
    second = enqueue(engineer_client, body, HTTP_IDEMPOTENCY_KEY="abc")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    third = enqueue(engineer_client, {**body, "idempotency_key": "abc"})
    assert third.status_code == 200
    assert Run.objects.count() == 1


def test_idempotency_key_with_another_body_is_409(engineer_client):
    enqueue(engineer_client, {"kind": "script.pull", "input": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="k")
    resp = enqueue(engineer_client, {"kind": "script.pull", "input": {"n": 2}},
                   HTTP_IDEMPOTENCY_KEY="k")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "idempotency_conflict"
    assert Run.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_requests_with_one_key_create_one_run(engineer):
    barrier = threading.Barrier(8)
    results = []

    def worker():
        client = client_for(engineer)
        barrier.wait()
        resp = enqueue(client, {"kind": "script.pull", "input": {"same": True}},
                       HTTP_IDEMPOTENCY_KEY="race")
        results.append((resp.status_code, resp.json()["id"]))
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for code, _ in results) == [200] * 7 + [201]
    assert len({run_id for _, run_id in results}) == 1
    assert Run.objects.filter(idempotency_key="race").count() == 1
    assert RunEvent.objects.filter(type="run.created").count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": "Bad Kind"},
        {"kind": "x", "max_attempts": 0},
        {"kind": "x", "max_attempts": "many"},
        {"kind": "x", "run_after": "tomorrow"},
        {"kind": "x", "project": "no-such-project"},
        {"kind": "x", "trace_id": "not-hex"},
        ["kind", "x"],
    ],
)
def test_bad_enqueue_is_4xx_and_creates_nothing(engineer_client, body):
    resp = enqueue(engineer_client, body)
    assert resp.status_code in (400, 404), resp.content
    assert set(resp.json()["error"]) == {"code", "message", "details"}
    assert Run.objects.count() == 0


def test_input_is_redacted(engineer_client):
    secret = "AKIA" + "ABCDEFGHIJKLMNOP"
    resp = enqueue(engineer_client, {"kind": "x", "input": {"aws": secret, "password": "hunter2"}})
    assert secret not in resp.content.decode() and "hunter2" not in resp.content.decode()


def test_detail_has_summary_and_no_event_stream(viewer_client, project):
    run = RunFactory(state="running")
    body = viewer_client.get(f"/api/v1/runs/{run.id}").json()
    for key in ("event_count", "error_count", "latest_event_at", "steps_total",
                "steps_completed", "trace_id", "links"):
        assert key in body
    assert "events" not in body
    assert viewer_client.get(f"/api/v1/runs/{run.id}/").status_code == 200
    assert viewer_client.get("/api/v1/runs/run_doesnotexist").status_code == 404


def test_list_filters(viewer_client, project, other_project):
    a = RunFactory(kind="agent.session", name="alpha fix", state="running")
    b = RunFactory(kind="script.pull", name="beta", state="succeeded")
    c = RunFactory(kind="script.pull", name="gamma", project=other_project)

    def ids(**params):
        resp = viewer_client.get("/api/v1/runs", params)
        assert resp.status_code == 200, resp.content
        return {r["id"] for r in resp.json()["results"]}

    assert ids() == {a.id, b.id, c.id}
    assert ids(project="other") == {c.id}
    assert ids(state="running") == {a.id}
    assert ids(state="running,succeeded") == {a.id, b.id}
    assert ids(kind="script.pull") == {b.id, c.id}
    assert ids(q="alpha") == {a.id}
    assert ids(q=b.id) == {b.id}
    future = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert ids(since=future) == set()
    assert ids(before=future) == {a.id, b.id, c.id}
    assert viewer_client.get("/api/v1/runs", {"state": "bogus"}).status_code == 400
    assert viewer_client.get("/api/v1/runs", {"since": "yesterday"}).status_code == 400


def test_cursor_pagination_walks_every_run_once(viewer_client, project):
    made = {RunFactory().id for _ in range(23)}
    seen, url, pages = [], "/api/v1/runs?limit=10", 0
    while url:
        body = viewer_client.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3 and len(seen) == 23 and set(seen) == made
    created = [Run.objects.get(pk=i).created_at for i in seen]
    assert created == sorted(created, reverse=True)


def test_page_size_is_capped_at_100(viewer_client, project):
    for _ in range(3):
        RunFactory()
    body = viewer_client.get("/api/v1/runs", {"limit": 500}).json()
    assert len(body["results"]) == 3
    from tracefoundry.api.pagination import ListCursorPagination

    assert ListCursorPagination.max_page_size == 100


def test_sorting(viewer_client, engineer_client, project):
    quiet, busy = RunFactory(state="running"), RunFactory(state="running")
    engineer_client.post(f"/api/v1/runs/{busy.id}/events", [{"type": "note"}] * 5, format="json")
    order = [r["id"] for r in viewer_client.get("/api/v1/runs", {"ordering": "-event_count"})
             .json()["results"]]
    assert order == [busy.id, quiet.id]
    order = [r["id"] for r in viewer_client.get("/api/v1/runs", {"ordering": "created_at"})
             .json()["results"]]
    assert order == [quiet.id, busy.id]
