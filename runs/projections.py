"""The projector: how each event changes the Run and Step rows.

The live services and ``manage.py rebuild_projections`` both go through ``apply_event``, so the
rows can always be rebuilt from the event stream alone. Only the fields in RUN_PROJECTED_FIELDS /
STEP_PROJECTED_FIELDS are projections; creation attributes (kind, input, …) are not.
"""

from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_datetime

from runs import lifecycle as lc
from runs.models import FINISHED_STEP_STATES, Run, RunEvent, RunState, Step, StepState

RUN_PROJECTED_FIELDS = (
    "state", "attempt", "run_after", "claimed_by", "claimed_at", "cancel_requested_at",
    "started_at", "finished_at", "output_ref", "output", "error", "steps_total", "steps_completed",
    "event_count", "error_count", "latest_event_at", "updated_at",
)
STEP_PROJECTED_FIELDS = (
    "name", "node_ref", "position", "state", "started_at", "finished_at", "error",
)


def reset_run(run: Run) -> None:
    """Put a run's projected fields back to what they are before its first event."""
    run.state = RunState.QUEUED
    run.attempt = 0
    run.run_after = None
    run.claimed_by = ""
    run.claimed_at = None
    run.cancel_requested_at = None
    run.started_at = None
    run.finished_at = None
    run.output_ref = ""
    run.output = None
    run.error = ""
    run.steps_total = 0
    run.steps_completed = 0
    run.event_count = 0
    run.error_count = 0
    run.latest_event_at = None


def reset_step(step: Step) -> None:
    step.state = StepState.PENDING
    step.started_at = None
    step.finished_at = None
    step.error = ""


def _dt(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def _close_open_steps(run: Run, steps: dict[str, Step], at: datetime) -> list[Step]:
    """A run that stops (finishes or goes back to the queue) cancels the steps it left open."""
    closed = []
    for step in steps.values():
        if step.state not in FINISHED_STEP_STATES:
            step.state = StepState.CANCELED
            step.finished_at = at
            run.steps_completed += 1
            closed.append(step)
    return closed


def apply_event(run: Run, event: RunEvent, steps: dict[str, Step]) -> list[Step]:
    """Apply one event to ``run`` (and the steps it touches); return the steps it changed.

    ``steps`` must hold every step the event can touch: the event's own step for step events,
    and the run's open steps for events that end an attempt.
    """
    at = event.created_at
    run.event_count += 1
    if event.level == "error":
        run.error_count += 1
    if run.latest_event_at is None or at > run.latest_event_at:
        run.latest_event_at = at
    run.updated_at = at

    payload = event.payload if isinstance(event.payload, dict) else {}
    etype = event.type
    changed: list[Step] = []
    if etype == lc.RUN_CREATED:
        run.state = RunState.QUEUED
        run.run_after = _dt(payload.get("run_after"))
    elif etype == lc.RUN_STARTED:
        run.state = RunState.RUNNING
        run.attempt = payload.get("attempt", run.attempt + 1)
        run.claimed_by = payload.get("worker_id", "")
        run.claimed_at = at
        run.run_after = None
        if run.started_at is None:
            run.started_at = at
    elif etype == lc.RUN_RETRYING:
        run.state = RunState.QUEUED
        if payload.get("counts_as_attempt") is False:
            # A worker that shut down handed the run back: the attempt it had begun is not
            # spent, so the next start is numbered as this one was.
            run.attempt = max(run.attempt - 1, 0)
        run.error = payload.get("error", "")
        run.run_after = _dt(payload.get("run_after"))
        run.claimed_by = ""
        run.claimed_at = None
        changed = _close_open_steps(run, steps, at)
    elif etype in (lc.RUN_SUCCEEDED, lc.RUN_FAILED, lc.RUN_CANCELED):
        run.state = {
            lc.RUN_SUCCEEDED: RunState.SUCCEEDED,
            lc.RUN_FAILED: RunState.FAILED,
            lc.RUN_CANCELED: RunState.CANCELED,
        }[etype]
        run.finished_at = at
        if etype == lc.RUN_SUCCEEDED:
            run.output_ref = payload.get("output_ref", "")
            run.output = payload.get("output")
        else:
            run.error = payload.get("error", run.error)
        changed = _close_open_steps(run, steps, at)
    elif etype == lc.RUN_CANCEL_REQUESTED:
        run.cancel_requested_at = at
    elif etype.startswith("step."):
        step = steps.get(payload.get("step_id") or event.step_id)
        if step is not None:
            changed = _apply_step_event(run, step, etype, payload, at)
    return changed


def apply_agent_events(run: Run, rows: list) -> None:
    """``apply_event`` for a batch of agent events at once: they only move the counters."""
    if not rows:
        return
    run.event_count += len(rows)
    run.error_count += sum(1 for r in rows if r.level == "error")
    latest = rows[-1].created_at  # a batch shares one timestamp, like apply_event's last call
    if run.latest_event_at is None or latest > run.latest_event_at:
        run.latest_event_at = latest
    run.updated_at = latest


def _apply_step_event(run: Run, step: Step, etype: str, payload: dict, at: datetime) -> list[Step]:
    if etype == lc.STEP_CREATED:
        run.steps_total += 1
        step.name = payload.get("name", step.name)
        step.node_ref = payload.get("node_ref", "")
        step.position = payload.get("position", 0)
        step.state = StepState.PENDING
    elif etype == lc.STEP_STARTED:
        step.state = StepState.RUNNING
        step.started_at = at
    else:
        step.state = {
            lc.STEP_SUCCEEDED: StepState.SUCCEEDED,
            lc.STEP_FAILED: StepState.FAILED,
            lc.STEP_SKIPPED: StepState.SKIPPED,
        }[etype]
        step.finished_at = at
        step.error = payload.get("error", "")
        run.steps_completed += 1
    return [step]
