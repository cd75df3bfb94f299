"""API keys: hashed at rest, scoped, owned by a project and optionally a user, revocable."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

SCOPES = ("runs:read", "runs:write", "ingest", "worker")
KEY_PREFIX = "tf_"


def hash_key(raw: str) -> str:
    # Keys carry 256 bits of randomness, so one fast hash is enough; a slow password hash
    # would only cost every API request a few milliseconds.
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    name = models.CharField(max_length=200, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    project = models.ForeignKey("runs.Project", on_delete=models.CASCADE, related_name="api_keys")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
        related_name="api_keys",
    )
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or self.project})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
