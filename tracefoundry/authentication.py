"""API-key authentication: ``Authorization: Bearer <key>`` or ``x-tracefoundry-key``.

``authenticate_key`` is the one place a presented key is accepted or refused; REST (the DRF
class below), SSE (a DRF view), OTLP ingest and the WebSocket middleware all call it, so a
revoked key, a key of an inactive user and a key of a user without a role are refused the same
way everywhere (401 over HTTP, close code 4401 over WebSocket).
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from tracefoundry.models import KEY_PREFIX, ApiKey
from tracefoundry.roles import user_role
from tracefoundry.selectors import apikey_for_raw
from tracefoundry.services import apikey_touch


class KeyPrincipal(AnonymousUser):
    """The request.user of a key that belongs to no user: authenticated, with no role."""

    def __init__(self, key) -> None:
        super().__init__()
        self.key = key
        self.username = f"key:{key.prefix}"

    @property
    def is_anonymous(self) -> bool:
        return False

    @property
    def is_authenticated(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.username


def raw_key_from_headers(meta) -> str | None:
    header = meta.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return meta.get("HTTP_X_TRACEFOUNDRY_KEY") or None


class KeyRefused(Exception):
    """A presented API key that must not authenticate anyone; ``str()`` says why."""


def authenticate_key(raw: str) -> ApiKey:
    """The active key ``raw`` names, or KeyRefused: malformed, unknown, revoked, or bound to a
    user who is inactive or has no role (PRODUCT.md §12)."""
    if not raw.startswith(KEY_PREFIX):
        raise KeyRefused("malformed API key")
    key = apikey_for_raw(raw=raw)
    if key is None:
        raise KeyRefused("unknown or revoked API key")
    if key.user is not None:
        if not key.user.is_active:
            raise KeyRefused("the key's user is inactive")
        if user_role(key.user) is None:
            raise KeyRefused("the key's user has no role")
    apikey_touch(key=key)
    return key


def key_principal(key: ApiKey):
    """The ``request.user`` of a key: its user, or a KeyPrincipal for a service key."""
    return key.user if key.user is not None else KeyPrincipal(key)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        raw = raw_key_from_headers(request.META)
        if raw is None:
            return None
        try:
            key = authenticate_key(raw)
        except KeyRefused as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return (key_principal(key), key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
