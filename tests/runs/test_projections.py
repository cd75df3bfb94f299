"""Run and Step rows are a projection: rebuild_projections reproduces them from events alone."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from runs import services
from runs.demo import demo_runs_create
from runs.models import Run, RunEvent, Step
from runs.projections import RUN_PROJECTED_FIELDS, STEP_PROJECTED_FIELDS
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def snapshot():
    runs = {r["id"]: r for r in Run.objects.values("id", *RUN_PROJECTED_FIELDS)}
    steps = {s["id"]: s for s in Step.objects.values("id", *STEP_PROJECTED_FIELDS)}
    return runs, steps


def test_rebuild_restores_corrupted_projections(project):
    demo_runs_create(project=project)
    retried = RunFactory(max_attempts=3)
    services.run_start(run_id=retried.id, worker_id="w")
    services.run_fail(run_id=retried.id, error="flaky", retryable=True)
    services.run_start(run_id=retried.id, worker_id="w2")
    services.step_create(run_id=retried.id, name="half-done")
    services.event_append_batch(run_id=retried.id, events=[{"type": "error", "payload": {"m": 1}}])
    services.run_cancel(run_id=retried.id)
    services.run_cancel(run_id=retried.id, force=True)
    expected = snapshot()
    assert len(expected[0]) == 6 and len(expected[1]) >= 5

    # Corrupt every projected column (bypassing the services, as a bug or bad restore would).
    Run.objects.update(state="running", attempt=99, claimed_by="nobody", steps_total=0,
                       steps_completed=42, event_count=0, error_count=7, latest_event_at=None,
                       started_at=None, finished_at=None, output_ref="junk", error="junk",
                       cancel_requested_at=None, run_after=None)
    Step.objects.update(state="pending", started_at=None, finished_at=None, error="junk",
                        name="junk", position=9)
    assert snapshot() != expected

    out = io.StringIO()
    call_command("rebuild_projections", stdout=out)
    assert "Rebuilt the projections of 6 run(s)." in out.getvalue()
    assert snapshot() == expected


def test_counts_match_the_stream(project):
    run = RunFactory(state="running")
    services.event_append_batch(run_id=run.id, events=[{"type": "note"}, {"type": "error"}])
    run.refresh_from_db()
    assert run.event_count == RunEvent.objects.filter(run=run).count() == 4
    assert run.error_count == 1
