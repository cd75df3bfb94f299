"""Run lifecycle services: enqueue, start, succeed (one or a batch), fail, cancel, link a trace.

Each appends the lifecycle event describing the change and updates the projection in the same
transaction through the ledger primitive (``runs.services.ledger``), then schedules the live
broadcast for after commit.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from payloads.redaction import get_redactor
from payloads.references import project_refers
from payloads.store import PayloadBatch
from runs import lifecycle as lc
from runs import wire
from runs.models import Project, Run, RunEvent, RunState
from runs.projection_sql import succeed_sql
from runs.projections import apply_event
from runs.services.ledger import (
    SNAPSHOT_COLUMNS,
    append_lifecycle,
    check_holder,
    check_transition,
    insert_created,
    lifecycle_broadcast,
    lifecycle_changes,
    lifecycle_row,
    lock_run,
    open_steps,
    redacted_error,
    save_projection,
)
from runs.wakeup import workers_wake
from tracefoundry.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
)
from tracefoundry.jsonio import dumps, json_safe

KIND_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,127}$")


MAX_ATTEMPTS_LIMIT = 100


def project_create(*, slug: str, name: str = "") -> Project:
    return Project.objects.create(slug=slug, name=name or slug)


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
    created = {"kind": kind, "name": name, "max_attempts": max_attempts,
               "run_after": wire.iso(run_after)}
    due = run_after is None or run_after <= now
    try:
        run = Run(
            project=project, kind=kind, name=name, input=clean_input,
            idempotency_key=idempotency_key or None, request_fingerprint=fingerprint,
            max_attempts=max_attempts, run_after=run_after,
            correlation_id=correlation_id or uuid.uuid4().hex, trace_id=trace_id,
            created_at=now, updated_at=now,
        )
        if connection.vendor == "postgresql":
            _enqueue_postgresql(run, created, source=source, wake=due)
        else:
            with transaction.atomic():
                run.save(force_insert=True)
                event, _ = append_lifecycle(run, lc.RUN_CREATED, created, steps={},
                                            source=source)
                save_projection(run, [], [event])
                if due:
                    workers_wake(kind=kind)
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert; its run is the answer.
        existing = Run.objects.get(project=project, idempotency_key=idempotency_key)
        return _idempotent_match(existing, fingerprint)
    return run, True


def _enqueue_postgresql(run: Run, payload: dict, *, source: str, wake: bool) -> None:
    """Store a new run already projected through its ``run.created`` event, the event, and
    the workers' wake-up in one statement (``insert_created``): outside a transaction it is its
    own, so the run is claimable one round trip after its event is timestamped."""
    event = RunEvent(
        run=run, seq=1, type=lc.RUN_CREATED, level="info", source=source,
        created_at=run.created_at, correlation_id=run.correlation_id,
        causation_id="",  # a new run has no earlier lifecycle event
        payload=payload, payload_bytes=len(dumps(payload).encode("utf-8")),
    )
    apply_event(run, event, {})
    wake_kind = run.kind if wake else None
    if connection.in_atomic_block:
        # A savepoint, so that a lost idempotency race leaves the caller's transaction usable.
        with transaction.atomic():
            insert_created(run, event, wake_kind=wake_kind)
    else:
        insert_created(run, event, wake_kind=wake_kind)
    lifecycle_broadcast(run, [event])


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
        run = lock_run(run_id)
        check_transition(run, "start")
        event, _ = append_lifecycle(
            run, lc.RUN_STARTED, {"attempt": run.attempt + 1, "worker_id": worker_id}, steps={}
        )
        save_projection(run, [], [event])
    return run


def _outcomes(outputs: list[Any]) -> list[dict]:
    """The ``run.succeeded`` payload of each job output: redacted JSON inline (``output``) up to
    TRACEFOUNDRY_INLINE_STRING_LIMIT encoded bytes, as event payloads are; a larger one stored as
    a payload blob (``output_ref``), all of a batch's blobs together; none: an empty ref."""
    redactor = get_redactor()
    limit = settings.TRACEFOUNDRY_INLINE_STRING_LIMIT
    batch = PayloadBatch()
    outcomes = []
    for output in outputs:
        if output is None:
            outcomes.append({"output_ref": ""})
            continue
        value = redactor.value(json_safe(output))
        data = dumps(value).encode("utf-8")
        if len(data) <= limit:
            outcomes.append({"output": value})
        else:
            ref = batch.add(data=data, content_type="application/json",
                            redaction_mode=redactor.policy).ref
            outcomes.append({"output_ref": ref})
    batch.store()
    return outcomes


def run_succeed(
    *, run_id: str, output: Any = None, output_ref: str = "", worker_id: str | None = None,
    require_holder: bool = False,
) -> Run:
    """Finish the running attempt. ``require_holder``: only the worker holding the run may
    (worker-only API keys), so ``worker_id`` must name it.

    ``output`` is kept on the run (``_outcomes``). ``output_ref`` (instead of ``output``) must be
    ``sha256:<64 hex>`` naming a blob the run's project already refers to: a ref is no way to
    reach another project's payloads."""
    if output is not None:
        (outcome,) = _outcomes([output])
    else:
        outcome = {"output_ref": _checked_output_ref(run_id, output_ref) if output_ref else ""}
    return _succeed(run_id=run_id, outcome=outcome, worker_id=worker_id,
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
    if not project_refers(sha256=ref.removeprefix("sha256:"), project_id=project_id):
        raise InvalidInput("output_ref must name a payload this project already refers to",
                           details={"field": "output_ref"})
    return ref


def _succeed(*, run_id: str, outcome: dict, worker_id: str | None, require_holder: bool) -> Run:
    """``run_succeed`` with an outcome (``_outcomes``) the server made or checked."""
    if not require_holder:  # the one-statement path lets a run held by nobody pass
        fast = _succeed_fast_many([(run_id, outcome)], worker_id=worker_id)
        if fast:
            return fast[0]
    with transaction.atomic():
        run = lock_run(run_id)
        check_transition(run, "succeed")
        check_holder(run, worker_id, strict=require_holder)
        event, steps = append_lifecycle(run, lc.RUN_SUCCEEDED, outcome, steps=open_steps(run))
        save_projection(run, steps, [event])
    return run


def run_succeed_batch(
    *, results: list[tuple[str, Any]], worker_id: str | None = None,
) -> dict[str, Run | DomainError]:
    """``run_succeed`` for many runs at once (``(run_id, output)`` pairs: a worker's finished
    jobs). Large outputs are stored together, once per distinct content; on PostgreSQL the
    common case of all the runs is one statement (each run still gets its own ``run.succeeded``
    event); the others take ``run_succeed``'s general path one by one. Returns, for each run
    id, its fresh Run or the DomainError ``run_succeed`` raised for it."""
    unique = dict(results)  # one outcome per run
    items = list(zip(unique, _outcomes(list(unique.values())), strict=True))
    # A worker only needs to know which runs succeeded: the rows are not loaded whole.
    done: dict[str, Run | DomainError] = {
        run.id: run for run in _succeed_fast_many(items, worker_id=worker_id,
                                                  columns=SNAPSHOT_COLUMNS)
    }
    for run_id, outcome in items:
        if run_id not in done:
            try:
                done[run_id] = _succeed(run_id=run_id, outcome=outcome, worker_id=worker_id,
                                        require_holder=False)
            except DomainError as exc:
                done[run_id] = exc
    return done


def _succeed_fast_many(
    items: list[tuple[str, dict]], *, worker_id: str | None,
    columns: tuple[str, ...] | None = None,
) -> list[Run]:
    """PostgreSQL's common case of ``run_succeed`` for ``(run_id, outcome)`` pairs (distinct
    runs) in one statement: it does what ``projections.apply_event`` does for ``run.succeeded``
    and stores each run's event.

    Only running runs with no open step that the caller may finish are changed and returned;
    the others (and every run on other databases) are left to the general path, which also
    raises the right error. Rows are locked in id order (see the lock order in ``ledger``).
    """
    if connection.vendor != "postgresql" or not items:
        return []
    now = timezone.now()
    sql = succeed_sql(holder_only=bool(worker_id))
    outcomes = dict(items)
    runs = lifecycle_changes(sql, {
        "at": now, "ids": [run_id for run_id, _ in items],
        "texts": [dumps(outcome) for _, outcome in items],
        "worker_id": worker_id, "etype": lc.RUN_SUCCEEDED, "source": "server",
    }, columns=columns)
    for run in runs:
        lifecycle_broadcast(run, [lifecycle_row(run, lc.RUN_SUCCEEDED, outcomes[run.id], at=now,
                                                source="server")])
    return runs


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
    message = redacted_error(error)
    with transaction.atomic():
        run = lock_run(run_id)
        check_transition(run, "fail")
        check_holder(run, worker_id, strict=require_holder)
        payload = {"error": message, "retryable": retryable, "attempt": run.attempt}
        if retryable and run.attempt < run.max_attempts and run.cancel_requested_at is None:
            payload["run_after"] = wire.iso(timezone.now() + retry_delay(run.attempt))
            etype, level = lc.RUN_RETRYING, "warn"
        else:
            etype, level = lc.RUN_FAILED, "error"
        event, steps = append_lifecycle(
            run, etype, payload, steps=open_steps(run), level=level
        )
        save_projection(run, steps, [event])
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
        run = lock_run(run_id)
        check_transition(run, "cancel")
        if require_holder:
            check_holder(run, worker_id, strict=True)
        acknowledged = bool(worker_id) and worker_id == run.claimed_by
        if run.state == RunState.RUNNING and not (force or acknowledged):
            if run.cancel_requested_at is not None:
                return run  # already asked; asking again changes nothing
            event, steps = append_lifecycle(
                run, lc.RUN_CANCEL_REQUESTED, {"reason": reason}, steps={}, level="warn"
            )
        else:
            event, steps = append_lifecycle(
                run, lc.RUN_CANCELED, {"reason": reason, "error": ""}, steps=open_steps(run),
                level="warn",
            )
        save_projection(run, steps, [event])
    return run


def run_link_trace(*, run_id: str, trace_id: str, project_id: int) -> bool:
    """Record the trace of a run (from spans carrying ``tracefoundry.run_id``).

    The first trace wins; runs of other projects are never touched. The link is metadata
    about the run, not part of its lifecycle, so it adds no event to the stream.
    """
    return bool(
        Run.objects.filter(pk=run_id, project_id=project_id, trace_id="").update(trace_id=trace_id)
    )
