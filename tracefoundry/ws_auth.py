"""Who is on the other end of a WebSocket: session (browsers) or API key (scripts, CLIs).

Browsers send cookies with every WebSocket handshake, even cross-site, so session-authenticated
sockets must come from our own origin: the ``Origin`` header must name the same scheme, host and
port as the handshake itself (its ``Host`` header, which must be one of ALLOWED_HOSTS), or be
listed in CSRF_TRUSTED_ORIGINS. An API key is never ambient — a page on another site cannot make
a browser attach it — so a handshake that carries a key and no ``Origin`` (a script) skips the
origin check; one with a foreign ``Origin`` is refused like any other.

Keys are checked by ``tracefoundry.authentication.authenticate_key``, like every other entry
point; a refused key closes the socket with 4401 even if a session cookie came along.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from tracefoundry.authentication import KeyRefused, authenticate_key, key_principal

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def raw_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-tracefoundry-key") or None


def _resolve_key(raw: str):
    try:
        return authenticate_key(raw), None
    except KeyRefused as exc:
        return None, str(exc)


class ApiKeyMiddleware(BaseMiddleware):
    """Sets ``scope["api_key"]`` (and ``scope["user"]``) from an ``Authorization: Bearer`` key.

    A key that is presented and refused sets ``scope["api_key_refused"]`` (the reason), which
    the consumers answer with 4401."""

    async def __call__(self, scope, receive, send):
        raw = raw_key(_headers(scope))
        if raw is not None:
            key, refused = await database_sync_to_async(_resolve_key)(raw)
            scope = dict(scope, api_key=key, api_key_refused=refused)
            if key is not None:
                scope["user"] = key_principal(key)
        return await super().__call__(scope, receive, send)


def _origin_tuple(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def own_origin(scope, headers: dict[str, str]) -> tuple[str, str, int] | None:
    """(scheme, host, port) a browser on our own pages sends as Origin for this handshake."""
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    if settings.TRACEFOUNDRY_BEHIND_PROXY:
        forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if forwarded in _DEFAULT_PORTS:
            scheme = forwarded
    host_header = headers.get("host")
    if not host_header:
        return None
    host, port = split_domain_port(host_header)
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        return None
    try:
        return _origin_tuple(scheme, host, int(port) if port else None)
    except ValueError:
        return None


def origin_allowed(scope, headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if not origin:
        return False
    try:
        parts = urlsplit(origin)
        wanted = _origin_tuple(parts.scheme.lower(), parts.hostname or "", parts.port)
    except ValueError:
        return False
    if origin.rstrip("/") in settings.CSRF_TRUSTED_ORIGINS:
        return True
    own = own_origin(scope, headers)
    if own is not None:
        return wanted == own
    # No Host header (in-process test clients): one of ALLOWED_HOSTS on its default port.
    return (parts.port is None and wanted[1] != ""
            and validate_host(wanted[1], settings.ALLOWED_HOSTS))


class OriginGuard:
    """Refuses handshakes from foreign origins, but lets a key-bearing one without Origin in."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            headers = _headers(scope)
            keyed_script = "origin" not in headers and raw_key(headers) is not None
            if not keyed_script and not origin_allowed(scope, headers):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def websocket_stack(router):
    return OriginGuard(AuthMiddlewareStack(ApiKeyMiddleware(router)))
