"""Retention of runs: finished runs past TRACEFOUNDRY_RETENTION_DAYS go, with their steps and
events (and the events' PayloadRefs); queued and running runs never do. ``manage.py cleanup``
(tracefoundry/maintenance.py) runs this, the traces' and the payload blobs' retention in turn.

A run's ``output_ref`` refers to a payload blob without a PayloadRef row; ``RUN_OUTPUTS`` tells
payloads about it (registered in RunsConfig.ready).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from payloads.references import REF_PREFIX, ReferenceSource
from runs.models import FINISHED_RUN_STATES, Run, RunEvent, Step
from tracefoundry.batching import parents_delete


def runs_expired(*, cutoff: datetime) -> QuerySet[Run]:
    return (
        Run.objects.filter(state__in=FINISHED_RUN_STATES)
        .alias(ended=Coalesce("finished_at", "created_at"))
        .filter(ended__lt=cutoff)
    )


def runs_expired_count(*, cutoff: datetime) -> dict[str, int]:
    runs = runs_expired(cutoff=cutoff)
    return {
        "runs": runs.count(),
        "steps": Step.objects.filter(run__in=runs.values("pk")).count(),
        "events": RunEvent.objects.filter(run__in=runs.values("pk")).count(),
    }


def runs_expired_delete(
    *, cutoff: datetime, batch_size: int, progress: Callable[[dict[str, int]], None]
) -> dict[str, int]:
    """Delete the expired runs ``batch_size`` at a time, their events in batches of their own
    first (a run with 100,000 events never becomes one giant transaction)."""
    def counts(deleted: Counter[str]) -> dict[str, int]:
        return {"runs": deleted["runs.Run"], "steps": deleted["runs.Step"],
                "events": deleted["runs.RunEvent"]}

    deleted = parents_delete(
        runs_expired(cutoff=cutoff),
        children=lambda run_ids: RunEvent.objects.filter(run_id__in=run_ids),
        delete_children=lambda qs: qs._retention_delete(),  # the one sanctioned delete path
        batch_size=batch_size, progress=lambda so_far: progress(counts(so_far)),
    )
    return counts(deleted)


def _output_refers(sha256: str, project_id: int) -> bool:
    return Run.objects.filter(project_id=project_id, output_ref=REF_PREFIX + sha256).exists()


def _outputs_referenced(
    sha256s: Collection[str], since: datetime | None, ignoring: Mapping[str, QuerySet]
) -> set[str]:
    outputs = Run.objects.filter(output_ref__in=[REF_PREFIX + s for s in sha256s]).order_by()
    if since is not None:
        outputs = outputs.filter(updated_at__gte=since)
    if "runs" in ignoring:
        outputs = outputs.exclude(pk__in=ignoring["runs"].values("pk"))
    return {ref.removeprefix(REF_PREFIX) for ref in outputs.values_list("output_ref", flat=True)}


RUN_OUTPUTS = ReferenceSource(project_refers=_output_refers, referenced=_outputs_referenced)
