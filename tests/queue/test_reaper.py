"""Heartbeats and the reaper: stalled runs go back to the queue, or fail when attempts are spent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import services
from runs.models import Run, RunEvent, Step
from runs.projections import RUN_PROJECTED_FIELDS, STEP_PROJECTED_FIELDS
from runs.services import run_claim_next, run_heartbeat, run_heartbeat_batch, run_release, runs_reap
from tracefoundry.errors import InvalidTransition, NotFound

pytestmark = pytest.mark.django_db


def claimed(project, worker="w-1", **kwargs) -> Run:
    services.run_enqueue(project=project, kind="test.job", **kwargs)
    (run,) = run_claim_next(worker_id=worker)
    return run


def age_heartbeat(run: Run, seconds: float) -> None:
    """What a dead worker leaves behind: a heartbeat that stopped ``seconds`` ago."""
    old = timezone.now() - timedelta(seconds=seconds)
    Run.objects.filter(pk=run.pk).update(claimed_at=old - timedelta(seconds=1), heartbeat_at=old)


def last_event(run: Run) -> RunEvent:
    return RunEvent.objects.filter(run=run).order_by("-id").first()


def test_heartbeat_moves_heartbeat_at_and_reports_cancel(project):
    run = claimed(project)
    age_heartbeat(run, 30)
    beat = run_heartbeat(run_id=run.id, worker_id="w-1")
    assert beat.cancel_requested is False
    run.refresh_from_db()
    assert run.heartbeat_at == beat.heartbeat_at > run.claimed_at
    events = RunEvent.objects.filter(run=run).count()
    services.run_cancel(run_id=run.id)
    assert run_heartbeat(run_id=run.id, worker_id="w-1").cancel_requested is True
    assert RunEvent.objects.filter(run=run).count() == events + 1  # only run.cancel_requested


def test_heartbeat_of_a_run_not_held_is_refused(project, other_project):
    run = claimed(project)
    with pytest.raises(InvalidTransition) as err:
        run_heartbeat(run_id=run.id, worker_id="w-2")
    assert err.value.details["state"] == "running"
    assert err.value.details["claimed_by"] == "w-1"
    services.run_succeed(run_id=run.id, worker_id="w-1")
    with pytest.raises(InvalidTransition) as err:
        run_heartbeat(run_id=run.id, worker_id="w-1")
    assert err.value.details["state"] == "succeeded"
    with pytest.raises(NotFound):
        run_heartbeat(run_id=run.id, worker_id="w-1", project_id=other_project.id)


def test_bulk_heartbeat_answers_only_for_runs_still_held(project):
    mine, theirs = claimed(project, "w-1"), claimed(project, "w-2")
    beats = run_heartbeat_batch(worker_id="w-1", run_ids=[mine.id, theirs.id, "run_nope"])
    assert set(beats) == {mine.id}


def test_reaper_requeues_a_stalled_run(project):
    run = claimed(project, max_attempts=2)
    fresh = claimed(project, "w-2")
    age_heartbeat(run, 120)
    result = runs_reap(stall_timeout=60)
    assert result.requeued == [run.id] and not result.failed and not result.canceled
    run.refresh_from_db()
    assert run.state == "queued" and run.claimed_by == "" and run.run_after is None
    assert "w-1 stopped heartbeating" in run.error
    event = last_event(run)
    assert event.type == "run.retrying" and event.source == "reaper" and event.level == "warn"
    assert event.payload["reason"] == "stalled" and event.payload["worker_id"] == "w-1"
    fresh.refresh_from_db()
    assert fresh.state == "running"
    # The next claim runs it again: attempt 2.
    (again,) = run_claim_next(worker_id="w-3")
    assert again.id == run.id and again.attempt == 2


def test_reaper_fails_a_stalled_run_whose_attempts_are_spent(project):
    run = claimed(project, max_attempts=1)
    services.step_create(run_id=run.id, name="half done")
    age_heartbeat(run, 120)
    assert runs_reap(stall_timeout=60).failed == [run.id]
    run.refresh_from_db()
    assert run.state == "failed" and run.finished_at and "stopped heartbeating" in run.error
    assert last_event(run).type == "run.failed"
    assert Step.objects.get(run=run).state == "canceled"


def test_reaper_cancels_a_stalled_run_whose_cancel_was_requested(project):
    run = claimed(project, max_attempts=3)
    services.run_cancel(run_id=run.id)
    age_heartbeat(run, 120)
    assert runs_reap(stall_timeout=60).canceled == [run.id]
    run.refresh_from_db()
    assert run.state == "canceled"
    assert [e.type for e in RunEvent.objects.filter(run=run).order_by("id")][-2:] == [
        "run.cancel_requested", "run.canceled"]


def test_reaper_leaves_live_and_unwatched_runs_alone(project):
    live = claimed(project)
    started_by_api = services.run_enqueue(project=project, kind="agent.session")[0]
    services.run_start(run_id=started_by_api.id, worker_id="sdk")  # never heartbeats
    Run.objects.filter(pk=started_by_api.pk).update(
        claimed_at=timezone.now() - timedelta(hours=2))
    assert runs_reap(stall_timeout=60).total == 0
    assert set(Run.objects.values_list("state", flat=True)) == {"running"}
    assert live.id


def test_a_new_attempt_is_not_reaped_for_an_old_heartbeat(project):
    """A run requeued and then started through the API keeps its old heartbeat_at; only
    heartbeats of the current attempt count."""
    run = claimed(project, max_attempts=3)
    age_heartbeat(run, 120)
    runs_reap(stall_timeout=60)
    services.run_start(run_id=run.id, worker_id="sdk")
    assert runs_reap(stall_timeout=60).total == 0


def test_reaping_twice_changes_nothing_more(project):
    run = claimed(project, max_attempts=2)
    age_heartbeat(run, 120)
    assert runs_reap(stall_timeout=60).total == 1
    events = RunEvent.objects.filter(run=run).count()
    assert runs_reap(stall_timeout=60).total == 0
    assert RunEvent.objects.filter(run=run).count() == events


def test_projections_rebuild_after_reaping(project):
    for attempts in (1, 2, 3):
        run = claimed(project, max_attempts=attempts)
        services.step_create(run_id=run.id, name="s")
    # The reaper's clock two minutes ahead: every heartbeat is stale, no row was touched.
    assert runs_reap(stall_timeout=60, now=timezone.now() + timedelta(seconds=120)).total == 3
    before = (list(Run.objects.order_by("id").values("id", *RUN_PROJECTED_FIELDS)),
              list(Step.objects.order_by("id").values("id", *STEP_PROJECTED_FIELDS)))
    services.projections_rebuild()
    after = (list(Run.objects.order_by("id").values("id", *RUN_PROJECTED_FIELDS)),
             list(Step.objects.order_by("id").values("id", *STEP_PROJECTED_FIELDS)))
    assert after == before


def test_hand_backs_never_spend_attempts(project):
    """Four graceful shutdowns in a row leave the run on its first attempt, not at 5 of 3."""
    run = claimed(project, max_attempts=3)
    for n in range(4):
        run_release(run_id=run.id, worker_id=f"w-{n + 1}")
        run.refresh_from_db()
        assert (run.state, run.attempt) == ("queued", 0)
        assert last_event(run).payload["counts_as_attempt"] is False
        (run,) = run_claim_next(worker_id=f"w-{n + 2}")
        assert run.attempt == 1
    assert list(RunEvent.objects.filter(run=run, type="run.started")
                .values_list("payload__attempt", flat=True)) == [1] * 5


def test_a_hand_back_then_a_crash_leaves_attempts_to_retry(project):
    run = claimed(project, max_attempts=2)
    run_release(run_id=run.id, worker_id="w-1")
    (run,) = run_claim_next(worker_id="w-2")
    age_heartbeat(run, 120)  # w-2 was SIGKILLed
    assert runs_reap(stall_timeout=60).requeued == [run.id]
    (run,) = run_claim_next(worker_id="w-3")
    assert run.attempt == 2


def test_projections_rebuild_after_hand_backs(project):
    run = claimed(project, max_attempts=3)
    run_release(run_id=run.id, worker_id="w-1")
    run_claim_next(worker_id="w-2")
    run.refresh_from_db()
    expected = {f: getattr(run, f) for f in RUN_PROJECTED_FIELDS}
    Run.objects.filter(pk=run.pk).update(attempt=7)
    services.projections_rebuild(run_ids=[run.id])
    run.refresh_from_db()
    assert {f: getattr(run, f) for f in RUN_PROJECTED_FIELDS} == expected
