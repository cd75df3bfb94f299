"""The retention policy applied once (``manage.py cleanup`` and the ``retention.cleanup`` job):
the orchestration of each app's own retention, in this order (PRODUCT.md §6):

1. finished runs past TRACEFOUNDRY_RETENTION_DAYS, with their steps and events (runs/retention.py);
2. traces past it, with their spans (traces/retention.py);
3. payload blobs past TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS that nothing referenced within that
   time, and unreferenced blobs past the grace period (payloads/retention.py).

Runs and traces go first so that the blobs only they referred to become collectable in the
same pass. This module is wiring: it may import every app, and none of them imports it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from django.conf import settings
from django.utils import timezone

from payloads.retention import UNREFERENCED_GRACE, blobs_collect
from runs.retention import runs_expired, runs_expired_count, runs_expired_delete
from traces.retention import traces_expired, traces_expired_count, traces_expired_delete

log = logging.getLogger(__name__)


@dataclass
class CleanupResult:
    """Rows deleted per kind (or, with ``dry_run``, that would be). Each deleted blob row takes
    its file in the payload storage with it, after the commit."""

    dry_run: bool = False
    runs: int = 0
    steps: int = 0
    events: int = 0
    traces: int = 0
    spans: int = 0
    expired_blobs: int = 0
    unreferenced_blobs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_cleanup(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    stdout: TextIO | None = None,
) -> CleanupResult:
    """Delete what retention says has expired, in batches of ``batch_size`` rows; with
    ``dry_run``, count it and change nothing. ``stdout`` gets a line per batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    metadata_cutoff = now - timedelta(days=settings.TRACEFOUNDRY_RETENTION_DAYS)

    def progress(kind: str, total: int) -> None:
        if stdout is not None:
            stdout.write(f"{kind}: {total} deleted so far\n")

    result = CleanupResult(dry_run=dry_run)
    ignoring = {}
    if dry_run:
        counts = {**runs_expired_count(cutoff=metadata_cutoff),
                  **traces_expired_count(cutoff=metadata_cutoff)}
        # Nothing was deleted: references the expired runs and traces hold must not count.
        ignoring = {"runs": runs_expired(cutoff=metadata_cutoff),
                    "traces": traces_expired(cutoff=metadata_cutoff)}
    else:
        counts = {
            **runs_expired_delete(cutoff=metadata_cutoff, batch_size=batch_size,
                                  progress=lambda done: progress("runs", done["runs"])),
            **traces_expired_delete(cutoff=metadata_cutoff, batch_size=batch_size,
                                    progress=lambda done: progress("traces", done["traces"])),
        }
    for name, value in counts.items():
        setattr(result, name, value)
    result.expired_blobs, result.unreferenced_blobs = blobs_collect(
        payloads_cutoff=now - timedelta(days=settings.TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS),
        unreferenced_cutoff=now - UNREFERENCED_GRACE,
        batch_size=batch_size, dry_run=dry_run, ignoring=ignoring, progress=progress,
    )
    log.info("retention cleanup%s: %s", " (dry run)" if dry_run else "", result.as_dict())
    return result
