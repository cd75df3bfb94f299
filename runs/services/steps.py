"""Step services: create a step of a run, and move it through its states."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from payloads.redaction import get_redactor
from runs import lifecycle as lc
from runs.models import RunState, Step
from runs.services.ledger import append_lifecycle, lock_run, redacted_error, save_projection
from tracefoundry.errors import (
    InvalidInput,
    InvalidTransition,
    NotFound,
    RunFinished,
)


def step_create(
    *, run_id: str, name: str, node_ref: str = "", position: int | None = None
) -> Step:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidInput("name must be a non-empty string of at most 256 characters")
    redactor = get_redactor()
    name, node_ref = redactor.text(name)[:256], redactor.text(node_ref)[:256]
    with transaction.atomic():
        run = lock_run(run_id)
        if run.is_finished:
            raise RunFinished(f"run {run.id} is {run.state}", details={"state": run.state})
        step = Step(
            run=run, name=name, node_ref=node_ref[:256],
            position=run.steps_total if position is None else position,
        )
        step.save(force_insert=True)
        event, _ = append_lifecycle(
            run, lc.STEP_CREATED,
            {"step_id": step.id, "name": name, "node_ref": step.node_ref,
             "position": step.position},
            steps={step.id: step}, step=step,
        )
        save_projection(run, [step], [event])
    return step


def step_transition(*, run_id: str, step_id: str, action: str, error: Any = "") -> Step:
    """Start, succeed, fail or skip a step of a run that has not finished."""
    with transaction.atomic():
        run = lock_run(run_id)
        try:
            step = Step.objects.get(pk=step_id, run_id=run.id)
        except Step.DoesNotExist:
            raise NotFound(f"step {step_id} does not exist in run {run_id}") from None
        if run.is_finished:
            raise RunFinished(f"run {run.id} is {run.state}", details={"state": run.state})
        if action == "start" and run.state != RunState.RUNNING:
            raise InvalidTransition(entity="run", current_state=run.state, action="start a step of")
        allowed_from, _ = lc.STEP_TRANSITIONS[action]
        if step.state not in allowed_from:
            raise InvalidTransition(entity="step", current_state=step.state, action=action)
        payload: dict[str, Any] = {"step_id": step.id}
        if action == "fail":
            payload["error"] = redacted_error(error)
        event, changed = append_lifecycle(
            run, lc.STEP_EVENT_FOR_ACTION[action], payload, steps={step.id: step}, step=step,
            level="error" if action == "fail" else "info",
        )
        save_projection(run, changed, [event])
    return step
