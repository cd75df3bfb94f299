"""Output of every command: human-readable tables and lines, or JSON for scripts.

Takes the API's JSON shapes only, so local and remote output is byte-for-byte the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from tracefoundry.cli.backend import EventDict, RunDict

EVENT_TEXT_MAX = 160
LIST_COLUMNS = ("ID", "STATE", "KIND", "PROJECT", "ATTEMPT", "CREATED", "DURATION", "EVENTS")


def write_json(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_json_line(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def when(value: str | None) -> str:
    """An API timestamp as ``2025-01-31 12:00:00`` (UTC), or ``-``."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def clock(value: str | None) -> str:
    """An API timestamp as ``12:00:00.123`` (UTC): the time column of `runs tail`."""
    if not value:
        return "--:--:--.---"
    return datetime.fromisoformat(value).strftime("%H:%M:%S.%f")[:-3]


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_list(runs: list[RunDict]) -> str:
    if not runs:
        return "No runs.\n"
    rows = [
        (
            r["id"], r["state"] + (" (cancel requested)" if _cancel_pending(r) else ""),
            r["kind"], r["project"], f"{r['attempt']}/{r['max_attempts']}", when(r["created_at"]),
            duration(r["duration_ms"]), str(r["event_count"]),
        )
        for r in runs
    ]
    return table(rows, LIST_COLUMNS)


def run_detail(run: RunDict) -> str:
    steps = f"{run['steps_completed']}/{run['steps_total']}" if run["steps_total"] else "-"
    fields = [
        ("id", run["id"]),
        ("project", run["project"]),
        ("kind", run["kind"]),
        ("name", run["name"] or "-"),
        ("state", run["state"]),
        # Only while a queued run has no online worker for its kind (the API's `waiting`).
        *([("waiting", run["waiting"])] if run.get("waiting") else []),
        ("attempt", f"{run['attempt']}/{run['max_attempts']}"),
        ("idempotency_key", run["idempotency_key"] or "-"),
        ("claimed_by", run["claimed_by"] or "-"),
        ("created_at", when(run["created_at"])),
        ("run_after", when(run["run_after"])),
        ("started_at", when(run["started_at"])),
        ("finished_at", when(run["finished_at"])),
        ("cancel_requested_at", when(run["cancel_requested_at"])),
        ("duration", duration(run["duration_ms"])),
        ("steps", steps),
        ("events", f"{run['event_count']} ({run['error_count']} errors)"),
        ("trace_id", run["trace_id"] or "-"),
        ("output", _one_line(_json_text(run.get("output"))) or "-"),
        ("output_ref", run["output_ref"] or "-"),
        ("error", _one_line(run.get("error") or "") or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    return "".join(f"{name.ljust(width)}  {value}\n" for name, value in fields)


def enqueued(run: RunDict, created: bool) -> str:
    if created:
        return (
            f"Enqueued {run['id']} (kind {run['kind']}, project {run['project']}, "
            f"{run['state']})\n"
        )
    return (
        f"Idempotency key {run['idempotency_key']!r} already names {run['id']} "
        f"({run['state']}); nothing new was enqueued\n"
    )


def canceled(run: RunDict) -> str:
    if run["state"] == "canceled":
        return f"Canceled {run['id']}\n"
    return (
        f"Cancel requested for {run['id']} ({run['state']}): its worker stops it at its next "
        "check (--force cancels at once)\n"
    )


def event_line(event: EventDict) -> str:
    step = event["step_id"] or "-"
    return (
        f"{clock(event['created_at'])}  {event['level']:<5}  {event['type']:<18}  {step:<10}  "
        f"{event_text(event)}".rstrip() + "\n"
    )


def event_text(event: EventDict) -> str:
    """A short text for one event: what a person tailing a run wants to see of its payload."""
    payload = event["payload"]
    if not isinstance(payload, dict):
        payload = {"value": payload}
    etype = event["type"]
    if etype == "log":
        text = f"[{payload.get('stream') or 'log'}] {payload.get('text', '')}"
    elif etype == "progress":
        done, total = payload.get("completed"), payload.get("total")
        counts = f"{done}/{total}" if total is not None else f"{done}"
        text = f"{counts} {payload.get('message') or ''}"
    elif etype == "run.created":
        text = f"kind={payload.get('kind')} max_attempts={payload.get('max_attempts')}"
    elif etype == "run.started":
        worker = payload.get("worker_id")
        text = f"attempt {payload.get('attempt')}" + (f" on {worker}" if worker else "")
    elif etype == "run.succeeded":
        if "output" in payload:
            text = f"output={_one_line(_json_text(payload['output']))}"
        else:
            text = f"output_ref={payload.get('output_ref') or '-'}"
    elif etype == "run.retrying":
        text = f"{payload.get('error', '')} (retry after {payload.get('run_after')})"
    elif etype in ("run.canceled", "run.cancel_requested"):
        text = payload.get("reason") or ""
    else:
        text = _first_text(payload)
    return _shorten(_one_line(text))


_TEXT_KEYS = ("text", "message", "error", "reason", "name", "tool", "model", "command")


def _first_text(payload: dict) -> str:
    for key in _TEXT_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    shown = {k: v for k, v in payload.items() if v not in ("", None, [], {})}
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":")) if shown else ""


def _one_line(text: str) -> str:
    return " ⏎ ".join(part for part in str(text).strip().splitlines() if part.strip())


def _shorten(text: str) -> str:
    return text if len(text) <= EVENT_TEXT_MAX else text[: EVENT_TEXT_MAX - 1] + "…"


def _cancel_pending(run: RunDict) -> bool:
    return run["state"] == "running" and bool(run["cancel_requested_at"])


def _json_text(value) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def run_outcome(run: dict) -> str:
    """The last line `runs tail` prints for a succeeded run: its output, or the ref of it."""
    if run.get("output") is not None:
        return f"output: {_json_text(run['output'])}"
    return f"output_ref: {run['output_ref'] or '-'}"
