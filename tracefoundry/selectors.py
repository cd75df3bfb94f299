"""Reads for API keys."""

from __future__ import annotations

from django.db.models import QuerySet

from tracefoundry.models import ApiKey
from tracefoundry.services import KEY_PREFIX, hash_key


def apikey_for_raw(raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    return (
        ApiKey.objects.select_related("project", "user")
        .filter(key_hash=hash_key(raw), revoked_at__isnull=True)
        .first()
    )


def apikey_list(*, project_slug: str | None = None) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.select_related("project", "user").order_by("-created_at")
    if project_slug:
        qs = qs.filter(project__slug=project_slug)
    return qs


def apikey_find(ident: str) -> ApiKey | None:
    """Find a key by its prefix (as printed by ``apikey list``) or numeric id."""
    qs = ApiKey.objects.select_related("project")
    if ident.isdigit():
        return qs.filter(pk=int(ident)).first()
    ident = ident.removeprefix(KEY_PREFIX).split("_")[0]
    return qs.filter(prefix=ident).first()
