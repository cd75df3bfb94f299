"""Retention: deleting old run metadata, traces and payload blobs (``manage.py cleanup``).

What goes, in this order (PRODUCT.md §6):

1. Finished runs — never queued or running ones — whose ``finished_at`` (else ``created_at``) is
   older than TRACEFOUNDRY_RETENTION_DAYS, with their steps, events and the events' PayloadRefs.
2. Traces whose end and last received span are both older than that, with their spans.
3. Payload blobs older than TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS that nothing referenced within
   that time either (identical bytes are stored once, so an old blob may carry a new event's
   payload: each reference keeps its payload for the full period).
4. Unreferenced blobs (see ``blobs_referenced``) older than ``UNREFERENCED_GRACE``: a writer
   stores the blob before the row that references it commits, so a young blob is never orphaned.

A blob's age is its ``created_at``, which a writer reusing the bytes moves forward in the very
statement that finds the blob (``payloads.store``). Blobs are deleted under a row lock whose
query re-checks that age, so a blob being reused is either still young (kept), locked by the
writer until its reference commits (waited for, then kept), or already gone (the writer stores
it again): a reference never ends up pointing at a deleted row.

Every delete is a bounded batch in its own transaction. Blob rows go first and their files only
after the commit: a crash leaves at worst a file without a row (harmless, never read), never a
row pointing at a missing file. Events and spans are deleted in batches of their own before their
run or trace, so a run with 100,000 events never becomes one giant transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from django.conf import settings
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from payloads.models import PayloadBlob, PayloadRef
from runs.models import FINISHED_RUN_STATES, Run, RunEvent, Step
from traces.models import Span, Trace

log = logging.getLogger(__name__)

UNREFERENCED_GRACE = timedelta(hours=1)
REF_PREFIX = "sha256:"


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


@dataclass(frozen=True)
class _Cutoffs:
    metadata: datetime
    payloads: datetime
    unreferenced: datetime


# --- what counts as referenced ------------------------------------------------------------

def blobs_referenced(
    sha256s: Collection[str],
    *,
    since: datetime | None = None,
    ignoring_runs: QuerySet[Run] | None = None,
    ignoring_traces: QuerySet[Trace] | None = None,
) -> set[str]:
    """The blobs among ``sha256s`` that something still points at — the one definition of
    "referenced" for retention: a PayloadRef row (from a run event or a span), or a run's
    ``output_ref`` of ``sha256:<hex>``.

    ``since``: only references made at or after that time count. ``ignoring_*``: references
    held by these runs/traces do not count (a dry run's view of rows it would delete).
    """
    if not sha256s:
        return set()
    refs = PayloadRef.objects.filter(blob_id__in=sha256s)
    outputs = Run.objects.filter(output_ref__in=[REF_PREFIX + s for s in sha256s]).order_by()
    if since is not None:
        refs = refs.filter(created_at__gte=since)
        outputs = outputs.filter(updated_at__gte=since)
    if ignoring_runs is not None:
        refs = refs.exclude(run_event__run__in=ignoring_runs.values("pk"))
        outputs = outputs.exclude(pk__in=ignoring_runs.values("pk"))
    if ignoring_traces is not None:
        refs = refs.exclude(span__trace__in=ignoring_traces.values("pk"))
    found = set(refs.values_list("blob_id", flat=True).distinct())
    output_refs = outputs.values_list("output_ref", flat=True)
    found.update(ref.removeprefix(REF_PREFIX) for ref in output_refs)
    return found


# --- what has expired ----------------------------------------------------------------------

def runs_expired(*, cutoff: datetime) -> QuerySet[Run]:
    return (
        Run.objects.filter(state__in=FINISHED_RUN_STATES)
        .alias(ended=Coalesce("finished_at", "created_at"))
        .filter(ended__lt=cutoff)
    )


def traces_expired(*, cutoff: datetime) -> QuerySet[Trace]:
    # Both clocks must agree: end_time is the sender's (an imported bundle may be years old),
    # updated_at is ours (the last time a span arrived).
    return (
        Trace.objects.alias(ended=Coalesce("end_time", "updated_at"))
        .filter(ended__lt=cutoff, updated_at__lt=cutoff)
    )


# --- the cleanup ------------------------------------------------------------------------------

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
    cutoffs = _Cutoffs(
        metadata=now - timedelta(days=settings.TRACEFOUNDRY_RETENTION_DAYS),
        payloads=now - timedelta(days=settings.TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS),
        unreferenced=now - UNREFERENCED_GRACE,
    )
    result = CleanupResult(dry_run=dry_run)
    cleaner = _Cleaner(result=result, batch_size=batch_size, stdout=stdout)
    if dry_run:
        cleaner.count_metadata(cutoffs)
    else:
        cleaner.delete_runs(runs_expired(cutoff=cutoffs.metadata))
        cleaner.delete_traces(traces_expired(cutoff=cutoffs.metadata))
    cleaner.collect_blobs(cutoffs, dry_run=dry_run)
    log.info("retention cleanup%s: %s", " (dry run)" if dry_run else "", result.as_dict())
    return result


@dataclass
class _Cleaner:
    result: CleanupResult
    batch_size: int
    stdout: TextIO | None

    def _progress(self, message: str) -> None:
        if self.stdout is not None:
            self.stdout.write(message + "\n")

    def count_metadata(self, cutoffs: _Cutoffs) -> None:
        runs = runs_expired(cutoff=cutoffs.metadata)
        traces = traces_expired(cutoff=cutoffs.metadata)
        self.result.runs = runs.count()
        self.result.steps = Step.objects.filter(run__in=runs.values("pk")).count()
        self.result.events = RunEvent.objects.filter(run__in=runs.values("pk")).count()
        self.result.traces = traces.count()
        self.result.spans = Span.objects.filter(trace__in=traces.values("pk")).count()

    def delete_runs(self, expired: QuerySet[Run]) -> None:
        after = ""
        while run_ids := self._next_ids(expired.filter(pk__gt=after)):
            after = run_ids[-1]
            self.result.events += self._delete_children(
                RunEvent.objects.filter(run_id__in=run_ids),
                lambda qs: qs._retention_delete(),  # the one sanctioned delete path of events
            )
            with transaction.atomic():
                # Re-checked inside the transaction: only what is still expired goes.
                _, per_model = expired.filter(pk__in=run_ids).delete()
            self.result.runs += per_model.get("runs.Run", 0)
            self.result.steps += per_model.get("runs.Step", 0)
            self.result.events += per_model.get("runs.RunEvent", 0)
            self._progress(f"runs: {self.result.runs} deleted so far")

    def delete_traces(self, expired: QuerySet[Trace]) -> None:
        after = 0
        while trace_pks := self._next_ids(expired.filter(pk__gt=after)):
            after = trace_pks[-1]
            self.result.spans += self._delete_children(
                Span.objects.filter(trace_id__in=trace_pks), lambda qs: qs.delete()
            )
            with transaction.atomic():
                _, per_model = expired.filter(pk__in=trace_pks).delete()
            self.result.traces += per_model.get("traces.Trace", 0)
            self.result.spans += per_model.get("traces.Span", 0)
            self._progress(f"traces: {self.result.traces} deleted so far")

    def _next_ids(self, qs: QuerySet) -> list:
        return list(qs.order_by("pk").values_list("pk", flat=True)[: self.batch_size])

    def _delete_children(self, children: QuerySet, delete: Callable[[QuerySet], object]) -> int:
        """Delete ``children`` batch by batch, loading nothing but their ids."""
        total = 0
        while True:
            with transaction.atomic():
                ids = self._next_ids(children)
                if not ids:
                    return total
                delete(children.model.objects.filter(pk__in=ids).only("pk"))
            total += len(ids)

    def collect_blobs(self, cutoffs: _Cutoffs, *, dry_run: bool) -> None:
        # A dry run deleted no run or trace: references they hold must not count.
        ignoring: dict[str, QuerySet] = {}
        if dry_run:
            ignoring = {
                "ignoring_runs": runs_expired(cutoff=cutoffs.metadata),
                "ignoring_traces": traces_expired(cutoff=cutoffs.metadata),
            }
        oldest_kept = min(cutoffs.payloads, cutoffs.unreferenced)
        self.result.expired_blobs = self._collect(
            PayloadBlob.objects.filter(created_at__lt=oldest_kept),
            referenced_since=cutoffs.payloads, dry_run=dry_run, ignoring=ignoring,
            kind="expired blobs",
        )
        # Blobs older than the payload cutoff were all settled just above.
        self.result.unreferenced_blobs = self._collect(
            PayloadBlob.objects.filter(
                Q(created_at__lt=cutoffs.unreferenced) & Q(created_at__gte=oldest_kept)
            ),
            referenced_since=None, dry_run=dry_run, ignoring=ignoring,
            kind="unreferenced blobs",
        )

    def _collect(
        self,
        candidates: QuerySet[PayloadBlob],
        *,
        referenced_since: datetime | None,
        dry_run: bool,
        ignoring: dict[str, QuerySet],
        kind: str,
    ) -> int:
        total, after = 0, ""
        while shas := self._next_ids(candidates.filter(sha256__gt=after)):
            after = shas[-1]
            if dry_run:
                kept = blobs_referenced(shas, since=referenced_since, **ignoring)
                total += len(set(shas) - kept)
                continue
            total += _blobs_delete(candidates.filter(sha256__in=shas),
                                   referenced_since=referenced_since)
            self._progress(f"{kind}: {total} deleted so far")
        return total


def _blobs_delete(blobs: QuerySet[PayloadBlob], *, referenced_since: datetime | None) -> int:
    """Delete the rows of ``blobs`` that are still unreferenced, then (after commit) their
    files."""
    with transaction.atomic():
        locked = dict(blobs.select_for_update().values_list("sha256", "storage_key"))
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
