"""Event type vocabulary of the run ledger and the run/step state machines."""

from __future__ import annotations

import re

from runs.models import EventLevel, RunState, StepState

RUN_CREATED = "run.created"
RUN_STARTED = "run.started"
RUN_RETRYING = "run.retrying"
RUN_SUCCEEDED = "run.succeeded"
RUN_FAILED = "run.failed"
RUN_CANCEL_REQUESTED = "run.cancel_requested"
RUN_CANCELED = "run.canceled"
STEP_CREATED = "step.created"
STEP_STARTED = "step.started"
STEP_SUCCEEDED = "step.succeeded"
STEP_FAILED = "step.failed"
STEP_SKIPPED = "step.skipped"

LIFECYCLE_TYPES = frozenset(
    {
        RUN_CREATED, RUN_STARTED, RUN_RETRYING, RUN_SUCCEEDED, RUN_FAILED,
        RUN_CANCEL_REQUESTED, RUN_CANCELED,
        STEP_CREATED, STEP_STARTED, STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED,
    }
)
# Clients may not forge lifecycle events: the projection would no longer match the services.
RESERVED_PREFIXES = ("run.", "step.")

AGENT_TYPES = frozenset(
    {
        "llm_request", "llm_response", "tool_call", "tool_result", "patch_proposed",
        "patch_applied", "test_started", "test_result", "note", "error", "log", "progress",
    }
)
CUSTOM_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
LEVELS = frozenset(EventLevel.values)

# run action -> (states it may start from, state it leads to)
RUN_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({RunState.QUEUED}), RunState.RUNNING),
    "succeed": (frozenset({RunState.RUNNING}), RunState.SUCCEEDED),
    "fail": (frozenset({RunState.RUNNING}), RunState.FAILED),
    "retry": (frozenset({RunState.RUNNING}), RunState.QUEUED),
    "cancel": (frozenset({RunState.QUEUED, RunState.RUNNING}), RunState.CANCELED),
}

STEP_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({StepState.PENDING}), StepState.RUNNING),
    "succeed": (frozenset({StepState.RUNNING}), StepState.SUCCEEDED),
    "fail": (frozenset({StepState.PENDING, StepState.RUNNING}), StepState.FAILED),
    "skip": (frozenset({StepState.PENDING}), StepState.SKIPPED),
}
STEP_EVENT_FOR_ACTION = {
    "start": STEP_STARTED,
    "succeed": STEP_SUCCEEDED,
    "fail": STEP_FAILED,
    "skip": STEP_SKIPPED,
}
