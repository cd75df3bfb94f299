"""The ledger primitive every run write goes through: lock a run, check a transition and its
holder, append lifecycle events, save the projection (and rebuild it from the events).

Lock order, for every writer (runs, steps, events, queue):

1. A run's row lock (``lock_run``: ``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE
   transaction holds the database write lock already) is taken before anything else of that run
   is read or written, and held until commit: appends to one run are serialised, so ``seq`` has no
   gaps and the projection is never written from a stale read.
2. Statements that change many runs at once lock them in one order, or skip what they cannot
   lock: the claim takes due runs oldest first with ``SKIP LOCKED``; the batch succeed and batch
   heartbeat lock in run id order; the reaper locks one stalled run at a time (``SKIP LOCKED``
   on PostgreSQL). So two of them never wait on each other in a cycle.
3. Step rows are changed only under their run's lock; payload blobs are stored before the
   transaction opens (or under it, before the rows that refer to them), never after.
4. Live broadcasts are scheduled with ``transaction.on_commit``: a client never sees a change
   that was rolled back.

On PostgreSQL the hot paths (claim, append, succeed) do steps 1-2 and the projection in one
statement each; their SQL is in ``runs/projection_sql.py`` next to ``runs/projections.py``, and
tests/runs/test_projection_parity.py checks each against ``rebuild_projections``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from payloads.redaction import get_redactor
from runs import lifecycle as lc
from runs import realtime, wire
from runs.event_store import EventRow
from runs.models import Run, RunEvent, Step, StepState
from runs.projections import (
    RUN_PROJECTED_FIELDS,
    STEP_PROJECTED_FIELDS,
    apply_event,
    reset_run,
    reset_step,
)
from runs.selectors import project_slug
from runs.wakeup import QUEUE_CHANNEL
from tracefoundry.errors import (
    InvalidTransition,
    NotFound,
)
from tracefoundry.jsonio import dumps, json_safe

ERROR_LIMIT = 16 * 1024


def lock_run(run_id: str, *, project_id: int | None = None) -> Run:
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


def redacted_error(error: Any) -> str:
    text = error if isinstance(error, str) else dumps(json_safe(error))
    text = get_redactor().text(text)
    if len(text.encode("utf-8")) > ERROR_LIMIT:
        text = text.encode("utf-8")[: ERROR_LIMIT - 16].decode("utf-8", "ignore") + "\n…[truncated]"
    return text


def previous_lifecycle_event_id(run: Run) -> str:
    last = (
        RunEvent.objects.filter(run_id=run.id, type__in=lc.LIFECYCLE_TYPES)
        .order_by("-id")
        .values_list("event_id", flat=True)
        .first()
    )
    return str(last) if last else ""


def append_lifecycle(
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
        causation_id=previous_lifecycle_event_id(run),
        payload=payload,
        payload_bytes=len(dumps(payload).encode("utf-8")),
    )
    changed = apply_event(run, event, steps)
    event.save(force_insert=True)
    return event, changed


def save_projection(run: Run, steps: list[Step], events: list[RunEvent]) -> None:
    run.save(update_fields=RUN_PROJECTED_FIELDS)
    for step in steps:
        step.save(update_fields=STEP_PROJECTED_FIELDS)
    realtime.broadcast_on_commit(
        run_id=run.id,
        project_slug=project_slug(project_id=run.project_id),
        events=realtime.live_events(events),
        run=wire.run_snapshot(run),
        steps=[wire.step_dict(step) for step in steps],
    )


def open_steps(run: Run) -> dict[str, Step]:
    return {
        s.id: s
        for s in Step.objects.filter(
            run_id=run.id, state__in=(StepState.PENDING, StepState.RUNNING)
        )
    }


def check_transition(run: Run, action: str) -> None:
    allowed_from, _ = lc.RUN_TRANSITIONS[action]
    if run.state not in allowed_from:
        raise InvalidTransition(entity="run", current_state=run.state, action=action)


def check_holder(run: Run, worker_id: str | None, *, strict: bool = False) -> None:
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


# What a lifecycle broadcast reads of a changed run (wire.run_snapshot, lifecycle_row): the
# columns a caller that needs no more than that asks ``lifecycle_changes`` for.
SNAPSHOT_COLUMNS = (
    "id", "project_id", "state", "attempt", "correlation_id", "steps_total", "steps_completed",
    "event_count", "error_count", "latest_event_at", "cancel_requested_at", "started_at",
    "finished_at", "previous_event_id",
)


def lifecycle_changes(
    sql: str, params: dict[str, Any], *, columns: tuple[str, ...] | None = None
) -> list[Run]:
    """Run one PostgreSQL statement that changes runs and inserts their lifecycle events (CTEs
    ``changed``, ``payloads`` and ``events``); return the changed runs, each with its stored
    event's ``event_pk`` and ``new_event_id``. One round trip: in autocommit it is its own
    transaction, with no BEGIN and COMMIT of their own. ``columns``: load only these (the
    others are deferred: reading one is a query), e.g. SNAPSHOT_COLUMNS."""
    params = {**params, "lifecycle_types": list(lc.LIFECYCLE_TYPES)}
    selected = ", ".join(f"c.{name}" for name in columns) if columns else "c.*"
    final = (f"SELECT {selected}, ev.event_pk, ev.new_event_id FROM changed c "
             "JOIN events ev ON ev.run_id = c.id")
    return list(Run.objects.raw(f"{sql} {final}", params))


def insert_created(run: Run, event: RunEvent, *, wake_kind: str | None) -> None:
    """PostgreSQL: insert a new ``run`` (its projection already applied) and its first
    lifecycle ``event`` in one statement that also NOTIFYs the workers of ``wake_kind`` (at
    commit, as ``workers_wake``); sets ``event.id`` and marks both as saved."""
    run_sql, run_params = _insert_sql(run)
    event_sql, event_params = _insert_sql(event)
    params = [*run_params, *event_params]
    notify = ""
    if wake_kind is not None:
        notify = ", pg_notify(%s, %s)"
        params += [QUEUE_CHANNEL, wake_kind[:128]]
    sql = (f"WITH new_run AS ({run_sql} RETURNING 1), new_event AS ({event_sql} RETURNING id) "
           f"SELECT id{notify} FROM new_event")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        event.id = cursor.fetchone()[0]
    for obj in (run, event):
        obj._state.adding = False
        obj._state.db = connection.alias


# Per model: the INSERT that Django compiles for one of its rows, and the fields it binds.
_INSERTS: dict[type, tuple[str, list]] = {}


def _insert_sql(obj: Run | RunEvent) -> tuple[str, list]:
    """Django's own INSERT of ``obj`` (every concrete field but an auto id), not run. The
    statement is compiled once per model; the values are prepared as the compiler does."""
    model = type(obj)
    if model not in _INSERTS:
        meta = model._meta
        fields = [f for f in meta.concrete_fields if f is not meta.auto_field]
        query = InsertQuery(model)
        query.insert_values(fields, [obj])
        [(sql, _)] = query.get_compiler(connection=connection).as_sql()
        _INSERTS[model] = (sql, fields)
    sql, fields = _INSERTS[model]
    return sql, [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


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
        run_id=run.id, project_slug=project_slug(project_id=run.project_id),
        events=realtime.live_events(rows), run=wire.run_snapshot(run),
    )


def projections_rebuild(*, run_ids: list[str] | None = None) -> int:
    """Recompute every Run/Step projection from the event stream alone; returns runs rebuilt."""
    ids = run_ids if run_ids is not None else list(Run.objects.values_list("id", flat=True))
    for run_id in ids:
        with transaction.atomic():
            run = lock_run(run_id)
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
