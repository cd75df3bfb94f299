"""Queue metrics selectors: depth, oldest age, enqueue→start latency, durations, success rate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import services
from runs.models import Run
from runs.queue_selectors import (
    Distribution,
    enqueue_start_latency,
    queue_delayed,
    queue_depth,
    queue_oldest_age,
    run_outcomes,
)
from runs.services import run_claim_next

pytestmark = pytest.mark.django_db


def enqueue(project, kind="k.a", **kwargs) -> Run:
    return services.run_enqueue(project=project, kind=kind, **kwargs)[0]


def test_depth_by_kind_and_state(project):
    for _ in range(3):
        enqueue(project, "k.a")
    enqueue(project, "k.b")
    enqueue(project, "k.b", run_after=timezone.now() + timedelta(hours=1))
    run_claim_next(worker_id="w", kinds=["k.a"], limit=2)
    done = enqueue(project, "k.c")
    run_claim_next(worker_id="w", kinds=["k.c"])
    services.run_succeed(run_id=done.id)
    assert queue_depth() == {("k.a", "queued"): 1, ("k.a", "running"): 2,
                             ("k.b", "queued"): 2}
    assert queue_delayed() == {"k.b": 1}


def test_oldest_queued_age_counts_due_runs_only(project):
    old = enqueue(project, "k.a")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    enqueue(project, "k.a")
    enqueue(project, "k.b", run_after=timezone.now() + timedelta(hours=1))
    ages = queue_oldest_age()
    assert set(ages) == {"k.a"}
    assert 299 <= ages["k.a"] <= 400


def test_enqueue_to_start_latency(project):
    since = timezone.now() - timedelta(seconds=1)
    assert enqueue_start_latency(since=since) == Distribution(0, None, None, None, None)
    for _ in range(4):
        enqueue(project)
    run_claim_next(worker_id="w", limit=4)
    stats = enqueue_start_latency(since=since)
    assert stats.count == 4
    assert 0 <= stats.p50_ms <= stats.p95_ms <= stats.max_ms
    assert enqueue_start_latency(since=since, kind="k.other").count == 0


def test_durations_and_success_rate(project):
    since = timezone.now() - timedelta(seconds=1)
    runs = [enqueue(project) for _ in range(5)]
    run_claim_next(worker_id="w", limit=5)
    services.run_succeed(run_id=runs[0].id)
    services.run_succeed(run_id=runs[1].id)
    services.run_succeed(run_id=runs[2].id)
    services.run_fail(run_id=runs[3].id, error="x")
    services.run_cancel(run_id=runs[4].id, force=True)
    outcomes = run_outcomes(since=since)
    assert (outcomes.succeeded, outcomes.failed, outcomes.canceled) == (3, 1, 1)
    assert outcomes.finished == 5 and outcomes.success_rate == 0.75
    assert outcomes.duration.count == 5 and outcomes.duration.p95_ms >= 0
    assert run_outcomes(since=timezone.now() + timedelta(seconds=5)).success_rate is None
