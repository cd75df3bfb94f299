"""Retention of traces: traces whose end and last received span are both older than
TRACEFOUNDRY_RETENTION_DAYS go, with their spans (and the spans' PayloadRefs). ``manage.py
cleanup`` (tracefoundry/maintenance.py) runs this, the runs' and the payload blobs' retention in
turn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from tracefoundry.batching import parents_delete
from traces.models import Span, Trace


def traces_expired(*, cutoff: datetime) -> QuerySet[Trace]:
    # Both clocks must agree: end_time is the sender's (an imported bundle may be years old),
    # updated_at is ours (the last time a span arrived).
    return (
        Trace.objects.alias(ended=Coalesce("end_time", "updated_at"))
        .filter(ended__lt=cutoff, updated_at__lt=cutoff)
    )


def traces_expired_count(*, cutoff: datetime) -> dict[str, int]:
    traces = traces_expired(cutoff=cutoff)
    return {
        "traces": traces.count(),
        "spans": Span.objects.filter(trace__in=traces.values("pk")).count(),
    }


def traces_expired_delete(
    *, cutoff: datetime, batch_size: int, progress: Callable[[dict[str, int]], None]
) -> dict[str, int]:
    """Delete the expired traces ``batch_size`` at a time, their spans in batches first."""
    def counts(deleted: Counter[str]) -> dict[str, int]:
        return {"traces": deleted["traces.Trace"], "spans": deleted["traces.Span"]}

    deleted = parents_delete(
        traces_expired(cutoff=cutoff),
        children=lambda trace_pks: Span.objects.filter(trace_id__in=trace_pks),
        delete_children=lambda qs: qs.delete(),
        batch_size=batch_size, progress=lambda so_far: progress(counts(so_far)),
    )
    return counts(deleted)
