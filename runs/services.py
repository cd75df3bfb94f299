"""Every write to projects, runs, steps and run events goes through these functions.

Each one appends the event(s) describing the change and updates the Run/Step projection in the
same transaction, then schedules the live broadcast for after commit.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from payloads.models import PayloadRef
from payloads.redaction import get_redactor
from payloads.selectors import payload_referenced
from payloads.store import payload_store
from runs import lifecycle as lc
from runs import realtime, wire
from runs.envelope import PreparedEvent, prepare_events
from runs.event_store import EventRow, events_insert
from runs.models import Project, Run, RunEvent, RunState, Step, StepState
from runs.projections import (
    RUN_PROJECTED_FIELDS,
    STEP_PROJECTED_FIELDS,
    apply_agent_events,
    apply_event,
    reset_run,
    reset_step,
)
from runs.selectors import project_policy_overrides, project_slug
from runs.wakeup import workers_wake
from tracefoundry.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    RunFinished,
)
from tracefoundry.jsonio import dumps, json_safe

log = logging.getLogger(__name__)

AGENT_EVENT_FIELDS = (
    "event_count", "error_count", "latest_event_at", "updated_at", "dropped_event_count",
)
KIND_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,127}$")
ERROR_LIMIT = 16 * 1024
MAX_ATTEMPTS_LIMIT = 100


# --- helpers ----------------------------------------------------------------------

def _lock_run(run_id: str, *, project_id: int | None = None) -> Run:
    """Load a run for update. PostgreSQL row-locks it; SQLite's IMMEDIATE transaction already
    holds the database write lock, so appends to one run are serialised either way.

    ``project_id`` confines the lookup to one project (API keys): other runs do not exist.
    """
    qs = Run.objects.select_for_update()
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    try:
        return qs.get(pk=run_id)
    except Run.DoesNotExist:
        raise NotFound(f"run {run_id} does not exist") from None


def _redacted_error(error: Any) -> str:
    text = error if isinstance(error, str) else dumps(json_safe(error))
    text = get_redactor().text(text)
    if len(text.encode("utf-8")) > ERROR_LIMIT:
        text = text.encode("utf-8")[: ERROR_LIMIT - 16].decode("utf-8", "ignore") + "\n…[truncated]"
    return text


def _previous_lifecycle_event_id(run: Run) -> str:
    last = (
        RunEvent.objects.filter(run_id=run.id, type__in=lc.LIFECYCLE_TYPES)
        .order_by("-id")
        .values_list("event_id", flat=True)
        .first()
    )
    return str(last) if last else ""


def _append_lifecycle(
    run: Run,
    etype: str,
    payload: dict,
    *,
    steps: dict[str, Step],
    step: Step | None = None,
    level: str = "info",
    source: str = "server",
) -> tuple[RunEvent, list[Step]]:
    """Append one lifecycle event and project it onto ``run`` and ``steps`` (unsaved)."""
    event = RunEvent(
        run=run,
        step=step,
        seq=run.event_count + 1,
        type=etype,
        level=level,
        source=source,
        created_at=timezone.now(),
        correlation_id=run.correlation_id,
        causation_id=_previous_lifecycle_event_id(run),
        payload=payload,
        payload_bytes=len(dumps(payload).encode("utf-8")),
    )
    changed = apply_event(run, event, steps)
    event.save(force_insert=True)
    return event, changed


def _save_projection(run: Run, steps: list[Step], events: list[RunEvent]) -> None:
    run.save(update_fields=RUN_PROJECTED_FIELDS)
    for step in steps:
        step.save(update_fields=STEP_PROJECTED_FIELDS)
    realtime.broadcast_on_commit(
        run_id=run.id,
        project_slug=project_slug(run.project_id),
        events=realtime.live_events(events),
        run=wire.run_snapshot(run),
        steps=[wire.step_dict(step) for step in steps],
    )


def _open_steps(run: Run) -> dict[str, Step]:
    return {
        s.id: s
        for s in Step.objects.filter(
            run_id=run.id, state__in=(StepState.PENDING, StepState.RUNNING)
        )
    }


def _check_transition(run: Run, action: str) -> None:
    allowed_from, _ = lc.RUN_TRANSITIONS[action]
    if run.state not in allowed_from:
        raise InvalidTransition(entity="run", current_state=run.state, action=action)


def _check_holder(run: Run, worker_id: str | None, *, strict: bool = False) -> None:
    """A worker acts only on the runs it holds. ``strict`` (worker-only API keys): the run must
    be held by ``worker_id``; otherwise a run held by nobody, or a caller naming no worker, pass.
    """
    if strict and (not worker_id or worker_id != run.claimed_by):
        raise InvalidTransition(
            entity="run", current_state=f"{run.state} (held by {run.claimed_by or 'nobody'})",
            action=f"act as worker {worker_id or '(none)'} on",
        )
    if worker_id and run.claimed_by and worker_id != run.claimed_by:
        raise InvalidTransition(
            entity="run", current_state=f"{run.state} (held by {run.claimed_by})",
            action=f"act as worker {worker_id} on",
        )


# --- projects ----------------------------------------------------------------------

def project_create(*, slug: str, name: str = "") -> Project:
    return Project.objects.create(slug=slug, name=name or slug)


# --- runs ----------------------------------------------------------------------

def _fingerprint(**fields: Any) -> str:
    return hashlib.sha256(dumps(fields).encode("utf-8")).hexdigest()


def _idempotent_match(existing: Run, fingerprint: str) -> tuple[Run, bool]:
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request",
            details={"run_id": existing.id},
        )
    return existing, False


def run_enqueue(
    *,
    project: Project,
    kind: str,
    input: Any = None,
    name: str = "",
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    run_after: datetime | None = None,
    correlation_id: str = "",
    trace_id: str = "",
    source: str = "server",
) -> tuple[Run, bool]:
    """Create a queued run; with an idempotency key, return the existing run instead.

    Returns ``(run, created)``. Keys are scoped to the project: the same key with a different
    request in the same project raises IdempotencyConflict; in another project it is a new run.
    """
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise InvalidInput("kind must match ^[a-z][a-z0-9_.:-]{0,127}$", details={"field": "kind"})
    max_attempts = max_attempts or settings.TRACEFOUNDRY_DEFAULT_MAX_ATTEMPTS
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidInput(f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}")
    redactor = get_redactor(project.redaction_policy or None)
    if redactor.text(kind) != kind:
        raise InvalidInput("kind must not contain a credential", details={"field": "kind"})
    clean_input = redactor.value(json_safe({} if input is None else input))
    # Every client-chosen string is stored redacted; an idempotency key is compared later, so
    # one holding a credential is refused (two keys would redact alike).
    # A label may be longer than the secret it replaces: cut to the columns' lengths after.
    name, correlation_id = redactor.text(name)[:256], redactor.text(correlation_id)[:64]
    refuse_credentials(idempotency_key or "", "idempotency_key")
    fingerprint = _fingerprint(
        project=project.slug, kind=kind, input=clean_input, name=name,
        max_attempts=max_attempts, run_after=wire.iso(run_after), trace_id=trace_id,
    )
    if idempotency_key:
        existing = Run.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_match(existing, fingerprint)
    now = timezone.now()
    try:
        with transaction.atomic():
            run = Run(
                project=project, kind=kind, name=name, input=clean_input,
                idempotency_key=idempotency_key or None, request_fingerprint=fingerprint,
                max_attempts=max_attempts, run_after=run_after,
                correlation_id=correlation_id or uuid.uuid4().hex, trace_id=trace_id,
                created_at=now, updated_at=now,
            )
            run.save(force_insert=True)
            event, _ = _append_lifecycle(
                run, lc.RUN_CREATED,
                {"kind": kind, "name": name, "max_attempts": max_attempts,
                 "run_after": wire.iso(run_after)},
                steps={}, source=source,
            )
            _save_projection(run, [], [event])
            if run_after is None or run_after <= now:
                workers_wake(kind=kind)
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert; its run is the answer.
        existing = Run.objects.get(project=project, idempotency_key=idempotency_key)
        return _idempotent_match(existing, fingerprint)
    return run, True


def refuse_credentials(value: str, field_name: str) -> str:
    """``value`` when the redactor leaves it as it is; else 400. For identifiers that are
    compared later (worker ids), where a redacted copy would no longer match."""
    if value and get_redactor().text(value) != value:
        raise InvalidInput(f"{field_name} must not contain a credential",
                           details={"field": field_name})
    return value


def run_start(*, run_id: str, worker_id: str = "") -> Run:
    refuse_credentials(worker_id, "worker_id")
    with transaction.atomic():
        run = _lock_run(run_id)
        _check_transition(run, "start")
        event, _ = _append_lifecycle(
            run, lc.RUN_STARTED, {"attempt": run.attempt + 1, "worker_id": worker_id}, steps={}
        )
        _save_projection(run, [], [event])
    return run


# ``runs_succeed(recent_outputs=...)``: small outputs the caller stored lately are not looked up
# again for OUTPUT_REUSE_SECONDS. payload_store leaves a committed blob whose retention clock
# (``created_at``) is at most payloads.store.REUSE_REFRESH_AFTER (10 min) old, and retention
# deletes only blobs older than payloads.retention.UNREFERENCED_GRACE (1 h), so within that time
# the blob cannot be gone; after it the bytes are stored (checked) again.
OUTPUT_REUSE_SECONDS = 60.0
OUTPUT_REUSE_MAX_BYTES = 4096
_OUTPUT_REUSE_ENTRIES = 256


def _output_refs(
    outputs: list[Any], *, recent: dict[bytes, tuple[str, float]] | None = None
) -> list[str]:
    """Store job outputs (redacted JSON) as payload blobs; returns their refs ("" for None).
    Identical outputs are stored once: one ``payload_store`` per distinct content, and none
    for small ones found in ``recent`` (bytes -> (ref, monotonic() deadline), kept up to date
    here)."""
    redactor = get_redactor()
    refs: dict[bytes, str] = {}
    found = []
    now = time.monotonic()
    # Only a committed blob may be remembered: not one stored inside a transaction.
    remember = recent is not None and not transaction.get_connection().in_atomic_block
    for output in outputs:
        if output is None:
            found.append("")
            continue
        data = dumps(redactor.value(json_safe(output))).encode("utf-8")
        if data not in refs:
            hit = recent.get(data) if recent is not None else None
            if hit is not None and hit[1] > now:
                refs[data] = hit[0]
            else:
                refs[data] = payload_store(
                    data=data, content_type="application/json", redaction_mode=redactor.policy
                ).ref
                if remember and len(data) <= OUTPUT_REUSE_MAX_BYTES:
                    if len(recent) >= _OUTPUT_REUSE_ENTRIES:
                        recent.clear()
                    recent[data] = (refs[data], now + OUTPUT_REUSE_SECONDS)
        found.append(refs[data])
    return found


def run_succeed(
    *, run_id: str, output: Any = None, output_ref: str = "", worker_id: str | None = None,
    require_holder: bool = False,
) -> Run:
    """Finish the running attempt. ``require_holder``: only the worker holding the run may
    (worker-only API keys), so ``worker_id`` must name it.

    ``output_ref`` (instead of ``output``) must be ``sha256:<64 hex>`` naming a blob the run's
    project already refers to: a ref is no way to reach another project's payloads."""
    if output is not None:
        output_ref = _output_refs([output])[0]
    elif output_ref:
        output_ref = _checked_output_ref(run_id, output_ref)
    return _succeed(run_id=run_id, output_ref=output_ref, worker_id=worker_id,
                    require_holder=require_holder)


OUTPUT_REF_RE = re.compile(r"sha256:[0-9a-f]{64}")


def _checked_output_ref(run_id: str, output_ref: str) -> str:
    ref = output_ref.lower() if isinstance(output_ref, str) else ""
    if not OUTPUT_REF_RE.fullmatch(ref):
        raise InvalidInput("output_ref must be sha256:<64 hex digits>",
                           details={"field": "output_ref"})
    project_id = Run.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        raise NotFound(f"run {run_id} does not exist")
    if not payload_referenced(ref.removeprefix("sha256:"), project_id):
        raise InvalidInput("output_ref must name a payload this project already refers to",
                           details={"field": "output_ref"})
    return ref


def _succeed(
    *, run_id: str, output_ref: str, worker_id: str | None, require_holder: bool
) -> Run:
    """``run_succeed`` with a ref the server made or checked."""
    if not require_holder:  # the one-statement path lets a run held by nobody pass
        fast = _succeed_fast(run_id=run_id, output_ref=output_ref[:512], worker_id=worker_id)
        if fast is not None:
            return fast
    with transaction.atomic():
        run = _lock_run(run_id)
        _check_transition(run, "succeed")
        _check_holder(run, worker_id, strict=require_holder)
        event, steps = _append_lifecycle(
            run, lc.RUN_SUCCEEDED, {"output_ref": output_ref[:512]}, steps=_open_steps(run)
        )
        _save_projection(run, steps, [event])
    return run


def runs_succeed(
    *, results: list[tuple[str, Any]], worker_id: str | None = None,
    recent_outputs: dict[bytes, tuple[str, float]] | None = None,
) -> dict[str, Run | DomainError]:
    """``run_succeed`` for many runs at once (``(run_id, output)`` pairs: a worker's finished
    jobs). Outputs are stored once per distinct content (small ones the caller stored in the last
    OUTPUT_REUSE_SECONDS are not even looked up when it passes the same ``recent_outputs``
    dict each time), and on PostgreSQL the common case of
    all the runs is one statement (each run still gets its own ``run.succeeded`` event); the
    others take ``run_succeed``'s general path one by one. Returns, for each run id, its fresh
    Run or the DomainError ``run_succeed`` raised for it."""
    unique = dict(results)  # one outcome per run
    refs = _output_refs(list(unique.values()), recent=recent_outputs)
    items = [(run_id, ref[:512]) for run_id, ref in zip(unique, refs, strict=True)]
    done: dict[str, Run | DomainError] = {
        run.id: run for run in _succeed_fast_many(items, worker_id=worker_id)
    }
    for run_id, ref in items:
        if run_id not in done:
            try:
                done[run_id] = _succeed(run_id=run_id, output_ref=ref, worker_id=worker_id,
                                        require_holder=False)
            except DomainError as exc:
                done[run_id] = exc
    return done


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    base = settings.TRACEFOUNDRY_RETRY_BASE_SECONDS
    ceiling = min(settings.TRACEFOUNDRY_RETRY_MAX_SECONDS, base * 2 ** max(attempt - 1, 0))
    return timedelta(seconds=random.uniform(0, ceiling))


def run_fail(
    *, run_id: str, error: Any = "", retryable: bool = False, worker_id: str | None = None,
    require_holder: bool = False,
) -> Run:
    """Fail the running attempt: back to the queue when retryable and attempts remain.
    ``require_holder`` as for ``run_succeed``."""
    message = _redacted_error(error)
    with transaction.atomic():
        run = _lock_run(run_id)
        _check_transition(run, "fail")
        _check_holder(run, worker_id, strict=require_holder)
        payload = {"error": message, "retryable": retryable, "attempt": run.attempt}
        if retryable and run.attempt < run.max_attempts and run.cancel_requested_at is None:
            payload["run_after"] = wire.iso(timezone.now() + retry_delay(run.attempt))
            etype, level = lc.RUN_RETRYING, "warn"
        else:
            etype, level = lc.RUN_FAILED, "error"
        event, steps = _append_lifecycle(
            run, etype, payload, steps=_open_steps(run), level=level
        )
        _save_projection(run, steps, [event])
    return run


def run_cancel(
    *, run_id: str, reason: str = "", worker_id: str | None = None, force: bool = False,
    require_holder: bool = False,
) -> Run:
    """Cancel a run. Queued runs cancel at once; a running run is first asked to stop
    (``run.cancel_requested``) and is canceled when its worker acknowledges (cancel again with
    its ``worker_id``) or when ``force`` is set. ``require_holder``: only the run's own worker
    may do this (worker-only API keys acknowledging a cancel request)."""
    reason = get_redactor().text(str(reason))[:1000]
    with transaction.atomic():
        run = _lock_run(run_id)
        _check_transition(run, "cancel")
        if require_holder:
            _check_holder(run, worker_id, strict=True)
        acknowledged = bool(worker_id) and worker_id == run.claimed_by
        if run.state == RunState.RUNNING and not (force or acknowledged):
            if run.cancel_requested_at is not None:
                return run  # already asked; asking again changes nothing
            event, steps = _append_lifecycle(
                run, lc.RUN_CANCEL_REQUESTED, {"reason": reason}, steps={}, level="warn"
            )
        else:
            event, steps = _append_lifecycle(
                run, lc.RUN_CANCELED, {"reason": reason, "error": ""}, steps=_open_steps(run),
                level="warn",
            )
        _save_projection(run, steps, [event])
    return run


def run_link_trace(*, run_id: str, trace_id: str, project_id: int) -> bool:
    """Record the trace of a run (from spans carrying ``tracefoundry.run_id``).

    The first trace wins; runs of other projects are never touched. The link is metadata
    about the run, not part of its lifecycle, so it adds no event to the stream.
    """
    return bool(
        Run.objects.filter(pk=run_id, project_id=project_id, trace_id="").update(trace_id=trace_id)
    )


# --- steps ----------------------------------------------------------------------

def step_create(
    *, run_id: str, name: str, node_ref: str = "", position: int | None = None
) -> Step:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidInput("name must be a non-empty string of at most 256 characters")
    redactor = get_redactor()
    name, node_ref = redactor.text(name)[:256], redactor.text(node_ref)[:256]
    with transaction.atomic():
        run = _lock_run(run_id)
        if run.is_finished:
            raise RunFinished(f"run {run.id} is {run.state}", details={"state": run.state})
        step = Step(
            run=run, name=name, node_ref=node_ref[:256],
            position=run.steps_total if position is None else position,
        )
        step.save(force_insert=True)
        event, _ = _append_lifecycle(
            run, lc.STEP_CREATED,
            {"step_id": step.id, "name": name, "node_ref": step.node_ref,
             "position": step.position},
            steps={step.id: step}, step=step,
        )
        _save_projection(run, [step], [event])
    return step


def step_transition(*, run_id: str, step_id: str, action: str, error: Any = "") -> Step:
    """Start, succeed, fail or skip a step of a run that has not finished."""
    with transaction.atomic():
        run = _lock_run(run_id)
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
            payload["error"] = _redacted_error(error)
        event, changed = _append_lifecycle(
            run, lc.STEP_EVENT_FOR_ACTION[action], payload, steps={step.id: step}, step=step,
            level="error" if action == "fail" else "info",
        )
        _save_projection(run, changed, [event])
    return step


# --- events ----------------------------------------------------------------------

@dataclass
class AppendResult:
    run: Run
    events: list[EventRow] = field(default_factory=list)  # stored, incl. a limit-reached error
    accepted: int = 0
    dropped: int = 0


def _is_late_worker(run: Run, worker_id: str | None, now: datetime) -> bool:
    grace = timedelta(seconds=settings.TRACEFOUNDRY_LATE_EVENT_GRACE_SECONDS)
    return bool(
        worker_id and worker_id == run.claimed_by and run.finished_at
        and now - run.finished_at <= grace
    )


def events_append(
    *,
    run_id: str,
    events: list,
    source: str = "agent",
    worker_id: str | None = None,
    project_id: int | None = None,
    from_json: bool = False,
) -> AppendResult:
    """Append agent events (validated all-or-nothing) to a run's stream.

    ``from_json``: the events were parsed from a JSON body, so they hold JSON types only.
    """
    prepared = prepare_events(events, default_source=source, from_json=from_json,
                              policy=_run_policy(run_id, project_id))
    with transaction.atomic():
        now = timezone.now()
        run = _reserve_fast(run_id=run_id, project_id=project_id, prepared=prepared, now=now)
        if run is not None:
            _check_step_ids(run, prepared)
            first_seq = run.event_count - len(prepared) + 1
            rows = [_event_row(run, p, seq=first_seq + i, now=now, late=False)
                    for i, p in enumerate(prepared)]
            events_insert(rows)
            _save_payload_refs(rows, prepared)
            realtime.broadcast_on_commit(
                run_id=run.id, project_slug=project_slug(run.project_id),
                events=realtime.live_events(rows), run=wire.run_snapshot(run),
            )
            return AppendResult(run=run, events=rows, accepted=len(rows), dropped=0)
        run = _lock_run(run_id, project_id=project_id)
        late = False
        if run.is_finished:
            if not _is_late_worker(run, worker_id, now):
                raise RunFinished(
                    f"run {run.id} is {run.state} and accepts no new events",
                    details={"state": run.state},
                )
            late = True
        _check_step_ids(run, prepared)
        room = max(settings.TRACEFOUNDRY_RUN_EVENT_LIMIT - run.event_count, 0)
        accepted, dropped = prepared[:room], len(prepared) - min(room, len(prepared))
        rows = [_event_row(run, p, seq=run.event_count + i + 1, now=now, late=late)
                for i, p in enumerate(accepted)]
        apply_agent_events(run, rows)
        if dropped:
            if run.dropped_event_count == 0:
                rows.append(_limit_reached_event(run, now))
                apply_event(run, rows[-1], {})
            run.dropped_event_count += dropped
        events_insert(rows)
        _save_payload_refs(rows, accepted)
        # Agent events only move the counters (see projections.apply_event).
        run.save(update_fields=AGENT_EVENT_FIELDS)
        realtime.broadcast_on_commit(
            run_id=run.id, project_slug=project_slug(run.project_id),
            events=realtime.live_events(rows), run=wire.run_snapshot(run),
        )
    return AppendResult(
        run=run, events=rows, accepted=len(accepted), dropped=dropped
    )


_FAST_COLUMNS = (
    "id", "project_id", "state", "attempt", "correlation_id", "event_count", "error_count",
    "dropped_event_count", "steps_total", "steps_completed", "latest_event_at",
    "cancel_requested_at", "started_at", "finished_at", "updated_at",
)


def _reserve_fast(
    *, run_id: str, project_id: int | None, prepared: list[PreparedEvent], now: datetime
) -> Run | None:
    """PostgreSQL's common case in one statement: lock a run that takes events and has room,
    and move its counters exactly as ``projections.apply_agent_events`` would.

    Returns the run's fresh state, or None (finished runs, late events, the event cap, other
    databases) for the general path. It saves the ORM's lock query and save (~1.5 ms of a
    single append).
    """
    if connection.vendor != "postgresql":
        return None
    n = len(prepared)
    sql = (
        "UPDATE runs_run SET event_count = event_count + %s, error_count = error_count + %s, "
        "latest_event_at = GREATEST(COALESCE(latest_event_at, %s), %s), updated_at = %s "
        "WHERE id = %s AND state IN ('queued', 'running') AND event_count + %s <= %s"
    )
    params: list[Any] = [n, sum(p.level == "error" for p in prepared), now, now, now, run_id, n,
                         settings.TRACEFOUNDRY_RUN_EVENT_LIMIT]
    if project_id is not None:
        sql += " AND project_id = %s"
        params.append(project_id)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {', '.join(_FAST_COLUMNS)}", params)
        row = cursor.fetchone()
    return None if row is None else Run(**dict(zip(_FAST_COLUMNS, row, strict=True)))


# The event_id of a run's latest lifecycle event: the causation of the next one, read in the
# same statement that changes the run (``r`` is the run's alias in that statement).
PREVIOUS_LIFECYCLE_SQL = (
    "(SELECT e.event_id FROM runs_runevent e WHERE e.run_id = r.id "
    "AND e.type = ANY(%(lifecycle_types)s) ORDER BY e.id DESC LIMIT 1)"
)
# Inserts the lifecycle event of every run the statement's ``changed`` CTE returns; ``text`` is
# its payload as compact JSON (what jsonio.dumps writes), built by the ``payloads`` CTE.
LIFECYCLE_INSERT_SQL = (
    "INSERT INTO runs_runevent (event_id, run_id, step_id, seq, type, level, source, created_at,"
    " correlation_id, causation_id, payload, payload_bytes, truncated, late) "
    "SELECT gen_random_uuid(), c.id, NULL, c.event_count, %(etype)s, 'info', %(source)s, %(at)s,"
    " c.correlation_id, COALESCE(c.previous_event_id::text, ''), p.text::jsonb,"
    " octet_length(p.text), false, false "
    "FROM changed c JOIN payloads p ON p.run_id = c.id "
    "RETURNING id AS event_pk, event_id AS new_event_id, run_id"
)


def lifecycle_changes(sql: str, params: dict[str, Any]) -> list[Run]:
    """Run one PostgreSQL statement that changes runs and inserts their lifecycle events (CTEs
    ``changed``, ``payloads`` and ``events``); return the changed runs, each with its stored
    event's ``event_pk`` and ``new_event_id``. One round trip: in autocommit it is its own
    transaction, with no BEGIN and COMMIT of their own."""
    params = {**params, "lifecycle_types": list(lc.LIFECYCLE_TYPES)}
    final = ("SELECT c.*, ev.event_pk, ev.new_event_id FROM changed c "
             "JOIN events ev ON ev.run_id = c.id")
    return list(Run.objects.raw(f"{sql} {final}", params))


def lifecycle_row(
    run: Run, etype: str, payload: dict, *, at: datetime, source: str, level: str = "info"
) -> EventRow:
    """The row a fast path stored for ``run`` (``run.event_count`` already counts it)."""
    text = dumps(payload)
    return EventRow(
        run_id=run.id, seq=run.event_count, type=etype, level=level, source=source,
        created_at=at, correlation_id=run.correlation_id,
        causation_id=str(run.previous_event_id) if run.previous_event_id else "",
        payload=payload, payload_json=text, payload_bytes=len(text.encode("utf-8")),
        id=run.event_pk, event_id=run.new_event_id,
    )


def lifecycle_broadcast(run: Run, rows: list[EventRow]) -> None:
    realtime.broadcast_on_commit(
        run_id=run.id, project_slug=project_slug(run.project_id),
        events=realtime.live_events(rows), run=wire.run_snapshot(run),
    )


def _succeed_fast(*, run_id: str, output_ref: str, worker_id: str | None) -> Run | None:
    """PostgreSQL's common case of ``run_succeed`` in one statement (``_succeed_fast_many``)."""
    found = _succeed_fast_many([(run_id, output_ref)], worker_id=worker_id)
    return found[0] if found else None


def _succeed_fast_many(items: list[tuple[str, str]], *, worker_id: str | None) -> list[Run]:
    """PostgreSQL's common case of ``run_succeed`` for ``(run_id, output_ref)`` pairs (distinct
    runs) in one statement: it does what ``projections.apply_event`` does for ``run.succeeded``
    and stores each run's event.

    Only running runs with no open step that the caller may finish are changed and returned;
    the others (and every run on other databases) are left to the general path, which also
    raises the right error. Rows are locked in id order, like ``queue.runs_heartbeat``.
    """
    if connection.vendor != "postgresql" or not items:
        return []
    now = timezone.now()
    holder = " AND (r.claimed_by = '' OR r.claimed_by = %(worker_id)s)" if worker_id else ""
    sql = (
        "WITH input AS (SELECT * FROM unnest(%(ids)s::text[], %(refs)s::text[],"
        " %(texts)s::text[]) AS i(id, output_ref, text)), "
        "locked AS MATERIALIZED (SELECT r.id FROM runs_run r WHERE r.id = ANY(%(ids)s::text[])"
        " ORDER BY r.id FOR UPDATE), "
        "changed AS (UPDATE runs_run r SET state = 'succeeded', finished_at = %(at)s,"
        " output_ref = i.output_ref, event_count = r.event_count + 1,"
        " latest_event_at = GREATEST(COALESCE(r.latest_event_at, %(at)s), %(at)s),"
        " updated_at = %(at)s FROM input i WHERE r.id = i.id"
        " AND r.id IN (SELECT id FROM locked) AND r.state = 'running'"
        f" AND r.steps_completed = r.steps_total{holder}"
        f" RETURNING r.*, {PREVIOUS_LIFECYCLE_SQL} AS previous_event_id), "
        "payloads AS (SELECT id AS run_id, text FROM input), "
        f"events AS ({LIFECYCLE_INSERT_SQL})"
    )
    payloads = {run_id: {"output_ref": ref} for run_id, ref in items}
    texts = [dumps(payloads[run_id]) for run_id, _ in items]
    runs = lifecycle_changes(sql, {
        "at": now, "ids": [run_id for run_id, _ in items], "refs": [ref for _, ref in items],
        "texts": texts, "worker_id": worker_id, "etype": lc.RUN_SUCCEEDED, "source": "server",
    })
    for run in runs:
        lifecycle_broadcast(run, [lifecycle_row(run, lc.RUN_SUCCEEDED, payloads[run.id], at=now,
                                                source="server")])
    return runs


def _run_policy(run_id: str, project_id: int | None) -> str | None:
    """The redaction policy of the run's project, when its project overrides the default.

    Most installs override nothing, and then this costs no query at all.
    """
    overrides = project_policy_overrides()
    if not overrides:
        return None
    if project_id is None:
        project_id = Run.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    return overrides.get(project_id)


def _check_step_ids(run: Run, prepared: list[PreparedEvent]) -> None:
    wanted = {p.step_id for p in prepared if p.step_id}
    if not wanted:
        return
    found = set(Step.objects.filter(run_id=run.id, id__in=wanted).values_list("id", flat=True))
    missing = sorted(wanted - found)
    if missing:
        raise InvalidInput("unknown step_id for this run", details={"step_ids": missing})


def _event_row(run: Run, p: PreparedEvent, *, seq: int, now: datetime, late: bool) -> EventRow:
    return EventRow(
        run_id=run.id, step_id=p.step_id, seq=seq, type=p.type, level=p.level, source=p.source,
        created_at=now, correlation_id=p.correlation_id or run.correlation_id,
        causation_id=p.causation_id, payload=p.payload, payload_json=p.payload_json,
        payload_bytes=p.payload_bytes, truncated=p.truncated, late=late,
    )


def _limit_reached_event(run: Run, now: datetime) -> EventRow:
    limit = settings.TRACEFOUNDRY_RUN_EVENT_LIMIT
    payload = {"message": f"run reached its limit of {limit} events; further events are dropped",
               "limit": limit}
    text = dumps(payload)
    return EventRow(
        run_id=run.id, seq=run.event_count + 1, type="error", level="error", source="server",
        created_at=now, correlation_id=run.correlation_id, payload=payload, payload_json=text,
        payload_bytes=len(text.encode("utf-8")),
    )


def _save_payload_refs(rows: list[EventRow], prepared: list[PreparedEvent]) -> None:
    refs = [
        PayloadRef(blob_id=b.sha256, run_event_id=row.id, role=b.role, json_path=b.json_path[:512])
        for row, p in zip(rows, prepared, strict=False)
        for b in p.blobs
    ]
    if refs:
        PayloadRef.objects.bulk_create(refs)


def event_append(
    *,
    run_id: str,
    type: str,
    payload: Any = None,
    level: str | None = None,
    source: str = "server",
    step_id: str | None = None,
    correlation_id: str | None = None,
    worker_id: str | None = None,
) -> EventRow | None:
    """Append one event from Python code; raises on bad input like the API does."""
    envelope: dict[str, Any] = {"type": type, "payload": payload if payload is not None else {}}
    if level:
        envelope["level"] = level
    if step_id:
        envelope["step_id"] = step_id
    if correlation_id:
        envelope["correlation_id"] = correlation_id
    result = events_append(run_id=run_id, events=[envelope], source=source, worker_id=worker_id)
    if not result.accepted:
        return None  # dropped by the per-run event limit
    return result.events[0]


_failures_lock = threading.Lock()
best_effort_failures = 0


def event_append_safe(**kwargs: Any) -> EventRow | None:
    """``event_append`` for instrumentation call sites: never raises into the caller.

    Tracing must not crash the work it observes: failures are logged and counted instead.
    """
    global best_effort_failures
    try:
        return event_append(**kwargs)
    except Exception:
        with _failures_lock:
            best_effort_failures += 1
        log.warning("best-effort event append failed for run %s", kwargs.get("run_id"),
                    exc_info=True)
        return None


# --- projections ----------------------------------------------------------------------

def projections_rebuild(*, run_ids: list[str] | None = None) -> int:
    """Recompute every Run/Step projection from the event stream alone; returns runs rebuilt."""
    ids = run_ids if run_ids is not None else list(Run.objects.values_list("id", flat=True))
    for run_id in ids:
        with transaction.atomic():
            run = _lock_run(run_id)
            all_steps = {s.id: s for s in Step.objects.filter(run_id=run.id)}
            reset_run(run)
            for step in all_steps.values():
                reset_step(step)
            # A step exists for the projector from its step.created event on, exactly as live.
            existing: dict[str, Step] = {}
            for event in RunEvent.objects.filter(run_id=run.id).order_by("id").iterator(2000):
                if event.type == lc.STEP_CREATED and event.step_id in all_steps:
                    existing[event.step_id] = all_steps[event.step_id]
                apply_event(run, event, existing)
            run.save(update_fields=RUN_PROJECTED_FIELDS)
            Step.objects.bulk_update(list(all_steps.values()), STEP_PROJECTED_FIELDS,
                                     batch_size=500)
    return len(ids)
