"""The JSON shapes of runs, steps and events on the wire: API responses, live messages, SSE.

Plain functions rather than DRF serializers so the event paths (thousands a second) stay cheap;
the API's OpenAPI schema documents these shapes with serializers in runs/api/serializers.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runs.models import RUN_EVENT_FIELDS, Run, RunEvent, Step


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def event_dict(event: RunEvent) -> dict[str, Any]:
    """A stored event (a RunEvent or an event_store.EventRow) in RUN_EVENT_FIELDS order."""
    out = {name: getattr(event, name) for name in RUN_EVENT_FIELDS}
    out["event_id"] = str(out["event_id"])
    out["created_at"] = iso(out["created_at"])
    return out


def step_dict(step: Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "run_id": step.run_id,
        "name": step.name,
        "node_ref": step.node_ref,
        "position": step.position,
        "state": step.state,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "error": step.error,
    }


def run_snapshot(run: Run) -> dict[str, Any]:
    """The small live status of a run: state and progress counters."""
    return {
        "id": run.id,
        "state": run.state,
        "attempt": run.attempt,
        "steps_total": run.steps_total,
        "steps_completed": run.steps_completed,
        "event_count": run.event_count,
        "error_count": run.error_count,
        "latest_event_at": iso(run.latest_event_at),
        "cancel_requested_at": iso(run.cancel_requested_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }
