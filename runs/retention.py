"""Retention of runs: finished runs past TRACEFOUNDRY_RETENTION_DAYS go, with their steps and
events (and the events' PayloadRefs); queued and running runs never do. ``manage.py cleanup``
(tracefoundry/maintenance.py) runs this, the traces' and the payload blobs' retention in turn.

A run's ``output_ref`` refers to a payload blob without a PayloadRef row; ``RUN_OUTPUTS`` tells
payloads about it (registered in RunsConfig.ready).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from payloads.references import REF_PREFIX, ReferenceSource
from runs.models import FINISHED_RUN_STATES, Run, RunEvent, Step
from tracefoundry.batching import delete_in_batches, ids_page


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
    expired = runs_expired(cutoff=cutoff)
    done = {"runs": 0, "steps": 0, "events": 0}
    after = ""
    while run_ids := ids_page(expired.filter(pk__gt=after), batch_size):
        after = run_ids[-1]
        done["events"] += delete_in_batches(
            RunEvent.objects.filter(run_id__in=run_ids),
            lambda qs: qs._retention_delete(),  # the one sanctioned delete path of events
            batch_size=batch_size,
        )
        with transaction.atomic():
            # Re-checked inside the transaction: only what is still expired goes.
            _, per_model = expired.filter(pk__in=run_ids).delete()
        done["runs"] += per_model.get("runs.Run", 0)
        done["steps"] += per_model.get("runs.Step", 0)
        done["events"] += per_model.get("runs.RunEvent", 0)
        progress(done)
    return done


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
