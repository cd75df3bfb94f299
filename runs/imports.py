"""Importing a run from a bundle: a new run, under a new id, that keeps the original's events in
their order and records the id it was imported from (``Run.imported_from``).

The events go through the same preparation as live appends (``envelope.prepare_event``:
redaction under the receiving project's policy, large strings into the payload store, the
payload cap), and the run and its steps are projected from them by the projector
(``projections.apply_event``), exactly as ``projections_rebuild`` does: the imported run's
state, attempt, timings and counters are whatever its events say. A run that had not finished
when it was exported is closed with one more event, ``run.canceled`` (source ``server``): an
imported run is a record, and no worker here may claim it.

Ids are new (run, steps, event ids); what pointed at the old ones is rewritten: a step event's
``step_id`` (column and payload), ``causation_id`` when it names an event of the bundle.
Payload references (``payload_ref`` in truncation markers, ``output_ref``) are rewritten with
``payload_refs`` (a bundle's blob hash → the hash it was stored under here), and a PayloadRef
row is written for each, so the blobs resolve for the project's keys and retention keeps them.
Importing the same original run into the same project twice returns the first import.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from payloads.models import PayloadRef
from payloads.redaction import get_redactor
from payloads.store import PayloadBatch
from runs import lifecycle as lc
from runs import realtime, wire
from runs.envelope import prepare_event
from runs.event_store import EventRow, events_insert
from runs.ids import new_step_id
from runs.models import Project, Run, Step
from runs.projections import (
    RUN_PROJECTED_FIELDS,
    STEP_PROJECTED_FIELDS,
    apply_event,
    reset_run,
)
from runs.selectors import project_slug
from runs.services import KIND_RE, MAX_ATTEMPTS_LIMIT
from tracefoundry.errors import InvalidInput
from tracefoundry.jsonio import dumps, json_safe

REF_PREFIX = "sha256:"
NOT_FINISHED_REASON = ("imported from a bundle before it finished: the run is a record here, "
                       "and no worker runs it")
_ROLE_BY_TYPE = {"llm_request": "prompt", "llm_response": "completion", "tool_call": "tool_args",
                 "tool_result": "tool_result", "patch_proposed": "diff", "patch_applied": "diff",
                 "log": "log"}


@dataclass(frozen=True)
class RunImport:
    run: Run
    created: bool  # False: this project had imported the run already (nothing was written)
    events: int  # events stored (the bundle's, plus a closing run.canceled when it had one)
    closed: bool  # the run had not finished: a run.canceled event closed it


@dataclass(frozen=True)
class _Event:
    """One event of the bundle, checked."""

    seq: int
    type: str
    level: str
    source: str
    created_at: datetime
    step_id: str | None
    event_id: str
    correlation_id: str
    causation_id: str
    payload: dict
    truncated: bool
    late: bool


def run_import(
    *, project: Project, run: dict, events: list, trace_id: str = "",
    payload_refs: Mapping[str, str] | None = None, batch: PayloadBatch | None = None,
) -> RunImport:
    """Import ``run`` (a bundle's ``run.json``) and ``events`` (its ``run_events.jsonl``, any
    order: they are put in ``seq`` order) into ``project``; see the module docstring.

    Raises InvalidInput, before anything is written, when the run or an event is malformed.
    ``batch``: blobs the caller has added (the bundle's, named in ``payload_refs``), stored
    with the events' own once the input has passed its checks; the caller stores it when the
    run was imported already.
    """
    original, fields = _checked_run(run, project)
    run_trace = fields.pop("trace_id")
    checked = _checked_events(events)
    existing = run_imported(project=project, original_id=original)
    if existing is not None:
        return RunImport(run=existing, created=False, events=0, closed=False)
    refs = dict(payload_refs or {})
    policy = project.redaction_policy or None
    steps = {e.step_id: new_step_id() for e in checked
             if e.type == lc.STEP_CREATED and e.step_id}
    event_ids = {e.event_id: str(uuid.uuid4()) for e in checked}
    batch = batch if batch is not None else PayloadBatch()
    prepared = [_prepare(e, steps=steps, event_ids=event_ids, refs=refs, policy=policy,
                         batch=batch) for e in checked]
    batch.store()  # before the rows that refer to the blobs commit (payloads.store)
    try:
        with transaction.atomic():
            return _write(project, original, fields, trace_id or run_trace, checked, prepared,
                          steps, refs)
    except IntegrityError:
        # A concurrent import of the same run won the (project, imported_from) constraint.
        existing = run_imported(project=project, original_id=original)
        if existing is None:
            raise
        return RunImport(run=existing, created=False, events=0, closed=False)


def run_import_check(*, project: Project, run: Any, events: Any) -> None:
    """The checks of ``run_import`` alone (InvalidInput), for a caller that must know the
    input is sound before it stores anything else."""
    _checked_run(run, project)
    _checked_events(events)


def run_payload_refs(*, run: Any, events: Any) -> set[str]:
    """The hashes of the blobs a bundle's run and events refer to (``payload_ref`` of
    truncation markers, ``output_ref``): what an import must store for them."""
    found: set[str] = set()
    stack: list[Any] = [run, events]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("payload_ref", "output_ref") and isinstance(value, str) \
                        and value.startswith(REF_PREFIX):
                    found.add(value[len(REF_PREFIX):])
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def run_imported(*, project: Project, original_id: str) -> Run | None:
    """The run ``project`` imported from ``original_id``, if it did, or the original itself
    when it is this project's (a bundle brought back to where it was exported from)."""
    return (Run.objects.filter(project=project, imported_from=original_id).first()
            or Run.objects.filter(project=project, pk=original_id).first())


# --- checking the input -----------------------------------------------------------------------

def _bad(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, details=details)


def _text(value: Any, name: str, *, limit: int, where: dict) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise _bad(f"{name} must be a string without NUL", field=name, **where)
    return value[:limit]


def _when(value: Any, name: str, where: dict) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise _bad(f"{name} must be an ISO-8601 date-time", field=name, **where)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _checked_run(run: Any, project: Project) -> tuple[str, dict]:
    """The original id and the creation attributes of the new run, redacted."""
    if not isinstance(run, dict):
        raise _bad("run.json must be a JSON object")
    where = {"entry": "run.json"}
    original = _text(run.get("id"), "id", limit=41, where=where)
    if not original or len(original) > 40:
        raise _bad("run.json: id must be a run id of at most 40 characters", field="id", **where)
    kind = run.get("kind")
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise _bad("run.json: kind must match ^[a-z][a-z0-9_.:-]{0,127}$", field="kind", **where)
    max_attempts = run.get("max_attempts", 1)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) \
            or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise _bad(f"run.json: max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}",
                   field="max_attempts", **where)
    redactor = get_redactor(project.redaction_policy or None)
    if redactor.text(kind) != kind:
        raise _bad("run.json: kind must not contain a credential", field="kind", **where)
    trace_id = _text(run.get("trace_id"), "trace_id", limit=32, where=where)
    return original, {
        "kind": kind,
        "name": redactor.text(_text(run.get("name"), "name", limit=1024, where=where))[:256],
        "input": redactor.value(json_safe(run.get("input") or {})),
        "max_attempts": max_attempts,
        "correlation_id": redactor.text(
            _text(run.get("correlation_id"), "correlation_id", limit=256, where=where))[:64]
        or uuid.uuid4().hex,
        "created_at": _when(run.get("created_at"), "created_at", where),
        "trace_id": trace_id,
    }


def _checked_events(events: Any) -> list[_Event]:
    if not isinstance(events, list):
        raise _bad("run_events.jsonl must hold JSON objects, one a line")
    out = [_checked_event(raw, i) for i, raw in enumerate(events)]
    out.sort(key=lambda e: e.seq)
    for before, after in pairwise(out):
        if before.seq == after.seq:
            raise _bad(f"run_events.jsonl: two events have seq {after.seq}", field="seq",
                       entry="run_events.jsonl")
    return out


def _checked_event(raw: Any, index: int) -> _Event:
    where = {"entry": "run_events.jsonl", "index": index}
    if not isinstance(raw, dict):
        raise _bad(f"run_events.jsonl line {index + 1} must be a JSON object", **where)
    etype, level, source = raw.get("type"), raw.get("level", "info"), raw.get("source", "agent")
    if not isinstance(etype, str) or not lc.CUSTOM_TYPE_RE.match(etype):
        raise _bad(f"event {index}: type must match ^[a-z][a-z0-9_.]{{0,63}}$", field="type",
                   **where)
    if level not in lc.LEVELS:
        raise _bad(f"event {index}: level must be one of {', '.join(sorted(lc.LEVELS))}",
                   field="level", **where)
    if not isinstance(source, str) or not lc.SOURCE_RE.match(source):
        raise _bad(f"event {index}: source must match ^[a-z][a-z0-9_.-]{{0,31}}$",
                   field="source", **where)
    for name, value in (("type", etype), ("source", source)):  # names, never credentials
        if get_redactor().text(value) != value:
            raise _bad(f"event {index}: {name} must not contain a credential", field=name,
                       **where)
    seq = raw.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise _bad(f"event {index}: seq must be a positive integer", field="seq", **where)
    payload = raw.get("payload", {})
    return _Event(
        seq=seq, type=etype, level=level, source=source,
        created_at=_when(raw.get("created_at"), "created_at", where),
        step_id=_text(raw.get("step_id"), "step_id", limit=40, where=where) or None,
        event_id=_text(raw.get("event_id"), "event_id", limit=64, where=where),
        correlation_id=_text(raw.get("correlation_id"), "correlation_id", limit=256, where=where),
        causation_id=_text(raw.get("causation_id"), "causation_id", limit=64, where=where),
        payload=payload if isinstance(payload, dict) else {"value": payload},
        truncated=raw.get("truncated") is True, late=raw.get("late") is True,
    )


# --- preparing the events ---------------------------------------------------------------------

def _rewrite_refs(value: Any, refs: dict[str, str]) -> Any:
    """``value`` with every ``payload_ref``/``output_ref`` the bundle restored pointing at the
    blob it was stored as here."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("payload_ref", "output_ref") and isinstance(item, str) \
                    and item.startswith(REF_PREFIX):
                out[key] = REF_PREFIX + refs.get(item[len(REF_PREFIX):], item[len(REF_PREFIX):])
            else:
                out[key] = _rewrite_refs(item, refs)
        return out
    if isinstance(value, list):
        return [_rewrite_refs(item, refs) for item in value]
    return value


def _restored_refs(value: Any, path: str, restored: set[str]) -> list[tuple[str, str]]:
    """(sha256, json path) of every truncation marker in ``value`` naming a restored blob."""
    found = []
    if isinstance(value, dict):
        ref = value.get("payload_ref")
        if value.get("truncated") is True and isinstance(ref, str) \
                and ref.removeprefix(REF_PREFIX) in restored:
            found.append((ref.removeprefix(REF_PREFIX), path))
        for key, item in value.items():
            found += _restored_refs(item, f"{path}/{key}", restored)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _restored_refs(item, f"{path}/{i}", restored)
    return found


def _prepare(event: _Event, *, steps: dict[str, str], event_ids: dict[str, str],
             refs: dict[str, str], policy: str | None, batch: PayloadBatch):
    payload = _rewrite_refs(event.payload, refs)
    step_id = steps.get(event.step_id) if event.step_id else None
    if isinstance(payload.get("step_id"), str) and payload["step_id"] in steps:
        payload["step_id"] = steps[payload["step_id"]]
    fields = {
        "type": event.type, "level": event.level, "source": event.source, "step_id": step_id,
        "correlation_id": event.correlation_id,
        "causation_id": event_ids.get(event.causation_id, event.causation_id),
        "payload": payload,
    }
    return prepare_event(fields, from_json=True, policy=policy, batch=batch)


# --- writing ----------------------------------------------------------------------------------

def _write(project: Project, original: str, fields: dict, trace_id: str, checked: list[_Event],
           prepared: list, steps: dict[str, str], refs: dict[str, str]) -> RunImport:
    run = Run(project=project, imported_from=original, trace_id=trace_id,
              updated_at=fields["created_at"], **fields)
    run.save(force_insert=True)
    step_rows = _steps(run, checked, prepared, steps)
    rows = [
        EventRow(run_id=run.id, step_id=p.step_id, seq=i, type=p.type, level=p.level,
                 source=p.source, created_at=e.created_at, correlation_id=p.correlation_id,
                 causation_id=p.causation_id, payload=p.payload, payload_json=p.payload_json,
                 payload_bytes=p.payload_bytes, truncated=p.truncated or e.truncated,
                 late=e.late)
        for i, (e, p) in enumerate(zip(checked, prepared, strict=True), start=1)
    ]
    # The projection, as projections_rebuild computes it: a step exists for the projector
    # from its step.created event on.
    reset_run(run)
    existing: dict[str, Step] = {}
    for row in rows:
        if row.type == lc.STEP_CREATED and row.step_id in step_rows:
            existing[row.step_id] = step_rows[row.step_id]
        apply_event(run, row, existing)
    closed = not run.is_finished
    if closed:
        rows.append(_closing_event(run, len(rows) + 1))
        apply_event(run, rows[-1], existing)
    events_insert(rows)
    restored = set(refs.values())
    PayloadRef.objects.bulk_create([
        PayloadRef(blob_id=sha256, run_event_id=row.id, role=role, json_path=path[:512])
        for row, p in zip(rows, prepared, strict=False)
        for sha256, role, path in _event_blobs(row, p, restored)
    ])
    run.save(update_fields=RUN_PROJECTED_FIELDS)
    Step.objects.bulk_update(list(step_rows.values()), STEP_PROJECTED_FIELDS, batch_size=500)
    realtime.broadcast_on_commit(
        run_id=run.id, project_slug=project_slug(project_id=project.pk),
        events=realtime.live_events(rows),
        run=wire.run_snapshot(run), steps=[wire.step_dict(s) for s in step_rows.values()],
    )
    return RunImport(run=run, created=True, events=len(rows), closed=closed)


def _steps(run: Run, checked: list[_Event], prepared: list,
           steps: dict[str, str]) -> dict[str, Step]:
    """The run's steps (new ids), created from their step.created events."""
    rows: dict[str, Step] = {}
    for event, p in zip(checked, prepared, strict=True):
        if event.type != lc.STEP_CREATED or p.step_id is None or p.step_id in rows:
            continue
        name = p.payload.get("name")
        rows[p.step_id] = Step(
            id=p.step_id, run=run, name=(name if isinstance(name, str) and name else "step")[:256],
            created_at=event.created_at,
        )
    Step.objects.bulk_create(list(rows.values()))
    return rows


def _event_blobs(row: EventRow, p, restored: set[str]) -> list[tuple[str, str, str]]:
    """(sha256, role, json path) of the blobs an event refers to: those its preparation stored
    and the restored bundle blobs its markers name."""
    role = _ROLE_BY_TYPE.get(row.type, "event")
    found = [(b.sha256, b.role, b.json_path) for b in p.blobs]
    seen = {b.sha256 for b in p.blobs}
    for sha256, path in _restored_refs(row.payload, "", restored):
        if sha256 not in seen:
            seen.add(sha256)
            found.append((sha256, role, path))
    return found


def _closing_event(run: Run, seq: int) -> EventRow:
    payload = {"reason": NOT_FINISHED_REASON, "error": ""}
    text = dumps(payload)
    return EventRow(run_id=run.id, seq=seq, type=lc.RUN_CANCELED, level="info", source="server",
                    created_at=timezone.now(), correlation_id=run.correlation_id, payload=payload,
                    payload_json=text, payload_bytes=len(text.encode("utf-8")))
