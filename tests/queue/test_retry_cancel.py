"""Retries with exponential backoff and full jitter; cancel of queued and running runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs import services
from runs.models import Run, RunEvent
from runs.services import retry_delay, run_claim_next

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20])
def test_retry_delay_is_full_jitter_under_the_exponential_cap(settings, attempt):
    settings.TRACEFOUNDRY_RETRY_BASE_SECONDS = 2
    settings.TRACEFOUNDRY_RETRY_MAX_SECONDS = 300
    cap = min(300, 2 * 2 ** (attempt - 1))
    delays = [retry_delay(attempt).total_seconds() for _ in range(300)]
    assert all(0 <= d <= cap for d in delays)
    # Full jitter spreads over the whole window, not just near the cap.
    assert min(delays) < cap * 0.25 and max(delays) > cap * 0.75


def test_retryable_failures_requeue_with_backoff_until_max_attempts(project, settings):
    settings.TRACEFOUNDRY_RETRY_BASE_SECONDS = 4
    run, _ = services.run_enqueue(project=project, kind="test.job", max_attempts=3)
    for attempt in (1, 2):
        (claimed,) = run_claim_next(worker_id="w")
        assert claimed.attempt == attempt
        before = timezone.now()
        failed = services.run_fail(run_id=run.id, error="flaky", retryable=True, worker_id="w")
        assert failed.state == "queued"
        cap = 4 * 2 ** (attempt - 1)
        assert before - timedelta(seconds=1) <= failed.run_after
        assert failed.run_after <= timezone.now() + timedelta(seconds=cap)
        event = RunEvent.objects.filter(run=run).order_by("-id").first()
        assert event.type == "run.retrying" and event.payload["attempt"] == attempt
        assert parse_datetime(event.payload["run_after"]) == failed.run_after
        # Not claimable before its backoff ends (unless the jitter drew ~0).
        if failed.run_after > timezone.now() + timedelta(milliseconds=200):
            assert run_claim_next(worker_id="w") == []
        # The backoff ends (instead of waiting for it).
        Run.objects.filter(pk=run.pk).update(run_after=timezone.now())
    run_claim_next(worker_id="w")
    final = services.run_fail(run_id=run.id, error="still flaky", retryable=True, worker_id="w")
    assert final.state == "failed" and final.attempt == 3


def test_cancel_of_a_queued_run_is_immediate(engineer_client, project):
    run, _ = services.run_enqueue(project=project, kind="test.job")
    resp = engineer_client.post(f"/api/v1/runs/{run.id}/cancel", {"reason": "no"}, format="json")
    assert resp.status_code == 200 and resp.json()["state"] == "canceled"
    assert run_claim_next(worker_id="w") == []


def test_cancel_of_a_running_run_is_requested_then_acknowledged(engineer_client, project):
    services.run_enqueue(project=project, kind="test.job")
    (run,) = run_claim_next(worker_id="w-1")
    resp = engineer_client.post(f"/api/v1/runs/{run.id}/cancel", {}, format="json")
    assert resp.status_code == 202 and resp.json()["state"] == "running"
    assert resp.json()["cancel_requested_at"]
    done = services.run_cancel(run_id=run.id, worker_id="w-1")
    assert done.state == "canceled"
    types = list(RunEvent.objects.filter(run=run).order_by("id").values_list("type", flat=True))
    assert types[-2:] == ["run.cancel_requested", "run.canceled"]
