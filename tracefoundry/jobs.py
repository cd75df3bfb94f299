"""Jobs of the wiring layer (``manage.py worker`` discovers every installed app's ``jobs``)."""

from __future__ import annotations

from runs.jobs import JobContext, JobError, job, object_input
from runs.worker import worker_setup
from tracefoundry import sdk_bridge
from tracefoundry.maintenance import retention_cleanup

# Every worker gets its run spans' TracerProvider and the job context's SDK helpers from here.
worker_setup(sdk_bridge.worker_install)


@job("retention.cleanup")
def retention_cleanup_job(ctx: JobContext) -> dict:
    """``{"dry_run": bool, "batch_size": n}``: ``manage.py cleanup`` as a job."""
    data = object_input(ctx)
    batch_size = data.get("batch_size", 1000)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise JobError("retention.cleanup: batch_size must be a positive integer")
    result = retention_cleanup(dry_run=bool(data.get("dry_run", False)), batch_size=batch_size)
    return result.as_dict()
