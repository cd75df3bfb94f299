"""What a live client is sent, shared by the WebSocket consumers and the SSE stream.

A live client holds a cursor: the last event it was sent, per run (``seq`` is contiguous
within a run, and appends to one run commit in ``id`` order because they hold the run's row
lock). Live messages (runs/realtime.py) are only trusted when they continue a run exactly
where the cursor stands; anything else — a message dropped by a full channel, a batch too big
to inline, a client that fell behind — is read back from the database by id. So clients get
every event once, in order, whatever the channel layer did.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from runs import wire
from runs.models import Run, RunEvent, Step

PAGE = 500
COUNTER_FIELDS = frozenset({"event_count", "error_count", "latest_event_at"})
PROJECT_TAIL = 100  # events a project stream starts with when the client names no after_id
TRACKED_RUNS = 10_000  # per-run cursors a project stream remembers (oldest forgotten first)


# --- database reads (sync; consumers wrap them with database_sync_to_async) ----------------

def _last_logs(run_id: str, step_ids: list[str]) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for step_id in step_ids:
        event = (
            RunEvent.objects.filter(run_id=run_id, type="log", step_id=step_id)
            .order_by("-id").only("id", "payload", "created_at").first()
        )
        if event is not None:
            last[step_id] = log_line(event.id, event.payload, wire.iso(event.created_at))
    return last


def log_line(event_id: int, payload: Any, created_at: str | None) -> dict:
    payload = payload if isinstance(payload, dict) else {}
    text = str(payload.get("text", ""))
    return {"id": event_id, "text": text[-2000:], "stream": payload.get("stream", "stdout"),
            "created_at": created_at}


def run_live_snapshot(run_id: str) -> dict | None:
    """The run's status for live clients: run_snapshot plus its steps and their last log line."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return None
    steps = [wire.step_dict(s) for s in Step.objects.filter(run_id=run_id)
             .order_by("position", "created_at", "id")]
    last = _last_logs(run_id, [s["id"] for s in steps])
    for step in steps:
        step["last_log"] = last.get(step["id"])
    return {**wire.run_snapshot(run), "trace_id": run.trace_id, "steps": steps}


def run_events_after(run_id: str, after_id: int, limit: int = PAGE) -> list[dict]:
    qs = RunEvent.objects.filter(run_id=run_id, id__gt=after_id).order_by("id")[:limit]
    return [wire.event_dict(e) for e in qs]


def project_events_after(project_id: int, after_id: int, limit: int = PAGE) -> list[dict]:
    qs = (RunEvent.objects.filter(run__project_id=project_id, id__gt=after_id)
          .order_by("id")[:limit])
    return [wire.event_dict(e) for e in qs]


def project_tail_start(project_id: int, count: int = PROJECT_TAIL) -> int:
    """The ``after_id`` that makes a project stream start with its latest ``count`` events."""
    ids = list(RunEvent.objects.filter(run__project_id=project_id)
               .order_by("-id").values_list("id", flat=True)[:count])
    return ids[-1] - 1 if ids else _max_event_id()


def _max_event_id() -> int:
    last = RunEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def run_cursor_start(run_id: str, after_id: int) -> tuple[int, int]:
    """(after_id, seq of the last event at or before it) for a run stream starting there."""
    seq = (RunEvent.objects.filter(run_id=run_id, id__lte=after_id)
           .order_by("-id").values_list("seq", flat=True).first())
    return after_id, seq or 0


# --- the cursor ------------------------------------------------------------------------------

@dataclass
class RunCursor:
    """Where one run's stream stands for one client."""

    last_id: int = 0
    last_seq: int = 0

    def fresh(self, events: list[dict]) -> list[dict] | None:
        """The events of a live message the client has not had, or None when they do not
        continue the stream exactly (then read the database from ``last_id``)."""
        if not events:
            return []
        new = [e for e in events if e["seq"] > self.last_seq]
        if new and new[0]["seq"] != self.last_seq + 1:
            return None
        return new

    def advance(self, event: dict) -> None:
        self.last_id = event["id"]
        self.last_seq = event["seq"]


@dataclass
class ProjectCursor:
    """A project stream: one RunCursor per run it has seen, plus the global id it started at."""

    after_id: int
    runs: OrderedDict = field(default_factory=OrderedDict)

    def run(self, run_id: str) -> RunCursor:
        cursor = self.runs.get(run_id)
        if cursor is None:
            # A run first seen live: anything of it before after_id was never wanted.
            cursor = self.runs[run_id] = RunCursor(last_id=self.after_id, last_seq=0)
            if len(self.runs) > TRACKED_RUNS:
                self.runs.popitem(last=False)
        else:
            self.runs.move_to_end(run_id)
        return cursor


@dataclass
class SnapshotState:
    """The run snapshot a client was last sent, updated from live messages and events."""

    snapshot: dict | None = None
    dirty: bool = False
    # A change people must see at once (state, attempt, steps), as opposed to counters and
    # log lines moving, which a client may be sent a few times a second at most.
    urgent: bool = False

    def merge_message(self, message: dict) -> None:
        if self.snapshot is None:
            return
        run = message.get("run") or {}
        changed = [k for k, v in run.items() if self.snapshot.get(k) != v]
        if changed:
            self.urgent = self.urgent or not set(changed) <= COUNTER_FIELDS
            self.snapshot.update(run)
            self.dirty = True
        steps = message.get("steps") or []
        if steps:
            self.urgent = True
            by_id = {s["id"]: s for s in self.snapshot.setdefault("steps", [])}
            for step in steps:
                current = by_id.get(step["id"])
                if current is None:
                    self.snapshot["steps"].append({**step, "last_log": None})
                else:
                    current.update(step)
            self.snapshot["steps"].sort(key=lambda s: (s["position"], s["id"]))
            self.dirty = True

    def saw_event(self, event: dict) -> None:
        if self.snapshot is None or event["type"] != "log" or not event.get("step_id"):
            return
        for step in self.snapshot.get("steps", []):
            if step["id"] == event["step_id"]:
                step["last_log"] = log_line(event["id"], event["payload"], event["created_at"])
                self.dirty = True
                return

    def take(self) -> dict | None:
        """The snapshot if it changed since last taken."""
        if not self.dirty or self.snapshot is None:
            return None
        self.dirty = self.urgent = False
        return self.snapshot
