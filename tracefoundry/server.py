"""The web server: daphne, with every request body checked before it is read.

    python -m tracefoundry.server -b 0.0.0.0 -p 8000 [--proxy-headers] [-u SOCKET] [--fd N] ...

Daphne (on Twisted) reads a request's whole body, to memory or a temporary file, before the
ASGI application sees the request, so nothing in Django can refuse a 2 GiB body in time. This
entry point runs daphne's own server and command line (every daphne option works; the
application defaults to ``tracefoundry.asgi:application``) with a request class that decides
when the headers are in, before any of the body is read:

* a ``Content-Length`` above the route's cap is answered ``413`` at once;
* a chunked body is counted as it arrives and cut with ``413`` as soon as it passes the cap;
* a request to ``/api/`` or ``/otlp/`` that carries a body but no credentials at all (no
  ``Authorization``, no ``X-TraceFoundry-Key``, no session cookie) is answered ``401``.

Caps by route: ``/otlp/`` ``TRACEFOUNDRY_OTLP_MAX_BYTES``, ``/api/``
``TRACEFOUNDRY_MAX_REQUEST_BYTES``, anything else (pages, forms, admin, health)
``TRACEFOUNDRY_PAGE_MAX_BYTES``. Refusals are JSON in the API's error shape with
``Connection: close``; the server then stops reading the request (what the client still sends
during a short grace period is dropped unread, so it can see the answer) and closes.
Credentials are only checked for presence here; whether they are any good is Django's call.
"""

from __future__ import annotations

import daphne.server  # isort: skip  (first: installs the asyncio Twisted reactor daphne needs)

import json
import sys
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor

APPLICATION = "tracefoundry.asgi:application"
# How long a refused request's connection stays open, dropping what arrives, after the answer.
LINGER_SECONDS = 2.0
_REASONS = {401: "Unauthorized", 413: "Content Too Large"}


@dataclass(frozen=True)
class BodyRules:
    """What a request may send, by path (the ASGI path: percent-decoded, no query string)."""

    api_max: int
    otlp_max: int
    page_max: int
    session_cookie: bytes

    @classmethod
    def from_settings(cls) -> BodyRules:
        from django.conf import settings

        return cls(api_max=settings.TRACEFOUNDRY_MAX_REQUEST_BYTES,
                   otlp_max=settings.TRACEFOUNDRY_OTLP_MAX_BYTES,
                   page_max=settings.TRACEFOUNDRY_PAGE_MAX_BYTES,
                   session_cookie=settings.SESSION_COOKIE_NAME.encode("latin-1"))

    def cap(self, path: str) -> int:
        if path.startswith("/otlp/"):
            return self.otlp_max
        if path.startswith("/api/"):
            return self.api_max
        return self.page_max

    @staticmethod
    def needs_credentials(path: str) -> bool:
        return path.startswith(("/api/", "/otlp/"))


def request_path(target: bytes) -> str:
    """The path Django will route ``target`` (the request line's target) by."""
    if not target.startswith(b"/"):  # absolute form: http://host/path
        target = urlsplit(target).path or b"/"
    return unquote(target.split(b"?", 1)[0].decode("latin-1"))


def _discard(*args) -> None:
    pass


class GuardedRequest(WebRequest):
    """Daphne's request, refusing bodies it should not read (see the module docstring)."""

    _refused = False
    _cap = 0
    _received = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Twisted would parse a multipart body itself, into ``args`` that daphne never reads:
        # a second copy of every upload (a bundle: up to the API cap), and a bare 400 without a
        # body or a log line for one it cannot parse. Django parses what the views need.
        self._parsePOSTFormSubmission = False

    def gotLength(self, length: int | None) -> None:
        # Called once the headers are in (Twisted keeps the request target on the channel until
        # the body is complete), before a byte of the body is read.
        rules: BodyRules = self.server.body_rules
        path = self._route_path()
        self._cap = rules.cap(path)
        if length is not None and length > self._cap:
            self._refuse(413, "payload_too_large",
                         f"request body is {length} bytes; the limit here is {self._cap}", path)
            return
        if length != 0 and rules.needs_credentials(path) and not self._has_credentials(rules):
            self._refuse(401, "not_authenticated",
                         "credentials are required (Authorization: Bearer <API key>, "
                         "X-TraceFoundry-Key, or a session)", path)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap:
            self._refuse(413, "payload_too_large",
                         f"request body exceeds the limit here of {self._cap} bytes",
                         self._route_path())
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _route_path(self) -> str:
        """The path Django routes by: the request target's, less the ASGI root path (daphne's
        ``--root-path``, or a proxy's ``Daphne-Root-Path`` header)."""
        path = request_path(getattr(self.channel, "_path", b"/"))
        root = self.server.root_path
        header = self.requestHeaders.getRawHeaders(b"daphne-root-path")
        if header:
            root = unquote(header[0].decode("latin-1"))
        root = root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root):] or "/"
        return path

    def _has_credentials(self, rules: BodyRules) -> bool:
        headers = self.requestHeaders
        for name in (b"authorization", b"x-tracefoundry-key"):
            if any(value.strip() for value in headers.getRawHeaders(name, [])):
                return True
        return bool(self.received_cookies.get(rules.session_cookie))

    def _refuse(self, status: int, code: str, message: str, path: str) -> None:
        self._refused = True
        channel, transport = self.channel, self.channel.transport
        # Twisted would otherwise send "100 Continue" after our answer.
        self.requestHeaders.removeHeader(b"expect")
        body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
        head = [f"HTTP/1.1 {status} {_REASONS[status]}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: close"]
        if status == 401:
            head.append('WWW-Authenticate: Bearer realm="tracefoundry"')
        transport.write("\r\n".join(head).encode("ascii") + b"\r\n\r\n" + body)
        # Read no more of the request: what still arrives is dropped. Half-close so the client
        # sees the answer and the end of it, and cut the connection after a grace period.
        channel.dataReceived = channel.rawDataReceived = channel.lineReceived = _discard
        channel.setTimeout(None)
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            transport.loseConnection()
        reactor.callLater(LINGER_SECONDS, transport.abortConnection)
        self._log_refusal(status, path)

    def _log_refusal(self, status: int, path: str) -> None:
        peer = getattr(self.channel.transport, "getPeer", lambda: None)()
        client = f"{peer.host}:{peer.port}" if hasattr(peer, "host") else None
        self.server.log_action("http", "complete", {
            "path": path, "status": status,
            "method": getattr(self.channel, "_command", b"-").decode("ascii", "replace"),
            "client": client, "time_taken": 0.0, "size": 0,
        })


class GuardedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        return protocol


class GuardedServer(daphne.server.Server):
    """Daphne's server with ``GuardedRequest``; the body caps are read from Django's settings
    (the application is imported before the server is built, so they are configured)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.body_rules = BodyRules.from_settings()

    # Server.run() builds its HTTPFactory itself; take ours instead when it does.
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, GuardedHTTPFactory) \
            else GuardedHTTPFactory(self)


class CLI(CommandLineInterface):
    description = "TraceFoundry's web server (daphne, with request bodies checked first)"
    server_class = GuardedServer

    def __init__(self) -> None:
        super().__init__()
        self.parser.prog = "python -m tracefoundry.server"
        for action in self.parser._actions:
            if action.dest == "application":  # optional here: this server is for this project
                action.nargs, action.default = "?", APPLICATION
                action.help = f"the ASGI application (default {APPLICATION})"


def main(argv: list[str] | None = None) -> None:
    CLI().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
