"""The worker registry: workers say who they are and what they claim, and a queued run that no
online worker claims says so (run API, `runs status`, the run page) instead of waiting in
silence."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import services
from runs.demo import demo_runs_create
from runs.models import Run, Worker
from tests.conftest import client_for
from tests.queue.conftest import wait_until

WAITING = "no worker online serves kind {}"


def enqueue(project, kind: str, **kwargs) -> Run:
    return services.run_enqueue(project=project, kind=kind, **kwargs)[0]


def waiting_of(client, run: Run) -> str | None:
    resp = client.get(f"/api/v1/runs/{run.id}")
    assert resp.status_code == 200, resp.content
    return resp.json()["waiting"]


def claim(client, worker_id: str = "ext-1", **body):
    resp = client.post("/api/v1/runs/claim", {"worker_id": worker_id, **body}, format="json")
    assert resp.status_code == 200, resp.content
    return resp.json()["runs"]


def workers_of(client) -> dict[str, dict]:
    resp = client.get("/api/v1/workers")
    assert resp.status_code == 200, resp.content
    return {w["worker_id"]: w for w in resp.json()["results"]}


@pytest.mark.django_db
class TestWaiting:
    def test_a_run_nobody_serves_says_so_from_enqueue_on(self, engineer_client, project):
        resp = engineer_client.post("/api/v1/runs", {"kind": "script.pull"}, format="json")
        assert resp.status_code == 201
        assert resp.json()["waiting"] == WAITING.format("script.pull")
        run = Run.objects.get(pk=resp.json()["id"])
        assert waiting_of(engineer_client, run) == WAITING.format("script.pull")

    def test_an_external_worker_claiming_a_kind_serves_it(self, engineer_client, worker_client,
                                                          project):
        served = enqueue(project, "ext.job", run_after=timezone.now() + timedelta(hours=1))
        other = enqueue(project, "script.pull")
        assert claim(worker_client, kinds=["ext.job"]) == []  # nothing due yet
        assert waiting_of(engineer_client, served) is None
        assert waiting_of(engineer_client, other) == WAITING.format("script.pull")
        assert workers_of(engineer_client)["ext-1"]["kinds"] == ["ext.job"]

    def test_a_claim_without_kinds_serves_every_kind_of_its_project_only(
            self, engineer_client, make_key, project, other_project):
        _, raw = make_key("worker", project_obj=other_project)
        mine = enqueue(other_project, "script.pull", run_after=timezone.now() + timedelta(hours=1))
        theirs = enqueue(project, "script.pull")
        assert claim(client_for(raw_key=raw), worker_id="ext-any") == []
        assert waiting_of(engineer_client, mine) is None
        # A worker key claims its own project's runs: the default project's still wait.
        assert waiting_of(engineer_client, theirs) == WAITING.format("script.pull")
        worker = workers_of(engineer_client)["ext-any"]
        assert worker["kinds"] is None and worker["project"] == "other"
        assert worker["source"] == "api" and worker["online"] is True

    def test_a_silent_worker_is_offline_after_the_stall_timeout(self, engineer_client,
                                                                worker_client, project):
        run = enqueue(project, "ext.job", run_after=timezone.now() + timedelta(hours=1))
        claim(worker_client, kinds=["ext.job"])
        # The worker died an hour ago, as far as the registry can tell.
        Worker.objects.filter(worker_id="ext-1").update(
            heartbeat_at=timezone.now() - timedelta(hours=1))
        assert waiting_of(engineer_client, run) == WAITING.format("ext.job")
        assert workers_of(engineer_client)["ext-1"]["online"] is False

    def test_a_run_heartbeat_keeps_the_external_worker_online(self, engineer_client,
                                                              worker_client, project):
        enqueue(project, "ext.job")
        (held,) = claim(worker_client, kinds=["ext.job"])
        waiting = enqueue(project, "ext.job", run_after=timezone.now() + timedelta(hours=1))
        long_ago = timezone.now() - timedelta(hours=1)
        Worker.objects.filter(worker_id="ext-1").update(heartbeat_at=long_ago)
        resp = worker_client.post(f"/api/v1/runs/{held['id']}/heartbeat",
                                  {"worker_id": "ext-1"}, format="json")
        assert resp.status_code == 200
        assert waiting_of(engineer_client, waiting) is None
        assert Worker.objects.get(worker_id="ext-1").heartbeat_at > long_ago

    def test_only_queued_runs_wait(self, engineer_client, project):
        run = enqueue(project, "script.pull")
        services.run_start(run_id=run.id, worker_id="agent-1")
        assert waiting_of(engineer_client, run) is None
        services.run_cancel(run_id=run.id, reason="x", force=True)
        assert waiting_of(engineer_client, run) is None

    def test_the_list_reads_the_online_kinds_once(self, engineer_client, project):
        def list_queries() -> int:
            with CaptureQueriesContext(connection) as ctx:
                resp = engineer_client.get("/api/v1/runs?limit=100")
            assert resp.status_code == 200
            assert {r["waiting"] for r in resp.json()["results"]} == {
                WAITING.format("script.pull")}
            return len(ctx.captured_queries)

        enqueue(project, "script.pull")
        few = list_queries()
        for _ in range(20):
            enqueue(project, "script.pull")
        assert list_queries() == few

    def test_the_demos_queued_run_says_it_waits(self, engineer_client, project):
        demo_runs_create(project=project)
        run = Run.objects.get(name="Nightly sync")
        assert run.state == "queued"
        assert waiting_of(engineer_client, run) == WAITING.format(run.kind)

    def test_the_run_page_shows_it(self, client, viewer, project):
        run = enqueue(project, "script.pull", name="Nightly sync")
        client.force_login(viewer)
        page = client.get(f"/runs/{run.id}/").content.decode()
        assert "Waiting: " + WAITING.format("script.pull") in page
        services.run_cancel(run_id=run.id, reason="x")
        assert "Waiting: " not in client.get(f"/runs/{run.id}/").content.decode()


@pytest.mark.django_db
class TestWorkerList:
    def test_keys_see_the_servers_workers_and_their_projects_only(
            self, make_key, key_client, viewer_client, project, other_project):
        Worker.objects.create(worker_id="host-1:42", host="host-1", pid=42,
                              kinds=["system.noop"], concurrency=4)
        for worker_id, key_project in (("ext-default", project), ("ext-other", other_project)):
            _, raw = make_key("worker", project_obj=key_project)
            claim(client_for(raw_key=raw), worker_id=worker_id, kinds=["ext.job"])
        assert set(workers_of(viewer_client)) == {"host-1:42", "ext-default", "ext-other"}
        assert set(workers_of(key_client("runs:read"))) == {"host-1:42", "ext-default"}
        server = workers_of(viewer_client)["host-1:42"]
        assert server == {**server, "source": "process", "host": "host-1", "pid": 42,
                          "kinds": ["system.noop"], "concurrency": 4, "project": None,
                          "online": True}

    def test_pages_like_the_other_lists(self, viewer_client):
        for n in range(3):
            Worker.objects.create(worker_id=f"w-{n}",
                                  started_at=timezone.now() - timedelta(minutes=n))
        first = viewer_client.get("/api/v1/workers?limit=2").json()
        assert [w["worker_id"] for w in first["results"]] == ["w-0", "w-1"]
        rest = viewer_client.get(first["next"]).json()
        assert [w["worker_id"] for w in rest["results"]] == ["w-2"] and rest["next"] is None

    def test_admin_lists_them_read_only(self, client, admin_user):
        Worker.objects.create(worker_id="host-1:42", kinds=["system.noop"])
        admin_user.is_staff = True
        admin_user.save()
        client.force_login(admin_user)
        page = client.get("/admin/runs/worker/")
        assert page.status_code == 200 and "host-1:42" in page.content.decode()
        assert client.get("/admin/runs/worker/add/").status_code == 403


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
class TestWorkerProcessRegisters:
    """The real loop in this process: register at start, beat, leave on a clean exit."""

    def test_a_worker_registers_its_kinds_and_leaves_on_stop(self, project, make_worker,
                                                             engineer_client, caplog):
        served = enqueue(project, "system.sleep", run_after=timezone.now() + timedelta(hours=1))
        unserved = enqueue(project, "script.pull")
        worker = make_worker(worker_id="w-reg", kinds=["system.noop", "system.sleep"],
                             concurrency=2)
        with caplog.at_level(logging.INFO, logger="tracefoundry.worker"):
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            try:
                wait_until(lambda: Worker.objects.filter(worker_id="w-reg").exists(),
                           what="the worker to register")
                registered = Worker.objects.get(worker_id="w-reg")
                assert registered.kinds == ["system.noop", "system.sleep"]
                assert registered.concurrency == 2 and registered.pid and registered.host
                assert waiting_of(engineer_client, served) is None
                assert waiting_of(engineer_client, unserved) == WAITING.format("script.pull")
                # Its heartbeat tick refreshes the registration.
                first = registered.heartbeat_at
                wait_until(lambda: Worker.objects.get(worker_id="w-reg").heartbeat_at > first,
                           what="a worker heartbeat")
            finally:
                worker.stop()
                thread.join(30)
        assert not thread.is_alive()
        assert not Worker.objects.filter(worker_id="w-reg").exists()
        assert waiting_of(engineer_client, served) == WAITING.format("system.sleep")
        started = [r.getMessage() for r in caplog.records if "event=worker.started" in
                   r.getMessage()]
        assert started and "kinds=system.noop,system.sleep concurrency=2" in started[0]

    def test_a_forgotten_worker_registers_again_on_its_next_tick(self, project, make_worker):
        worker = make_worker(worker_id="w-again", kinds=["system.noop"])
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: Worker.objects.filter(worker_id="w-again").exists(),
                       what="the worker to register")
            Worker.objects.filter(worker_id="w-again").delete()
            wait_until(lambda: Worker.objects.filter(worker_id="w-again").exists(),
                       what="the worker to register again")
        finally:
            worker.stop()
            thread.join(30)
