"""``manage.py worker`` as a real process: SIGKILL mid-run loses no run; SIGTERM exits cleanly.

PostgreSQL only: the child process needs to see the test database (SQLite's is in memory); the
same logic runs in-process on both databases in test_worker.py and test_reaper.py.
"""

from __future__ import annotations

import signal

import pytest
from django.db import connection

from runs import services
from runs.models import Run, RunEvent, Worker
from runs.wakeup import QUEUE_CHANNEL
from tests.queue.conftest import wait_until

pytestmark = [pytest.mark.postgres,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FAST = {"TRACEFOUNDRY_HEARTBEAT_SECONDS": "1", "TRACEFOUNDRY_REAPER_INTERVAL_SECONDS": "1"}


def state_of(run: Run) -> str:
    return Run.objects.values_list("state", flat=True).get(pk=run.pk)


def job_started(worker, run: Run) -> None:
    """The job itself is running (claimed runs not started yet go straight back on SIGTERM)."""
    wait_until(lambda: f"event=run.started worker={worker.worker_id} run_id={run.id}"
               in worker.log, what="the job to start")


def test_a_worker_killed_mid_run_loses_no_run(project, worker_process):
    run, _ = services.run_enqueue(project=project, kind="system.sleep", input={"seconds": 2},
                                  max_attempts=3)
    doomed = worker_process("--worker-id", "w-doomed", **FAST,
                            TRACEFOUNDRY_STALL_TIMEOUT_SECONDS="3")
    wait_until(lambda: state_of(run) == "running", what="the first worker to start the run")
    wait_until(lambda: Run.objects.get(pk=run.pk).heartbeat_at > Run.objects.get(
        pk=run.pk).claimed_at, what="a heartbeat")
    doomed.proc.send_signal(signal.SIGKILL)
    assert doomed.proc.wait(30) == -signal.SIGKILL
    assert state_of(run) == "running"  # nobody said otherwise: only the reaper can tell

    rescuer = worker_process("--worker-id", "w-rescuer", **FAST,
                             TRACEFOUNDRY_STALL_TIMEOUT_SECONDS="3")
    wait_until(lambda: state_of(run) == "succeeded", what="the rescue", timeout=120)
    rescuer.proc.send_signal(signal.SIGTERM)
    assert rescuer.proc.wait(60) == 0, rescuer.log

    run.refresh_from_db()
    assert run.attempt == 2 and run.claimed_by == "w-rescuer"
    events = list(RunEvent.objects.filter(run=run).order_by("id"))
    assert [e.type for e in events] == ["run.created", "run.started", "run.retrying",
                                        "run.started", "run.succeeded"]
    reaped = events[2]
    assert reaped.source == "reaper" and reaped.payload["reason"] == "stalled"
    assert reaped.payload["worker_id"] == "w-doomed"
    assert [e.payload["worker_id"] for e in events if e.type == "run.started"] == [
        "w-doomed", "w-rescuer"]
    assert "event=run.finished" in rescuer.log and run.id in rescuer.log


def test_sigterm_lets_the_job_in_hand_finish(project, worker_process):
    run, _ = services.run_enqueue(project=project, kind="system.sleep", input={"seconds": 2})
    worker = worker_process("--worker-id", "w-term", **FAST,
                            TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS="60")
    job_started(worker, run)
    later, _ = services.run_enqueue(project=project, kind="system.noop")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(90) == 0, worker.log
    assert state_of(run) == "succeeded"
    assert "event=worker.stopped" in worker.log
    # It stopped claiming: a run enqueued after SIGTERM was not taken... or was taken before
    # the signal arrived; either way it is never left running.
    assert state_of(later) in ("queued", "succeeded")


def test_sigterm_hands_back_a_job_that_outlives_the_grace_period(project, worker_process):
    run, _ = services.run_enqueue(project=project, kind="system.sleep", input={"seconds": 600},
                                  max_attempts=1)
    worker = worker_process("--worker-id", "w-term", "--concurrency", "2", **FAST,
                            TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    job_started(worker, run)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0, worker.log
    run.refresh_from_db()
    assert run.state == "queued" and run.claimed_by == "" and run.attempt == 0
    event = RunEvent.objects.filter(run=run).order_by("-id").first()
    assert event.type == "run.retrying" and event.payload["reason"] == "worker_shutdown"
    assert "event=run.released" in worker.log


def test_sigterm_with_the_default_grace_hands_back_and_exits_cleanly(project, worker_process):
    """The default grace (8 s) against a job that outlives it: the worker hands the run back and
    exits 0 by itself, inside a container's 10 s stop timeout (the shutdown, grace + hand-back +
    cleanup, fits in the grace period; its log says how long it took as shutdown_ms)."""
    run, _ = services.run_enqueue(project=project, kind="system.sleep", input={"seconds": 600})
    worker = worker_process("--worker-id", "w-default-grace", **FAST)
    job_started(worker, run)
    assert Worker.objects.filter(worker_id="w-default-grace").exists()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0, worker.log  # the timeout only guards against a hang
    run.refresh_from_db()
    assert run.state == "queued" and run.claimed_by == "" and run.attempt == 0
    assert "event=run.released" in worker.log and "event=worker.stopped" in worker.log
    assert "released=1" in worker.log
    assert not Worker.objects.filter(worker_id="w-default-grace").exists()


def test_worker_wakes_on_notify_and_runs_jobs_concurrently(project, worker_process):
    worker = worker_process("--worker-id", "w-many", "--concurrency", "4", "--kinds",
                            "system.noop,system.fail", **FAST,
                            TRACEFOUNDRY_WORKER_POLL_MS="60000")  # only NOTIFY can wake it
    wait_until(lambda: "event=worker.started" in worker.log, what="start-up")
    runs = [services.run_enqueue(project=project, kind="system.noop", input={"n": n})[0]
            for n in range(20)]
    failing, _ = services.run_enqueue(project=project, kind="system.fail",
                                      input={"retryable": False})
    wait_until(lambda: Run.objects.filter(pk__in=[r.pk for r in runs],
                                          state="succeeded").count() == 20, what="20 runs")
    wait_until(lambda: state_of(failing) == "failed", what="the failing run")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0, worker.log
    assert "wake=listen/notify" in worker.log


def test_bad_kinds_option_fails_start_up(worker_process):
    worker = worker_process("--kinds", "no.such.kind")
    assert worker.proc.wait(60) != 0
    assert "no.such.kind" in worker.log


def listening_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND query = %s", [f"LISTEN {QUEUE_CHANNEL}"])
        return cursor.fetchone()[0]


def test_one_idle_worker_listens_and_a_full_one_hands_the_turn_over(project, worker_process):
    """Two idle workers of the same kinds: one LISTENs, so a run wakes one worker, not both.
    When the listening one has no free slot left, the other takes over: a run enqueued then
    starts although neither worker polls (only a NOTIFY can wake them)."""
    never = {"TRACEFOUNDRY_WORKER_POLL_MS": "3600000"}
    workers = [worker_process("--worker-id", worker_id, "--kinds", "system.sleep,system.noop",
                              **FAST, **never) for worker_id in ("w-first", "w-second")]
    for worker in workers:
        wait_until(lambda w=worker: "event=worker.started" in w.log, what="start-up")
    wait_until(lambda: listening_sessions() == 1, what="one worker to listen")
    warm_up, _ = services.run_enqueue(project=project, kind="system.noop", input={"n": 0})
    wait_until(lambda: state_of(warm_up) == "succeeded", what="the listening worker")
    assert listening_sessions() == 1

    # Whoever takes it has no free slot left; the other one must be woken for the next run.
    long_run, _ = services.run_enqueue(project=project, kind="system.sleep",
                                       input={"seconds": 600}, max_attempts=1)
    wait_until(lambda: state_of(long_run) == "running", what="a worker to take the long run")
    quick, _ = services.run_enqueue(project=project, kind="system.noop", input={"n": 1})
    wait_until(lambda: state_of(quick) == "succeeded", what="the free worker to run it")
    holders = Run.objects.filter(pk__in=[long_run.pk, quick.pk]).values_list("claimed_by",
                                                                             flat=True)
    assert set(holders) == {"w-first", "w-second"}
    assert listening_sessions() == 1

    for worker in workers:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.proc.wait(60) == 0, worker.log
