"""Retention of payload blobs (the payloads' part of ``manage.py cleanup``, which runs the runs'
and the traces' retention first: tracefoundry/maintenance.py).

Two kinds of blob go (PRODUCT.md §6):

1. Blobs older than TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS that nothing referenced within that time
   either (identical bytes are stored once, so an old blob may carry a new event's payload: each
   reference keeps its payload for the full period).
2. Unreferenced blobs (``references.blobs_referenced``) older than ``UNREFERENCED_GRACE``: a
   writer stores the blob before the row that references it commits, so a young blob is never
   orphaned.

A blob's age is its ``created_at``, which a writer reusing the bytes moves forward in the very
statement that finds the blob (``payloads.store``). Blobs are deleted under a row lock whose
query re-checks that age, so a blob being reused is either still young (kept), locked by the
writer until its reference commits (waited for, then kept), or already gone (the writer stores
it again): a reference never ends up pointing at a deleted row.

Every delete is a bounded batch in its own transaction. Blob rows go first and their files only
after the commit: a crash leaves at worst a file without a row (harmless, never read), never a
row pointing at a missing file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Q, QuerySet

from payloads.models import PayloadBlob
from payloads.references import blobs_referenced

log = logging.getLogger(__name__)

UNREFERENCED_GRACE = timedelta(hours=1)


def blobs_collect(
    *,
    payloads_cutoff: datetime,
    unreferenced_cutoff: datetime,
    batch_size: int,
    dry_run: bool = False,
    ignoring: Mapping[str, QuerySet] | None = None,
    progress: Callable[[str, int], None] = lambda kind, total: None,
) -> tuple[int, int]:
    """Delete (with ``dry_run``, count) the expired and the unreferenced blobs; returns both
    numbers. ``ignoring``: owners whose references do not count (a dry run's runs and traces
    that it would have deleted)."""
    oldest_kept = min(payloads_cutoff, unreferenced_cutoff)
    expired = _collect(
        PayloadBlob.objects.filter(created_at__lt=oldest_kept),
        referenced_since=payloads_cutoff, dry_run=dry_run, ignoring=ignoring,
        batch_size=batch_size, progress=lambda total: progress("expired blobs", total),
    )
    # Blobs older than the payload cutoff were all settled just above.
    unreferenced = _collect(
        PayloadBlob.objects.filter(
            Q(created_at__lt=unreferenced_cutoff) & Q(created_at__gte=oldest_kept)
        ),
        referenced_since=None, dry_run=dry_run, ignoring=ignoring,
        batch_size=batch_size, progress=lambda total: progress("unreferenced blobs", total),
    )
    return expired, unreferenced


def _collect(
    candidates: QuerySet[PayloadBlob],
    *,
    referenced_since: datetime | None,
    dry_run: bool,
    ignoring: Mapping[str, QuerySet] | None,
    batch_size: int,
    progress: Callable[[int], None],
) -> int:
    total, after = 0, ""
    while shas := list(candidates.filter(sha256__gt=after).order_by("pk")
                       .values_list("pk", flat=True)[:batch_size]):
        after = shas[-1]
        if dry_run:
            kept = blobs_referenced(shas, since=referenced_since, ignoring=ignoring)
            total += len(set(shas) - kept)
            continue
        total += _blobs_delete(candidates.filter(sha256__in=shas),
                               referenced_since=referenced_since)
        progress(total)
    return total


def _blobs_delete(blobs: QuerySet[PayloadBlob], *, referenced_since: datetime | None) -> int:
    """Delete the rows of ``blobs`` that are still unreferenced, then (after commit) their
    files."""
    with transaction.atomic():
        # Locked in sha256 order, as writers refreshing old blobs lock them (payloads.store):
        # a cleanup and a writer never wait on each other in a cycle.
        locked = dict(blobs.order_by("sha256").select_for_update()
                      .values_list("sha256", "storage_key"))
        kept = blobs_referenced(list(locked), since=referenced_since)
        doomed = {sha: key for sha, key in locked.items() if sha not in kept}
        if not doomed:
            return 0
        # ``blobs`` again, not just the shas: the delete re-checks the age condition too. A
        # writer reusing one of these blobs refreshes its created_at (payloads.store) and so
        # waits on the lock above, then finds the row gone and stores the bytes anew.
        blobs.filter(sha256__in=list(doomed)).delete()
        transaction.on_commit(lambda: _blob_files_delete(doomed))
    return len(doomed)


def _blob_files_delete(keys_by_sha: dict[str, str]) -> None:
    storage = storages["payloads"]
    # A writer may have stored the same bytes again since the commit; its row needs the file.
    revived = set(
        PayloadBlob.objects.filter(sha256__in=list(keys_by_sha)).values_list("sha256", flat=True)
    )
    for sha, key in keys_by_sha.items():
        if sha in revived:
            continue
        try:
            storage.delete(key)
        except Exception:
            # The row is gone, so the file is never read again; it only takes space.
            log.warning("could not delete payload blob file %s", key, exc_info=True)
