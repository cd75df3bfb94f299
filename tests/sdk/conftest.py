"""The Python SDK against a real server: ``live_stack``'s daphne on a database of its own, real
HTTP for runs and events, real OTLP for spans.

The SDK is imported from this checkout's ``sdk/python/src`` (as the rest of the suite imports
the server's code from the checkout), so a worktree tests its own SDK whatever the virtualenv
has installed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

import tracefoundry_sdk as tf  # noqa: E402


def run_async(coroutine):
    """``asyncio.run`` in a thread of its own: in the whole suite, the browser tests' Playwright
    keeps an event loop running in the main thread."""
    result = {}

    def target():
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@dataclass
class Sdk:
    """The server the SDK talks to, a reader's key and an engineer's key (payload contents)."""

    stack: object
    url: str
    key: str  # what the agent uses: runs:write + ingest (and runs:read, for the tests)
    engineer_key: str

    def get(self, path: str, *, key: str | None = None):
        status, body = self.stack.request("GET", f"{self.url}{path}", key=key or self.key)
        assert status == 200, (path, status, body)
        return body

    def post(self, path: str, body=None):
        return self.stack.request("POST", f"{self.url}{path}", key=self.key, body=body or {})

    def events(self, run_id: str) -> list[dict]:
        return self.get(f"/api/v1/runs/{run_id}/events?limit=1000")["events"]

    def agent_events(self, run_id: str) -> list[dict]:
        return [e for e in self.events(run_id) if not e["type"].startswith(("run.", "step."))]

    def spans(self, trace_id: str) -> list[dict]:
        listing = self.get(f"/api/v1/traces/{trace_id}/spans")["spans"]
        return [self.get(f"/api/v1/spans/{s['span_id']}?trace_id={trace_id}") for s in listing]

    def configure(self, **overrides) -> None:
        settings = {"api_url": self.url, "api_key": self.key, "batch_interval_s": 0.05,
                    "flush_timeout_s": 10.0, **overrides}
        tf.configure(**settings)


@pytest.fixture(scope="session")
def sdk_server(live_stack) -> Iterator[Sdk]:
    server = live_stack.server()
    key = live_stack.api_key("runs:read,runs:write,ingest")
    live_stack.create_user("sdk-engineer", "engineer")
    engineer_key = live_stack.manage(
        "apikey", "create", "--project", "default", "--scopes", "runs:read",
        "--user", "sdk-engineer").stdout.strip().splitlines()[-1].strip()
    yield Sdk(stack=live_stack, url=server.url, key=key, engineer_key=engineer_key)
    tf.shutdown(5)  # while the server is still up: nothing left for the exit hook


@pytest.fixture
def sdk(sdk_server) -> Iterator[Sdk]:
    """The SDK configured for the live server; flushed after the test."""
    sdk_server.configure()
    yield sdk_server
    tf.flush(10)
