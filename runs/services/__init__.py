"""Every write to projects, runs, steps and run events goes through these functions.

- ``ledger``: the primitive the others build on — lock a run, check a transition, append
  lifecycle events, save (or rebuild) the projection; the lock order is written down there.
- ``runs``: enqueue, start, succeed, fail, cancel, link a trace.
- ``steps``: create a step, move it through its states.
- ``events``: append agent events (one, a batch, best effort).
- ``queue``: claim, heartbeat, reap, hand back.

Import from ``runs.services``; the modules are how the code is laid out, not an API.
"""

from runs.services.events import (
    AGENT_EVENT_FIELDS,
    AppendResult,
    event_append,
    event_append_batch,
    event_append_safe,
)
from runs.services.ledger import (
    ERROR_LIMIT,
    lifecycle_broadcast,
    lifecycle_changes,
    lifecycle_row,
    projections_rebuild,
)
from runs.services.queue import (
    CLAIM_LIMIT_MAX,
    WORKER_ID_MAX,
    Heartbeat,
    ReapResult,
    run_claim_external,
    run_claim_next,
    run_heartbeat,
    run_heartbeat_batch,
    run_release,
    runs_reap,
    runs_stalled,
)
from runs.services.runs import (
    KIND_RE,
    MAX_ATTEMPTS_LIMIT,
    OUTPUT_REF_RE,
    project_create,
    refuse_credentials,
    retry_delay,
    run_cancel,
    run_enqueue,
    run_fail,
    run_link_trace,
    run_start,
    run_succeed,
    run_succeed_batch,
    runs_link_traces,
)
from runs.services.steps import (
    step_create,
    step_transition,
)

__all__ = [
    "AGENT_EVENT_FIELDS",
    "CLAIM_LIMIT_MAX",
    "ERROR_LIMIT",
    "KIND_RE",
    "MAX_ATTEMPTS_LIMIT",
    "OUTPUT_REF_RE",
    "WORKER_ID_MAX",
    "AppendResult",
    "Heartbeat",
    "ReapResult",
    "event_append",
    "event_append_batch",
    "event_append_safe",
    "lifecycle_broadcast",
    "lifecycle_changes",
    "lifecycle_row",
    "project_create",
    "projections_rebuild",
    "refuse_credentials",
    "retry_delay",
    "run_cancel",
    "run_claim_external",
    "run_claim_next",
    "run_enqueue",
    "run_fail",
    "run_heartbeat",
    "run_heartbeat_batch",
    "run_link_trace",
    "run_release",
    "run_start",
    "run_succeed",
    "run_succeed_batch",
    "runs_link_traces",
    "runs_reap",
    "runs_stalled",
    "step_create",
    "step_transition",
]


def __getattr__(name: str):
    # A counter the events module keeps rebinding: read it there, not a copy taken at import.
    if name == "best_effort_failures":
        from runs.services import events

        return events.best_effort_failures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
