"""Reads about the queue: depth, age, enqueue→start latency, durations and success rate; the
registered workers and whether a queued run has one online to claim it.

The groundwork of the ``/metrics`` endpoint (PRODUCT.md §13). Depth and age read only unfinished
runs (the partial indexes cover them); the windowed figures read the runs active since ``since``,
so callers should keep windows short (a scrape interval or a few minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, Min, Q, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone

from runs import lifecycle as lc
from runs.models import Run, RunEvent, RunState, Worker
from tracefoundry.roles import Access


@dataclass(frozen=True)
class Distribution:
    """Summary of a set of durations in milliseconds."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, values: list[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None, None)
        ordered = sorted(values)
        return cls(len(ordered), _percentile(ordered, 50), _percentile(ordered, 95), ordered[-1],
                   sum(ordered) / len(ordered))


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def queue_depth(*, project_id: int | None = None) -> dict[tuple[str, str], int]:
    """Unfinished runs by ``(kind, state)``: queued (due or delayed) and running."""
    qs = Run.objects.filter(state__in=(RunState.QUEUED, RunState.RUNNING))
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    rows = qs.values("kind", "state").annotate(n=Count("id")).order_by()
    return {(r["kind"], r["state"]): r["n"] for r in rows}


def queue_delayed(*, now: datetime | None = None) -> dict[str, int]:
    """Queued runs per kind that are not due yet (``run_after`` in the future, retry backoff)."""
    now = now or timezone.now()
    rows = (Run.objects.filter(state=RunState.QUEUED, run_after__gt=now)
            .values("kind").annotate(n=Count("id")).order_by())
    return {r["kind"]: r["n"] for r in rows}


def queue_oldest_age(*, now: datetime | None = None) -> dict[str, float]:
    """Per kind, seconds since the oldest due queued run was enqueued (a stuck queue grows)."""
    now = now or timezone.now()
    rows = (Run.objects.filter(state=RunState.QUEUED)
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
            .values("kind").annotate(oldest=Min("created_at")).order_by())
    return {r["kind"]: max(0.0, (now - r["oldest"]).total_seconds()) for r in rows}


def enqueue_start_latency(*, since: datetime, kind: str | None = None) -> Distribution:
    """How long due runs waited to be claimed, per start since ``since`` (each attempt counts):
    from enqueue, or from the end of a retry backoff, to the ``run.started`` event."""
    runs = Run.objects.filter(updated_at__gte=since)
    if kind:
        runs = runs.filter(kind=kind)
    waits = (
        RunEvent.objects.filter(run__in=runs.values("pk"), type=lc.RUN_STARTED,
                                created_at__gte=since)
        .annotate(wait=KT("payload__wait_ms"))
        .values_list("wait", flat=True)
    )
    return Distribution.of([float(w) for w in waits if w not in (None, "", "null")])


@dataclass(frozen=True)
class RunOutcomes:
    """Runs that finished in a window: how many ended each way, and how long they ran."""

    succeeded: int
    failed: int
    canceled: int
    duration: Distribution

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.canceled

    @property
    def success_rate(self) -> float | None:
        """Succeeded / (succeeded + failed); canceled runs say nothing about the job."""
        decided = self.succeeded + self.failed
        return self.succeeded / decided if decided else None


def run_outcomes(*, since: datetime, kind: str | None = None) -> RunOutcomes:
    qs = Run.objects.filter(finished_at__gte=since)
    if kind:
        qs = qs.filter(kind=kind)
    counts = {RunState.SUCCEEDED: 0, RunState.FAILED: 0, RunState.CANCELED: 0}
    durations = []
    for state, started, finished in qs.values_list("state", "started_at", "finished_at"):
        counts[state] = counts.get(state, 0) + 1
        if started and finished:
            durations.append((finished - started).total_seconds() * 1000)
    return RunOutcomes(counts[RunState.SUCCEEDED], counts[RunState.FAILED],
                       counts[RunState.CANCELED], Distribution.of(durations))


# --- workers ----------------------------------------------------------------------------------

def _online_cutoff(now: datetime | None = None) -> datetime:
    """A worker is online while its last heartbeat is younger than the stall timeout: the same
    patience the reaper has with the runs it holds."""
    now = now or timezone.now()
    return now - timedelta(seconds=settings.TRACEFOUNDRY_STALL_TIMEOUT_SECONDS)


def worker_list(*, access: Access) -> QuerySet[Worker]:
    """Registered workers, newest first, each with ``online``. Workers are global, but an
    external worker belongs to its key's project: a key sees the server's own workers and its
    project's."""
    qs = Worker.objects.select_related("project").annotate(
        online=ExpressionWrapper(Q(heartbeat_at__gte=_online_cutoff()),
                                 output_field=BooleanField()))
    if access.project_id is not None:
        qs = qs.filter(Q(project__isnull=True) | Q(project_id=access.project_id))
    return qs


@dataclass(frozen=True)
class OnlineKinds:
    """What the online workers claim, per project they serve (None: every project)."""

    every_kind: frozenset[int | None]
    kinds: dict[int | None, frozenset[str]]

    def serves(self, *, kind: str, project_id: int) -> bool:
        return any(scope in self.every_kind or kind in self.kinds.get(scope, ())
                   for scope in (None, project_id))


def workers_online_kinds(*, now: datetime | None = None) -> OnlineKinds:
    """One query: the kinds the online workers claim."""
    every: set[int | None] = set()
    kinds: dict[int | None, set[str]] = {}
    rows = (Worker.objects.filter(heartbeat_at__gte=_online_cutoff(now))
            .values_list("project_id", "every_kind", "kinds"))
    for project_id, every_kind, worker_kinds in rows:
        if every_kind:
            every.add(project_id)
        kinds.setdefault(project_id, set()).update(worker_kinds or ())
    return OnlineKinds(frozenset(every), {p: frozenset(k) for p, k in kinds.items()})


def run_waiting(*, run: Run, online: OnlineKinds) -> str | None:
    """Why a queued run is not being picked up, or None: the run API, ``runs status`` and the
    run page all say it with these words."""
    if run.state != RunState.QUEUED or online.serves(kind=run.kind, project_id=run.project_id):
        return None
    return f"no worker online serves kind {run.kind}"
