"""The queue: claiming runs, heartbeats, the reaper, and handing a run back on shutdown.

Every state change is a lifecycle event appended in the same transaction as the Run row update,
through the ledger primitive (runs.services.ledger). The claim is the hot path: on PostgreSQL one
``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`` claims a batch and
applies what ``projections.apply_event`` does for ``run.started``, and one INSERT stores the
batch's ``run.started`` events. Elsewhere (SQLite) the claim runs in the write transaction that
``transaction_mode=IMMEDIATE`` opens, so two claimers can never pick the same run.

Heartbeats are liveness, not state: they update ``heartbeat_at`` and append no event. The reaper
watches runs that have a heartbeat of their current attempt (``heartbeat_at >= claimed_at``: runs
claimed here, or started through the API and heartbeating since), so an agent session started
with ``/start`` that never heartbeats is never reaped.
"""


from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from payloads.redaction import get_redactor
from runs import lifecycle as lc
from runs import wire
from runs.models import Run, RunState
from runs.projection_sql import claim_sql
from runs.services.ledger import (
    append_lifecycle,
    check_transition,
    lifecycle_broadcast,
    lifecycle_changes,
    lifecycle_row,
    lock_run,
    open_steps,
    save_projection,
)
from runs.services.runs import refuse_credentials
from runs.wakeup import workers_wake
from runs.worker_registry import worker_beat, worker_seen
from tracefoundry.errors import InvalidInput, InvalidTransition, NotFound

log = logging.getLogger(__name__)


CLAIM_LIMIT_MAX = 100


WORKER_ID_MAX = 200


@dataclass(frozen=True)
class Heartbeat:
    run_id: str
    heartbeat_at: datetime
    cancel_requested: bool


@dataclass
class ReapResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.requeued) + len(self.failed) + len(self.canceled)


def _check_worker_id(worker_id: str) -> str:
    if not isinstance(worker_id, str) or not worker_id.strip() or len(worker_id) > WORKER_ID_MAX:
        raise InvalidInput(f"worker_id must be a non-empty string of at most {WORKER_ID_MAX} "
                           "characters", details={"field": "worker_id"})
    return refuse_credentials(worker_id, "worker_id")


def run_claim_next(
    *,
    worker_id: str,
    kinds: Sequence[str] | None = None,
    limit: int = 1,
    project_id: int | None = None,
    source: str = "worker",
) -> list[Run]:
    """Claim up to ``limit`` queued runs that are due (oldest first) for ``worker_id``.

    ``kinds``: only runs of these kinds (None or empty: any). ``project_id``: only that
    project's runs (API keys). Returns the claimed runs, now ``running`` with their new
    ``attempt``; an empty list when nothing is due. No run is ever claimed twice.
    """
    _check_worker_id(worker_id)
    if not isinstance(limit, int) or not 1 <= limit <= CLAIM_LIMIT_MAX:
        raise InvalidInput(f"limit must be between 1 and {CLAIM_LIMIT_MAX}",
                           details={"field": "limit"})
    kinds = sorted({k for k in kinds or () if k})
    now = timezone.now()
    if connection.vendor == "postgresql":
        # One statement, atomic on its own: no BEGIN/COMMIT round trips on the hot path.
        runs = _claim_postgresql(worker_id, kinds, limit, project_id, source, now)
    else:
        with transaction.atomic():
            runs = _claim_generic(worker_id, kinds, limit, project_id, source, now)
    return sorted(runs, key=lambda r: (r.created_at, r.id))


def run_claim_external(
    *, worker_id: str, kinds: Sequence[str] | None, limit: int, project_id: int | None
) -> list[Run]:
    """The claim API (``POST /runs/claim``): an external worker's claim also registers it as
    online for the kinds it asks for, so runs of those kinds do not say they wait for nobody."""
    _check_worker_id(worker_id)
    worker_seen(worker_id=worker_id, kinds=kinds, project_id=project_id)
    return run_claim_next(worker_id=worker_id, kinds=kinds, limit=limit, project_id=project_id)


def _wait_ms(now: datetime, due: datetime | None) -> int | None:
    return max(0, round((now - due).total_seconds() * 1000)) if due else None


def _claim_postgresql(
    worker_id: str, kinds: list[str], limit: int, project_id: int | None, source: str,
    now: datetime,
) -> list[Run]:
    sql = claim_sql(by_kind=bool(kinds), project_scoped=project_id is not None)
    runs = lifecycle_changes(sql, {
        "at": now, "kinds": kinds, "project_id": project_id, "limit": limit,
        "worker_id": worker_id, "etype": lc.RUN_STARTED, "source": source,
    })
    for run in runs:
        payload = {"attempt": run.attempt, "worker_id": worker_id, "wait_ms": run.wait_ms}
        lifecycle_broadcast(run, [lifecycle_row(run, lc.RUN_STARTED, payload, at=now,
                                                source=source)])
    return runs


def _claimable(now: datetime, kinds: list[str], project_id: int | None) -> QuerySet[Run]:
    qs = Run.objects.filter(state=RunState.QUEUED).filter(
        Q(run_after__isnull=True) | Q(run_after__lte=now)
    )
    if kinds:
        qs = qs.filter(kind__in=kinds)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs


def _claim_generic(
    worker_id: str, kinds: list[str], limit: int, project_id: int | None, source: str,
    now: datetime,
) -> list[Run]:
    qs = _claimable(now, kinds, project_id).order_by("created_at", "id")
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True)
    runs = list(qs[:limit])
    for run in runs:
        run.wait_ms = _wait_ms(now, run.run_after or run.updated_at)
        event, _ = append_lifecycle(
            run, lc.RUN_STARTED,
            {"attempt": run.attempt + 1, "worker_id": worker_id, "wait_ms": run.wait_ms},
            steps={}, source=source,
        )
        save_projection(run, [], [event])
        run.heartbeat_at = run.claimed_at
    if runs:
        # heartbeat_at is liveness, not a projection: set it for the whole batch at once.
        for claimed_at, ids in _by_claimed_at(runs).items():
            Run.objects.filter(pk__in=ids).update(heartbeat_at=claimed_at)
    return runs


def _by_claimed_at(runs: list[Run]) -> dict[datetime, list[str]]:
    groups: dict[datetime, list[str]] = {}
    for run in runs:
        groups.setdefault(run.claimed_at, []).append(run.id)
    return groups


def run_heartbeat_batch(
    *, worker_id: str, run_ids: Sequence[str], project_id: int | None = None
) -> dict[str, Heartbeat]:
    """Record that ``worker_id`` is still working on ``run_ids``.

    Returns a Heartbeat for each run it still holds (running, claimed by it); runs missing from
    the answer were taken away (reaped, canceled, finished) and their work should stop.
    """
    _check_worker_id(worker_id)
    if not run_ids:
        return {}
    now = timezone.now()
    held = Run.objects.filter(pk__in=list(run_ids), state=RunState.RUNNING, claimed_by=worker_id)
    if project_id is not None:
        held = held.filter(project_id=project_id)
    with transaction.atomic():
        # Locks in id order, as run_succeed_batch does (the lock order in ledger).
        found = dict(held.select_for_update().order_by("id")
                     .values_list("id", "cancel_requested_at"))
        if found:
            Run.objects.filter(pk__in=list(found)).update(heartbeat_at=now)
    return {
        run_id: Heartbeat(run_id=run_id, heartbeat_at=now, cancel_requested=requested is not None)
        for run_id, requested in found.items()
    }


def run_heartbeat(*, run_id: str, worker_id: str, project_id: int | None = None) -> Heartbeat:
    """One run's heartbeat (the HTTP endpoint): 409 unless ``worker_id`` holds the run. It
    also keeps the external worker online in the registry."""
    _check_worker_id(worker_id)
    worker_beat(worker_id=worker_id)
    beats = run_heartbeat_batch(worker_id=worker_id, run_ids=[run_id], project_id=project_id)
    beat = beats.get(run_id)
    if beat is not None:
        return beat
    qs = Run.objects.filter(pk=run_id)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    run = qs.only("state", "claimed_by").first()
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    error = InvalidTransition(entity="run", current_state=run.state,
                              action=f"heartbeat as worker {worker_id}")
    if run.state == RunState.RUNNING:
        error.message = f"run {run_id} is held by another worker"
        error.args = (error.message,)
    error.details["claimed_by"] = run.claimed_by
    raise error


def runs_stalled(*, cutoff: datetime) -> QuerySet[Run]:
    """Running runs whose current attempt heartbeated, but not since ``cutoff``."""
    return Run.objects.filter(
        state=RunState.RUNNING, heartbeat_at__isnull=False, heartbeat_at__lt=cutoff,
        heartbeat_at__gte=F("claimed_at"),
    )


def runs_reap(
    *, stall_timeout: float | None = None, now: datetime | None = None, limit: int = 100
) -> ReapResult:
    """Re-queue stalled runs (their worker died), or fail them when their attempts are spent;
    a stalled run whose cancel was requested is canceled.

    Safe to run in many processes at once: each run is re-checked under its row lock, and on
    PostgreSQL a run another reaper (or its worker, finishing) holds is skipped.
    """
    timeout = settings.TRACEFOUNDRY_STALL_TIMEOUT_SECONDS if stall_timeout is None \
        else stall_timeout
    now = now or timezone.now()
    stalled = runs_stalled(cutoff=now - timedelta(seconds=timeout))
    result = ReapResult()
    candidates = list(stalled.order_by("heartbeat_at").values_list("id", flat=True)[:limit])
    for run_id in candidates:
        with transaction.atomic():
            qs = stalled.filter(pk=run_id)
            if connection.features.has_select_for_update_skip_locked:
                qs = qs.select_for_update(skip_locked=True)
            else:
                qs = qs.select_for_update()
            run = qs.first()
            if run is not None:
                _reap(run, timeout, result)
    if result.total:
        log.warning("reaper: requeued=%s failed=%s canceled=%s", result.requeued, result.failed,
                    result.canceled)
    return result


def _reap(run: Run, timeout: float, result: ReapResult) -> None:
    message = (f"worker {run.claimed_by or '(unknown)'} stopped heartbeating (last heartbeat "
               f"{wire.iso(run.heartbeat_at)}, stall timeout {timeout:g} s)")
    payload = {"error": message, "reason": "stalled", "attempt": run.attempt,
               "worker_id": run.claimed_by}
    if run.cancel_requested_at is not None:
        etype, level, bucket = lc.RUN_CANCELED, "warn", result.canceled
        payload["reason"] = "stalled; cancel requested"
    elif run.attempt < run.max_attempts:
        etype, level, bucket = lc.RUN_RETRYING, "warn", result.requeued
        payload.update(retryable=True, run_after=None)
    else:
        etype, level, bucket = lc.RUN_FAILED, "error", result.failed
        payload["retryable"] = False
    event, steps = append_lifecycle(run, etype, payload, steps=open_steps(run), level=level,
                                     source="reaper")
    save_projection(run, steps, [event])
    bucket.append(run.id)
    if etype == lc.RUN_RETRYING:
        workers_wake(kind=run.kind)


def run_release(*, run_id: str, worker_id: str, reason: str = "worker_shutdown") -> Run:
    """A worker that stops before its job finished hands the run back to the queue at once,
    or cancels it when a cancel was requested meanwhile. A hand-back is neither a failure nor
    an attempt: the next start gets the same attempt number, so restarts and deploys can never
    exhaust ``max_attempts``."""
    reason = get_redactor().text(str(reason))[:1000]
    with transaction.atomic():
        run = lock_run(run_id)
        check_transition(run, "retry")
        if run.claimed_by != worker_id:
            raise InvalidTransition(entity="run", current_state=run.state,
                                    action=f"release as worker {worker_id}")
        payload = {"error": f"worker {worker_id} stopped before the run finished",
                   "reason": reason, "attempt": run.attempt, "worker_id": worker_id}
        if run.cancel_requested_at is not None:
            etype = lc.RUN_CANCELED
        else:
            etype = lc.RUN_RETRYING
            payload.update(retryable=True, run_after=None, counts_as_attempt=False)
        event, steps = append_lifecycle(run, etype, payload, steps=open_steps(run),
                                         level="warn", source="worker")
        save_projection(run, steps, [event])
        if etype == lc.RUN_RETRYING:
            workers_wake(kind=run.kind)
    return run
