"""The worker loop in-process: jobs, outputs, errors, logs, cancel and graceful stop."""

from __future__ import annotations

import json
import sys
import threading

import pytest

from payloads.models import PayloadBlob
from payloads.store import payload_read
from runs import services
from runs.jobs import JobContext, job
from runs.models import Run, RunEvent
from runs.services import ERROR_LIMIT
from tests.queue.conftest import wait_until


@job("test.print")
def print_job(ctx: JobContext) -> str:
    print("hello from", ctx.run_id)
    print("something odd", file=sys.stderr)
    sys.stdout.write("no newline")
    return "printed"


@job("test.explode")
def explode_job(ctx: JobContext) -> None:
    raise RuntimeError("kaboom " + "x" * (ERROR_LIMIT * 2))


@job("test.cancel_self")
def cancel_self_job(ctx: JobContext) -> None:
    # Someone cancels the run while the job works; the job sees it at its next heartbeat.
    services.run_cancel(run_id=ctx.run_id, reason="user said stop")
    ctx.sleep(60)


def enqueue(project, kind, input=None, **kwargs) -> Run:
    return services.run_enqueue(project=project, kind=kind, input=input, **kwargs)[0]


def types_of(run: Run) -> list[str]:
    return list(RunEvent.objects.filter(run=run).order_by("id").values_list("type", flat=True))


@pytest.mark.django_db
class TestJobs:
    def test_noop_echoes_its_input_as_output(self, project, make_worker):
        run = enqueue(project, "system.noop", {"hello": ["world", 1]})
        assert make_worker().run_once() == 1
        run.refresh_from_db()
        assert run.state == "succeeded" and run.attempt == 1 and run.claimed_by == "w-test"
        # A small output stays on the run (issue #12); a large one becomes a payload blob.
        assert run.output == {"hello": ["world", 1]} and run.output_ref == ""
        assert types_of(run) == ["run.created", "run.started", "run.succeeded"]

    def test_noop_large_output_is_a_payload_blob(self, project, make_worker):
        big = {"hello": "world " * 2000}
        run = enqueue(project, "system.noop", big)
        assert make_worker().run_once() == 1
        run.refresh_from_db()
        assert run.state == "succeeded" and run.output is None
        blob = PayloadBlob.objects.get(sha256=run.output_ref.removeprefix("sha256:"))
        assert json.loads(payload_read(blob)) == big

    def test_worker_claims_only_kinds_it_can_run(self, project, make_worker):
        foreign = enqueue(project, "agent.session")
        mine = enqueue(project, "system.noop")
        assert make_worker(concurrency=5).run_once() == 1
        foreign.refresh_from_db()
        mine.refresh_from_db()
        assert foreign.state == "queued" and mine.state == "succeeded"

    def test_kinds_option(self, project, make_worker):
        enqueue(project, "system.noop")
        assert make_worker(kinds=["system.fail"]).run_once() == 0
        with pytest.raises(ValueError, match=r"no\.such"):
            make_worker(kinds=["no.such"])

    @pytest.mark.parametrize("retryable, state", [(False, "failed"), (True, "queued")])
    def test_system_fail(self, project, make_worker, retryable, state):
        run = enqueue(project, "system.fail", {"retryable": retryable}, max_attempts=2)
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == state and run.attempt == 1
        assert "failing on purpose" in run.error
        assert types_of(run)[-1] == ("run.retrying" if retryable else "run.failed")

    def test_an_exception_is_retryable_and_its_error_is_capped(self, project, make_worker):
        run = enqueue(project, "test.explode", max_attempts=1)
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == "failed"
        assert "RuntimeError: kaboom" in run.error and "Traceback" in run.error
        assert len(run.error.encode()) <= ERROR_LIMIT

    def test_stdout_and_stderr_become_log_events(self, project, make_worker, capsys):
        run = enqueue(project, "test.print")
        make_worker().run_once()
        logs = [(e.payload["stream"], e.payload["text"], e.level)
                for e in RunEvent.objects.filter(run=run, type="log").order_by("id")]
        assert logs == [
            ("stdout", f"hello from {run.id}\n", "info"),
            ("stderr", "something odd\n", "warn"),
            ("stdout", "no newline", "info"),
        ]
        assert RunEvent.objects.filter(run=run, type="log").first().source == "worker"
        # Nothing leaked to the worker's own output, and its streams are back.
        assert "hello from" not in capsys.readouterr().out
        print("after")
        assert capsys.readouterr().out == "after\n"

    def test_sleep_job(self, project, make_worker):
        run = enqueue(project, "system.sleep", {"seconds": 0.1})
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == "succeeded"

    @pytest.mark.parametrize("bad", [{"seconds": "soon"}, {"seconds": -1}, [1, 2]])
    def test_sleep_rejects_bad_input_for_good(self, project, make_worker, bad):
        run = enqueue(project, "system.sleep", bad, max_attempts=3)
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == "failed"

    def test_a_running_job_sees_a_cancel_at_its_next_heartbeat(self, project, make_worker):
        run = enqueue(project, "test.cancel_self")
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == "canceled"
        assert types_of(run)[-2:] == ["run.cancel_requested", "run.canceled"]

    def test_retention_cleanup_job(self, project, make_worker):
        run = enqueue(project, "retention.cleanup", {"dry_run": True})
        make_worker().run_once()
        run.refresh_from_db()
        assert run.state == "succeeded"
        assert run.output["dry_run"] is True  # small: kept on the run


def start_worker(worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
class TestWorkerLoop:
    """The real loop (threads, heartbeats, stop) in this process."""

    def test_loop_runs_jobs_concurrently_and_stops_cleanly(self, project, make_worker):
        runs = [enqueue(project, "system.sleep", {"seconds": 0.2}) for _ in range(3)]
        runs.append(enqueue(project, "system.noop", {"n": 1}))
        worker = make_worker(concurrency=3)
        thread = start_worker(worker)
        wait_until(lambda: Run.objects.filter(state="succeeded").count() == 4, what="4 runs")
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert worker.executed == 4

    def test_cancel_of_a_running_job_through_the_api(self, project, make_worker,
                                                     engineer_client):
        run = enqueue(project, "system.sleep", {"seconds": 60})
        worker = make_worker()
        thread = start_worker(worker)
        try:
            wait_until(lambda: Run.objects.get(pk=run.pk).state == "running", what="running")
            resp = engineer_client.post(f"/api/v1/runs/{run.id}/cancel", {}, format="json")
            assert resp.status_code == 202
            wait_until(lambda: Run.objects.get(pk=run.pk).state == "canceled", what="canceled")
        finally:
            worker.stop()
            thread.join(30)
        assert types_of(run)[-2:] == ["run.cancel_requested", "run.canceled"]

    def test_stop_hands_unfinished_runs_back(self, project, make_worker):
        run = enqueue(project, "system.sleep", {"seconds": 60})
        worker = make_worker(shutdown_grace=0.2)
        thread = start_worker(worker)
        wait_until(lambda: Run.objects.get(pk=run.pk).state == "running", what="running")
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()
        run.refresh_from_db()
        assert run.state == "queued" and run.attempt == 0 and run.claimed_by == ""
        event = RunEvent.objects.filter(run=run).order_by("-id").first()
        assert event.type == "run.retrying" and event.payload["reason"] == "worker_shutdown"
