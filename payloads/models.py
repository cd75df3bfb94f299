"""Content-addressed payload blobs and the references that point at them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PayloadBlob(models.Model):
    sha256 = models.CharField(primary_key=True, max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    stored_bytes = models.PositiveBigIntegerField()
    compression = models.CharField(max_length=16, default="zstd")
    content_type = models.CharField(max_length=128, default="text/plain; charset=utf-8")
    storage_key = models.CharField(max_length=512)
    redaction_mode = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.sha256


class PayloadRef(models.Model):
    """Links a blob to the run event or span that carried it, with the value's role."""

    blob = models.ForeignKey(PayloadBlob, on_delete=models.CASCADE, related_name="refs")
    run_event = models.ForeignKey(
        "runs.RunEvent", on_delete=models.CASCADE, null=True, blank=True,
        related_name="payload_refs",
    )
    span = models.ForeignKey(
        "traces.Span", on_delete=models.CASCADE, null=True, blank=True,
        related_name="payload_refs",
    )
    role = models.CharField(max_length=32)
    json_path = models.CharField(max_length=512, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["blob"], name="payloadref_blob_idx")]

    def __str__(self) -> str:
        return f"{self.role} -> {self.blob_id}"
