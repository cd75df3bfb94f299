"""Traces and spans received over OTLP (or imported from bundles).

A Trace row is a summary kept by traces.services for every trace a batch touches, so trace lists
never scan spans.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Index, JSONField
from django.utils import timezone

from runs.models import Project


class TraceStatus(models.TextChoices):
    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


class TraceSource(models.TextChoices):
    OTLP = "otlp"
    BUNDLE_IMPORT = "bundle_import"


class Trace(models.Model):
    trace_id = models.CharField(max_length=32, unique=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="traces")
    root_span_name = models.CharField(max_length=512, blank=True, default="")
    service_name = models.CharField(max_length=256, blank=True, default="")
    environment = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=8, choices=TraceStatus.choices, default=TraceStatus.UNSET)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    span_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    tools = models.JSONField(default=list, blank=True)
    has_retry = models.BooleanField(default=False)
    has_timeout = models.BooleanField(default=False)
    run_id = models.CharField(max_length=40, blank=True, default="", db_index=True)
    source = models.CharField(max_length=16, choices=TraceSource.choices, default=TraceSource.OTLP)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Last, because the name shadows the ``models`` module for the rest of the class body.
    models = JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-start_time", "-id"]
        indexes = [
            Index(fields=["project", "-start_time"], name="trace_project_start_idx"),
            Index(fields=["-start_time", "-id"], name="trace_start_idx"),
            Index(fields=["service_name", "-start_time"], name="trace_service_start_idx"),
            Index(fields=["status", "-start_time"], name="trace_status_start_idx"),
            # The list's sorts page on (sort value, id): index exactly that, so a page is an
            # index range scan, with or without a project filter.
            Index(fields=["-duration_ms", "-id"], name="trace_duration_id_idx"),
            Index(fields=["-cost_usd", "-id"], name="trace_cost_id_idx"),
            Index((F("input_tokens") + F("output_tokens")).desc(), F("id").desc(),
                  name="trace_tokens_id_idx"),
        ]

    def __str__(self) -> str:
        return self.trace_id


class Span(models.Model):
    # Indexed through the (trace, span_id) constraint; a second index on it only slows ingest.
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="spans",
                              db_index=False)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=512)
    kind = models.CharField(max_length=16, default="internal")
    service_name = models.CharField(max_length=256, blank=True, default="")
    start_time_unix_nano = models.BigIntegerField()
    end_time_unix_nano = models.BigIntegerField()
    duration_ms = models.FloatField(default=0)
    status_code = models.CharField(max_length=8, default="unset")
    status_message = models.TextField(blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    links = models.JSONField(default=list, blank=True)
    resource = models.JSONField(default=dict, blank=True)
    scope = models.JSONField(default=dict, blank=True)
    span_type = models.CharField(max_length=16, default="other")
    model = models.CharField(max_length=200, blank=True, default="")
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    tool_name = models.CharField(max_length=256, blank=True, default="")
    is_retry = models.BooleanField(default=False)
    is_timeout = models.BooleanField(default=False)
    # Runs find their trace through Run.trace_id; nothing looks spans up by run.
    run_id = models.CharField(max_length=40, blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["start_time_unix_nano", "id"]
        constraints = [
            models.UniqueConstraint(fields=["trace", "span_id"], name="span_trace_span_uniq"),
        ]
        # Every index costs each ingested span: only GET /spans/{span_id} needs this one (a
        # plain b-tree; a CharField's db_index would add a second, LIKE-pattern index).
        indexes = [Index(fields=["span_id"], name="span_span_id_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.span_id})"
