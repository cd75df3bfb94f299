"""Writes of the worker registry: who claims runs, of which kinds, and whether it is alive.

The registry exists so that a queued run nobody will ever claim says so
(``queue_selectors.run_waiting``) instead of waiting in silence. It is liveness, like run
heartbeats: no events, and each write is one small statement, never one per run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from runs.models import Worker, WorkerSource

log = logging.getLogger(__name__)

# A worker silent this long is forgotten by the reaper (a crashed one never unregisters).
FORGET_AFTER = timedelta(days=1)


def worker_register(
    *,
    worker_id: str,
    kinds: Sequence[str] | None,
    source: str = WorkerSource.PROCESS,
    host: str = "",
    pid: int | None = None,
    concurrency: int | None = None,
    project_id: int | None = None,
) -> None:
    """Record (or refresh) ``worker_id`` as online, serving ``kinds`` (None or empty: every
    kind). A worker id that registers again replaces what was known about it."""
    now = timezone.now()
    kinds = sorted({k for k in kinds or () if k})
    fields = {"source": source, "host": host, "pid": pid, "kinds": kinds,
              "every_kind": not kinds, "concurrency": concurrency, "project_id": project_id,
              "heartbeat_at": now}
    if source == WorkerSource.PROCESS:
        fields["started_at"] = now  # a process that registers has just started
    if Worker.objects.filter(worker_id=worker_id).update(**fields):
        return
    try:
        with transaction.atomic():
            Worker.objects.create(worker_id=worker_id, **{"started_at": now, **fields})
    except IntegrityError:
        # Registered by a concurrent claim meanwhile: refresh that row instead.
        Worker.objects.filter(worker_id=worker_id).update(**fields)


def worker_seen(*, worker_id: str, kinds: Sequence[str] | None, project_id: int | None) -> None:
    """An external worker claimed runs: it is online for the kinds it asked for (all of them
    when it sent none), for its key's project."""
    worker_register(worker_id=worker_id, kinds=kinds, source=WorkerSource.API,
                    project_id=project_id)


def worker_beat(*, worker_id: str) -> bool:
    """Refresh a registered worker's heartbeat (one UPDATE); False when it is not registered
    (forgotten meanwhile: the caller registers again)."""
    return bool(Worker.objects.filter(worker_id=worker_id).update(heartbeat_at=timezone.now()))


def worker_unregister(*, worker_id: str) -> None:
    """A worker that stops cleanly leaves the registry at once."""
    Worker.objects.filter(worker_id=worker_id).delete()


def workers_forget_stale(*, older_than: timedelta = FORGET_AFTER) -> int:
    """Forget workers silent for ``older_than`` (crashed or gone without a word)."""
    count, _ = Worker.objects.filter(heartbeat_at__lt=timezone.now() - older_than).delete()
    if count:
        log.info("forgot %d worker(s) silent for %s", count, older_than)
    return count
