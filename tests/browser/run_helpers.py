"""Runs, steps and events for the run pages' browser tests, set up through the public API.

Everything goes through the deployment's HTTP API with a ``runs:read,runs:write`` key, the way a
worker or an agent would report a run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.livestack import ROOT

# The WebSocket server side lands separately; until then the pages fall back to SSE/polling.
WEBSOCKETS_SERVED = (ROOT / "runs" / "consumers.py").exists()
SSE_SERVED = "events/stream" in (Path(ROOT) / "runs" / "urls.py").read_text()


def token() -> str:
    return secrets.token_hex(4)


@dataclass
class RunApi:
    stack: object
    base: str
    key: str

    def call(self, method: str, path: str, body=None, expect: tuple[int, ...] = (200, 201, 202)):
        status, answer = self.stack.request(method, f"{self.base}/api/v1{path}", key=self.key,
                                            body=body)
        assert status in expect, (method, path, status, answer)
        return answer

    def run(self, *, kind: str = "agent.session", name: str = "", project: str | None = None,
            trace_id: str | None = None, start: bool = True) -> str:
        body = {"kind": kind, "name": name}
        if project:
            body["project"] = project
        if trace_id:
            body["trace_id"] = trace_id
        run_id = self.call("POST", "/runs", body)["id"]
        if start:
            self.call("POST", f"/runs/{run_id}/start", {"worker_id": "w1"})
        return run_id

    def step(self, run_id: str, name: str, *, start: bool = True) -> str:
        step_id = self.call("POST", f"/runs/{run_id}/steps", {"name": name})["id"]
        if start:
            self.call("POST", f"/runs/{run_id}/steps/{step_id}/start", {})
        return step_id

    def step_action(self, run_id: str, step_id: str, action: str, body=None) -> dict:
        return self.call("POST", f"/runs/{run_id}/steps/{step_id}/{action}", body or {})

    def log(self, run_id: str, text: str, *, stream: str = "stdout", step_id: str | None = None,
            level: str = "info") -> dict:
        event = {"type": "log", "level": level, "payload": {"text": text, "stream": stream}}
        if step_id:
            event["step_id"] = step_id
        return self.call("POST", f"/runs/{run_id}/events", event)

    def event(self, run_id: str, type: str, *, level: str = "info", payload=None,
              step_id: str | None = None) -> dict:
        event = {"type": type, "level": level, "payload": payload or {}}
        if step_id:
            event["step_id"] = step_id
        return self.call("POST", f"/runs/{run_id}/events", event)

    def batch(self, run_id: str, events: list[dict]) -> dict:
        return self.call("POST", f"/runs/{run_id}/events", events)

    def notes(self, run_id: str, count: int, *, prefix: str = "note") -> None:
        """``count`` note events, in batches of 1,000 (the API's batch limit)."""
        for at in range(0, count, 1000):
            self.batch(run_id, [{"type": "note", "payload": {"message": f"{prefix} {n}"}}
                                for n in range(at, min(count, at + 1000))])
