"""Writes for API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from tracefoundry.errors import InvalidInput
from tracefoundry.models import KEY_PREFIX, SCOPES, ApiKey, hash_key
from tracefoundry.selectors import apikey_forget

_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str  # shown once, never stored


def parse_scopes(scopes: str | list[str]) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    cleaned = sorted({s.strip() for s in items if s and s.strip()})
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown or not cleaned:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}",
            details={"unknown": unknown},
        )
    return cleaned


def apikey_create(*, project, scopes: str | list[str], name: str = "", user=None) -> IssuedKey:
    clean_scopes = parse_scopes(scopes)
    if user is not None and not user.is_active:
        # Such a key would be refused at every use (tracefoundry.authentication).
        raise InvalidInput(f"user {user.get_username()!r} is inactive", details={"field": "user"})
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name, prefix=prefix, key_hash=hash_key(raw), project=project, user=user,
            scopes=clean_scopes,
        )
    return IssuedKey(key=key, raw=raw)


def apikey_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    apikey_forget(key_hash=key.key_hash)
    return key


def apikey_touch(*, key: ApiKey) -> None:
    """Record use, at most once a minute per key so reads do not turn into writes."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
