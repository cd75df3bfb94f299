"""Fixtures for the `tracefoundry` CLI: run it in-process (local or against a live server) and
drive runs from another thread while it waits."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import connection

from tracefoundry.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class TtyInput(io.StringIO):
    """What a person types at a terminal."""

    def isatty(self) -> bool:
        return True


class WatchedOutput(io.StringIO):
    """stdout that lets another thread wait until some text has been printed."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            written = super().write(text)
            self._changed.notify_all()
        return written

    def wait_for(self, text: str, timeout: float = 30) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: text in self.getvalue(), timeout)


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch):
    """The developer's own TRACEFOUNDRY_API_URL/KEY must not switch tests to remote mode."""
    monkeypatch.delenv("TRACEFOUNDRY_API_URL", raising=False)
    monkeypatch.delenv("TRACEFOUNDRY_API_KEY", raising=False)


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """Run ``tracefoundry <argv>`` in-process; ``stdin`` text, ``tty`` to make it a terminal,
    ``stdout`` to watch the output while it runs."""

    def run(*argv: str, stdin: str | None = None, tty: bool = False,
            stdout: io.StringIO | None = None) -> Result:
        saved = sys.stdin, sys.stdout
        try:
            if stdin is not None or tty:
                sys.stdin = (TtyInput if tty else io.StringIO)(stdin or "")
            if stdout is not None:
                sys.stdout = stdout
            code = main(list(argv))
        finally:
            sys.stdin, sys.stdout = saved
        captured = capsys.readouterr()
        out = stdout.getvalue() if stdout is not None else captured.out
        return Result(code=code, out=out, err=captured.err)

    return run


@pytest.fixture
def api_key(make_key) -> str:
    _, raw = make_key("runs:read,runs:write")
    return raw


@pytest.fixture
def remote(live_server, api_key) -> list[str]:
    """Arguments that point a command at the live test server with a real API key."""
    return ["--remote", "--api-url", live_server.url, "--api-key", api_key]


@pytest.fixture
def in_thread():
    """Start ``fn`` on another thread (its own database connection); joined, and its
    exception re-raised, at the end of the test."""
    started: list[tuple[threading.Thread, list[BaseException]]] = []

    def start(fn: Callable[[], None]) -> None:
        errors: list[BaseException] = []

        def target() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        started.append((thread, errors))

    yield start
    for thread, errors in started:
        thread.join(60)
        if errors:
            raise errors[0]
