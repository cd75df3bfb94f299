"""Reads for API keys."""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models import QuerySet

from tracefoundry.models import KEY_PREFIX, ApiKey, hash_key

_verified: dict[str, tuple[float, ApiKey]] = {}
_VERIFIED_LIMIT = 10_000


def apikey_for_raw(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None.

    Verified keys are remembered for TRACEFOUNDRY_API_KEY_CACHE_SECONDS (default 5) so busy
    agents do not pay a query per request; revoking forgets the key at once in this process,
    and other processes stop accepting it within that many seconds.
    """
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    key_hash = hash_key(raw)
    now = time.monotonic()
    hit = _verified.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1]
    key = (
        ApiKey.objects.select_related("project", "user")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    ttl = settings.TRACEFOUNDRY_API_KEY_CACHE_SECONDS
    if key is None or ttl <= 0:
        _verified.pop(key_hash, None)
    else:
        if len(_verified) >= _VERIFIED_LIMIT:
            _verified.clear()
        _verified[key_hash] = (now + ttl, key)
    return key


def apikey_forget(*, key_hash: str | None = None) -> None:
    """Drop remembered verifications (one key, or all)."""
    if key_hash is None:
        _verified.clear()
    else:
        _verified.pop(key_hash, None)


def apikey_list(*, project_slug: str | None = None) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.select_related("project", "user").order_by("-created_at")
    if project_slug:
        qs = qs.filter(project__slug=project_slug)
    return qs


def apikey_find(*, ident: str) -> ApiKey | None:
    """Find a key by its prefix (as printed by ``apikey list``) or numeric id."""
    qs = ApiKey.objects.select_related("project")
    # A prefix is 8 hex digits and may be all decimal digits, so it is tried before the id.
    key = qs.filter(prefix=ident.removeprefix(KEY_PREFIX).split("_")[0]).first()
    if key is None and ident.isdigit():
        key = qs.filter(pk=int(ident)).first()
    return key
