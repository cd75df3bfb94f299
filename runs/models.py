"""Projects, runs, steps and the append-only run event stream.

Run and Step rows are a projection of the RunEvent stream (see runs/projections.py); only the
services in runs/services/ write them.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from runs.ids import new_run_id, new_step_id


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    redaction_policy = models.CharField(
        max_length=16, blank=True, default="",
        choices=[("", "default (TRACEFOUNDRY_REDACTION)"), ("standard", "standard"),
                 ("strict", "strict"), ("off", "off")],
        help_text="Overrides the server-wide redaction policy for this project's data.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED})


class Run(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_run_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=128)
    name = models.CharField(max_length=256, blank=True, default="")
    input = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    # Unique per project (see Meta): one project's key never finds another project's run.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    run_after = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    output_ref = models.CharField(max_length=512, blank=True, default="")
    # A job's output up to TRACEFOUNDRY_INLINE_STRING_LIMIT bytes of JSON, redacted; a larger
    # one is a payload blob named by output_ref. Never both.
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    trace_id = models.CharField(max_length=32, blank=True, default="", db_index=True)
    # The id of the run this one was imported from (bundles); "" for runs made here.
    imported_from = models.CharField(max_length=40, blank=True, default="")
    # Projection summary, kept by runs/projections.py.
    steps_total = models.PositiveIntegerField(default=0)
    steps_completed = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    dropped_event_count = models.PositiveIntegerField(default=0)
    latest_event_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="run_project_created_idx"),
            models.Index(fields=["state", "-created_at"], name="run_state_created_idx"),
            models.Index(fields=["kind", "-created_at"], name="run_kind_created_idx"),
            # Partial index (PostgreSQL and SQLite both support it): the queue only ever looks
            # at unfinished runs, a small slice of the table.
            models.Index(
                fields=["state", "run_after", "created_at"],
                name="run_unfinished_idx",
                condition=Q(state__in=["queued", "running"]),
            ),
            # The claim's scan: queued runs oldest first (runs/services/queue.py), unsorted.
            models.Index(
                fields=["created_at", "id"], name="run_queued_idx", condition=Q(state="queued"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"], name="run_project_idempotency_key_uniq",
            ),
            # One import of a run per project: importing a bundle twice changes nothing.
            models.UniqueConstraint(
                fields=["project", "imported_from"], condition=~Q(imported_from=""),
                name="run_project_imported_from_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class StepState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


FINISHED_STEP_STATES = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELED}
)


class Step(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_step_id, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=256)
    node_ref = models.CharField(max_length=256, blank=True, default="")
    position = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=StepState.choices, default=StepState.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "position", "created_at", "id"]
        indexes = [models.Index(fields=["run", "position"], name="step_run_position_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STEP_STATES


class EventLevel(models.TextChoices):
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete a RunEvent outside retention."""


class RunEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("run events are append-only")

    def delete(self):
        raise AppendOnlyError("run events are append-only; use runs.retention")

    def _retention_delete(self) -> int:
        """The one sanctioned delete path, used by retention and purge only."""
        return super().delete()[0]


class RunEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Deleting a run (retention, purge) takes its events with it; nothing else deletes them.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    step = models.ForeignKey(
        Step, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=64)
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    source = models.CharField(max_length=32, default="server")
    created_at = models.DateTimeField(default=timezone.now)
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    causation_id = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    payload_bytes = models.PositiveIntegerField(default=0)
    truncated = models.BooleanField(default=False)
    late = models.BooleanField(default=False)

    objects = RunEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runevent_run_seq_uniq"),
        ]
        indexes = [
            models.Index(fields=["run", "id"], name="runevent_run_id_idx"),
            models.Index(fields=["run", "type", "id"], name="runevent_run_type_id_idx"),
            models.Index(fields=["correlation_id"], name="runevent_correlation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("run events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("run events are append-only; use runs.retention")


# A run event's fields in their one order, read off the model: the table's columns as
# runs.event_store writes them, the wire shape (runs.wire.event_dict) and the API's fields.
RUN_EVENT_FIELDS: tuple[str, ...] = tuple(f.attname for f in RunEvent._meta.concrete_fields)


class WorkerSource(models.TextChoices):
    PROCESS = "process"  # manage.py worker
    API = "api"  # an external worker claiming through POST /api/v1/runs/claim


class Worker(models.Model):
    """A worker that claims runs, as it last announced itself (runs/worker_registry.py).

    Online while its heartbeat is younger than the stall timeout: ``manage.py worker`` registers
    at start, beats on its heartbeat tick and unregisters on a clean exit; an external worker is
    registered by its claims and refreshed by its heartbeats. A crashed worker's row stays (seen
    offline) until the reaper forgets it.
    """

    worker_id = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=16, choices=WorkerSource.choices,
                              default=WorkerSource.PROCESS)
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    # The kinds it claims; every_kind: it claims without a kind filter (external workers only:
    # a manage.py worker claims exactly the kinds it has jobs for).
    kinds = models.JSONField(default=list, blank=True)
    every_kind = models.BooleanField(default=False)
    concurrency = models.PositiveIntegerField(null=True, blank=True)
    # External workers claim with a project's key and so serve that project only; null: every
    # project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="workers")
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return self.worker_id
