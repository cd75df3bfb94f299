"""DRF authentication by API key: ``Authorization: Bearer <key>`` or ``x-tracefoundry-key``."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from tracefoundry.models import KEY_PREFIX
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


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        raw = raw_key_from_headers(request.META)
        if raw is None:
            return None
        if not raw.startswith(KEY_PREFIX):
            raise exceptions.AuthenticationFailed("malformed API key")
        key = apikey_for_raw(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("unknown or revoked API key")
        if key.user is not None and not key.user.is_active:
            raise exceptions.AuthenticationFailed("the key's user is inactive")
        apikey_touch(key=key)
        return (key.user if key.user is not None else KeyPrincipal(key), key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
