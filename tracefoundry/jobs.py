"""Jobs of the wiring layer (``manage.py worker`` discovers every installed app's ``jobs``)."""

from __future__ import annotations

from runs.jobs import JobContext, JobError, job, object_input
from tracefoundry.maintenance import retention_cleanup


@job("retention.cleanup")
def retention_cleanup_job(ctx: JobContext) -> dict:
    """``{"dry_run": bool, "batch_size": n}``: ``manage.py cleanup`` as a job."""
    data = object_input(ctx)
    batch_size = data.get("batch_size", 1000)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise JobError("retention.cleanup: batch_size must be a positive integer")
    result = retention_cleanup(dry_run=bool(data.get("dry_run", False)), batch_size=batch_size)
    return result.as_dict()
