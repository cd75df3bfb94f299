"""Who is on the other end of a WebSocket: session (browsers) or API key (scripts, CLIs).

Browsers send cookies with every WebSocket handshake, even cross-site, so session-authenticated
sockets must come from one of our own origins (``AllowedHostsOriginValidator``). An API key is
never ambient — a page on another site cannot make a browser attach it — so a handshake that
carries a key and no ``Origin`` (a script) skips the origin check; one with a foreign
``Origin`` is refused like any other.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator

from tracefoundry.authentication import KeyPrincipal
from tracefoundry.selectors import apikey_for_raw
from tracefoundry.services import apikey_touch


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def raw_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-tracefoundry-key") or None


def _resolve_key(raw: str):
    key = apikey_for_raw(raw)
    if key is None or (key.user is not None and not key.user.is_active):
        return None
    apikey_touch(key=key)
    return key


class ApiKeyMiddleware(BaseMiddleware):
    """Sets ``scope["api_key"]`` (and ``scope["user"]``) from an ``Authorization: Bearer`` key.

    A key that is presented but unknown or revoked leaves the socket anonymous, which the
    consumers refuse (4401)."""

    async def __call__(self, scope, receive, send):
        raw = raw_key(_headers(scope))
        if raw is not None:
            key = await database_sync_to_async(_resolve_key)(raw)
            scope = dict(scope, api_key=key)
            if key is not None:
                scope["user"] = key.user if key.user is not None else KeyPrincipal(key)
        return await super().__call__(scope, receive, send)


class OriginGuard:
    """``AllowedHostsOriginValidator`` for every handshake but a key-bearing one without Origin."""

    def __init__(self, application):
        self.checked = AllowedHostsOriginValidator(application)
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = _headers(scope)
        if "origin" not in headers and raw_key(headers) is not None:
            return await self.application(scope, receive, send)
        return await self.checked(scope, receive, send)


def websocket_stack(router):
    return OriginGuard(AuthMiddlewareStack(ApiKeyMiddleware(router)))
