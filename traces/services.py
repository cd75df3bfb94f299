"""Writing spans: redaction, GenAI extraction, idempotent upsert, trace summaries.

Re-sending a span updates the same ``(trace, span_id)`` row, so retries of an export are
harmless and a trace spread over many requests ends in one tree. The summaries of every trace a
batch touched are recomputed from its spans in the same transaction.

On PostgreSQL a span of a trace the batch creates (the common case: exporters send whole
traces) is COPYed straight into ``traces_span`` as soon as it is prepared, so the server parses
the rows while this process redacts the next spans; spans of existing traces are upserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from payloads.allowlist import keep_allowed
from payloads.models import PayloadRef
from payloads.redaction import get_redactor
from payloads.store import PayloadBatch
from runs.models import Project
from runs.services import runs_link_traces
from tracefoundry.jsonio import dumps
from traces.genai import GenAI, extract
from traces.models import Span, TraceSource, TraceStatus
from traces.otlp_decode import MAX_NAME, MAX_STATUS_MESSAGE, SpanRecord
from traces.span_payloads import SpanBlob, externalize
from traces.span_store import (
    span_payload_refs_insert,
    spans_copy,
    spans_upsert,
    trace_pks_reserve,
    traces_insert_new,
    traces_lock,
    traces_update,
)

RUN_ID_ATTRIBUTE = "tracefoundry.run_id"


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    record: SpanRecord
    genai: GenAI
    run_id: str
    blobs: list[SpanBlob]


def _prepare(record: SpanRecord, redactor, shared: dict[int, dict],
             batch: PayloadBatch) -> _Prepared:
    """Redact, extract GenAI fields, apply the strict allowlist, move big values to blobs.

    Regex work never holds SQLite's write lock: there it runs before the ingest transaction.
    On PostgreSQL it runs inside it, streaming, with only the batch's traces locked. ``shared``
    remembers resources already redacted: all spans of an OTLP resource share one. Big values
    go into ``batch``, for the caller to store (see ``externalize``).
    """
    policy = redactor.policy
    record.attributes = attributes = redactor.value(record.attributes)
    key = id(record.resource)
    if key not in shared:
        resource = redactor.value(record.resource)
        shared[key] = keep_allowed(resource) if policy == "strict" else resource
    record.resource = shared[key]
    key = id(record.scope)
    if key not in shared:  # scope name, version and attributes: shared like resources
        shared[key] = redactor.value(record.scope)
    record.scope = shared[key]
    if record.events:
        record.events = redactor.value(record.events)
    if record.links:
        record.links = redactor.value(record.links)
    # Cut to the columns after redaction: a label may be longer than its secret, and a secret
    # cut before redaction would leave a tail the detectors no longer recognise.
    record.name = redactor.text(record.name)[:MAX_NAME]
    if record.status_message:
        record.status_message = redactor.text(record.status_message)[:MAX_STATUS_MESSAGE]
    genai = extract(
        name=record.name, kind=record.kind, attributes=attributes, events=record.events,
        status_code=record.status_code, status_message=record.status_message,
    )
    run_id = attributes.get(RUN_ID_ATTRIBUTE)
    run_id = str(run_id)[:40] if run_id else ""
    if policy == "strict":
        attributes = keep_allowed(attributes)
        for item in (*record.events, *record.links):
            item["attributes"] = keep_allowed(item.get("attributes") or {})
    blobs: list[SpanBlob] = []
    record.attributes = externalize(attributes, path="attributes", mode=policy, blobs=blobs,
                                    batch=batch)
    for i, event in enumerate(record.events):
        event["attributes"] = externalize(event.get("attributes") or {},
                                          path=f"events/{i}/attributes",
                                          mode=policy, blobs=blobs, batch=batch)
    return _Prepared(record=record, genai=genai, run_id=run_id, blobs=blobs)


def span_row(prepared: _Prepared, trace_pk: int, now: datetime, texts: dict[int, str]) -> tuple:
    """A span as a row of span_store.SPAN_COLUMNS, JSON columns serialised; the resource and
    scope objects spans share are serialised once per batch (``texts``)."""
    record, genai = prepared.record, prepared.genai
    resource, scope = record.resource, record.scope
    resource_text = texts.get(id(resource))
    if resource_text is None:
        resource_text = texts[id(resource)] = dumps(resource)
    scope_text = texts.get(id(scope))
    if scope_text is None:
        scope_text = texts[id(scope)] = dumps(scope)
    return (
        trace_pk, record.span_id, record.parent_span_id, record.name, record.kind,
        record.service_name, record.start_ns, record.end_ns,
        (record.end_ns - record.start_ns) / 1e6, record.status_code, record.status_message,
        dumps(record.attributes), dumps(record.events), dumps(record.links), resource_text,
        scope_text, genai.span_type, genai.model[:200], genai.input_tokens,
        genai.output_tokens, genai.cost_usd, genai.tool_name[:256], genai.is_retry,
        genai.is_timeout, prepared.run_id, now,
    )


def _last_copies(records: list[SpanRecord]) -> list[SpanRecord]:
    """The batch without the earlier copies of a span sent twice in it (the last one wins)."""
    last = {(r.trace_id, r.span_id): i for i, r in enumerate(records)}
    if len(last) == len(records):
        return records
    return [r for i, r in enumerate(records) if last[(r.trace_id, r.span_id)] == i]


@dataclass
class _Batch:
    """One ingest call's spans, sorted by the fate of their trace."""

    project: Project
    now: datetime
    source: str
    result: IngestResult
    # Traces this batch creates: their spans by trace id (their summary comes from the batch).
    new: dict[str, list[_Prepared]] = field(default_factory=dict)
    # Spans of traces that existed (upserted), with the trace pk.
    existing: list[tuple[int, _Prepared]] = field(default_factory=list)

    def reject_foreign(self) -> None:
        self.result.rejected += 1
        _note(self.result, "trace belongs to another project")

    def new_trace_rows(self, pks: dict[str, int] | None = None) -> list[dict]:
        return [
            {**({"id": pks[t]} if pks else {}), "trace_id": t, "project_id": self.project.pk,
             "source": self.source, "created_at": self.now,
             **_summary_from_batch(items, self.now)}
            for t, items in sorted(self.new.items())
        ]


def spans_ingest(
    *, project: Project, records: list[SpanRecord], source: str = TraceSource.OTLP
) -> IngestResult:
    """Store ``records`` for ``project``; spans of another project's trace are rejected."""
    result = IngestResult()
    if not records:
        return result
    total = len(records)
    records = _last_copies(records)
    redactor = get_redactor(project.redaction_policy or None)
    batch = _Batch(project=project, now=timezone.now(), source=source, result=result)
    if connection.vendor == "postgresql":
        _ingest_postgresql(batch, records, redactor)
    else:
        _ingest_sqlite(batch, records, redactor)
    result.accepted = total - result.rejected
    result.trace_ids = sorted({*batch.new, *(i.record.trace_id for _, i in batch.existing)})
    return result


def _ingest_postgresql(batch: _Batch, records: list[SpanRecord], redactor) -> None:
    """Lock the batch's traces, reserve pks for the new ones, then prepare every span and COPY
    it at once when its trace is new, so the server parses rows while this process redacts the
    next ones; the new traces are inserted last, with summaries computed from the batch."""
    project_pk, now = batch.project.pk, batch.now
    shared: dict[int, dict] = {}
    texts: dict[int, str] = {}
    blobs = PayloadBatch()
    with transaction.atomic():
        trace_ids = sorted({r.trace_id for r in records})
        owners = traces_lock(trace_ids)
        fresh = [t for t in trace_ids if t not in owners]
        reserved = dict(zip(fresh, trace_pks_reserve(len(fresh)), strict=True))
        with spans_copy() as copy:
            write_row = copy.write_row
            for record in records:
                owner = owners.get(record.trace_id)
                if owner is not None and owner[1] != project_pk:
                    batch.reject_foreign()
                    continue
                item = _prepare(record, redactor, shared, blobs)
                if owner is None:
                    batch.new.setdefault(record.trace_id, []).append(item)
                    write_row(span_row(item, reserved[record.trace_id], now, texts))
                else:
                    batch.existing.append((owner[0], item))
        blobs.store()  # the connection is free again
        traces_insert_new(batch.new_trace_rows(reserved))  # locked: no conflict possible
        ids = spans_upsert([span_row(item, pk, now, texts) for pk, item in batch.existing])
        _finish(batch, ids, {t: reserved[t] for t in batch.new})


def _ingest_sqlite(batch: _Batch, records: list[SpanRecord], redactor) -> None:
    """Regex work and blob files never hold the database's one write lock: spans are
    prepared, and their blobs stored, first."""
    shared: dict[int, dict] = {}
    blobs = PayloadBatch()
    prepared = [_prepare(r, redactor, shared, blobs) for r in records]
    blobs.store()
    now = batch.now
    with transaction.atomic():
        trace_ids = sorted({i.record.trace_id for i in prepared})
        owners = traces_lock(trace_ids)
        for item in prepared:
            owner = owners.get(item.record.trace_id)
            if owner is None:
                batch.new.setdefault(item.record.trace_id, []).append(item)
            elif owner[1] != batch.project.pk:
                batch.reject_foreign()
            else:
                batch.existing.append((owner[0], item))
        # One writer at a time: nothing else can create these traces meanwhile.
        created = traces_insert_new(batch.new_trace_rows())
        texts: dict[int, str] = {}
        rows = [span_row(item, created[t], now, texts)
                for t, items in batch.new.items() for item in items]
        rows += [span_row(item, pk, now, texts) for pk, item in batch.existing]
        ids = spans_upsert(rows)
        _finish(batch, ids, created)


def _finish(batch: _Batch, ids: dict[tuple[int, str], int], created: dict[str, int]) -> None:
    """Inside the ingest transaction, once every span row is written (``ids``: span pks by
    (trace pk, span id), at least of the spans of traces that existed; ``created``: pks of the
    new traces): payload refs, the summaries of the traces that existed, and the links from
    runs to their traces."""
    spans = [(created[t], item) for t, items in batch.new.items() for item in items]
    spans += batch.existing
    _save_span_payload_refs(
        spans, replaced=[ids[(pk, item.record.span_id)] for pk, item in batch.existing],
        now=batch.now,
    )
    trace_summaries_refresh(trace_pks=sorted({pk for pk, _ in batch.existing}), now=batch.now)
    runs_link_traces(links=[(i.run_id, i.record.trace_id) for _, i in spans if i.run_id],
                     project_id=batch.project.pk)


def _save_span_payload_refs(spans: list[tuple[int, _Prepared]], *, replaced: list[int],
                            now: datetime) -> None:
    """Point PayloadRef rows at the spans (trace pk, prepared span) whose values moved to
    blobs, with one statement.

    ``replaced``: pks of re-sent spans, whose old refs go first (a span of a trace created by
    this batch is a new row and has none)."""
    if replaced:
        # One plain DELETE: the ORM's delete() would first SELECT every row to collect
        # cascades, and PayloadRef has none.
        marks = ", ".join(["%s"] * len(replaced))
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {PayloadRef._meta.db_table} WHERE span_id IN ({marks})", replaced
            )
    span_payload_refs_insert(
        [(b.sha256, trace_pk, item.record.span_id, b.role, b.json_path[:512])
         for trace_pk, item in spans for b in item.blobs],
        now=now,
    )


def _note(result: IngestResult, reason: str) -> None:
    if reason not in result.reasons:
        result.reasons.append(reason)


def _to_dt(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC) if ns else None


def trace_summaries_refresh(*, trace_pks: list[int], now: datetime | None = None) -> None:
    """Recompute the summary columns of these traces from their spans (a few queries in all)."""
    if not trace_pks:
        return
    stats = {
        row["trace_id"]: row
        for row in Span.objects.filter(trace_id__in=trace_pks).values("trace_id").annotate(
            n=Count("id"),
            errors=Count("id", filter=Q(status_code="error")),
            oks=Count("id", filter=Q(status_code="ok")),
            retries=Count("id", filter=Q(is_retry=True)),
            timeouts=Count("id", filter=Q(is_timeout=True)),
            start=Min("start_time_unix_nano"),
            end=Max("end_time_unix_nano"),
            # Agent and chain spans may repeat the usage of the LLM calls under them, so the
            # totals count LLM spans, and fall back to all spans only when no LLM span has any.
            llm_in=Sum("input_tokens", filter=Q(span_type="llm")),
            llm_out=Sum("output_tokens", filter=Q(span_type="llm")),
            llm_cost=Sum("cost_usd", filter=Q(span_type="llm")),
            tokens_in=Sum("input_tokens"),
            tokens_out=Sum("output_tokens"),
            cost=Sum("cost_usd"),
            run=Max("run_id"),
        )
    }
    roots: dict[int, Span] = {}
    for span in (
        Span.objects.filter(trace_id__in=trace_pks, parent_span_id="")
        .only("trace_id", "name", "service_name", "resource", "start_time_unix_nano")
        .order_by("start_time_unix_nano")
    ):
        roots.setdefault(span.trace_id, span)
    models: dict[int, set[str]] = {}
    tools: dict[int, set[str]] = {}
    for trace_pk, model, tool in (
        Span.objects.filter(trace_id__in=trace_pks)
        .filter(~Q(model="") | ~Q(tool_name=""))
        .values_list("trace_id", "model", "tool_name").distinct()
    ):
        if model:
            models.setdefault(trace_pk, set()).add(model)
        if tool:
            tools.setdefault(trace_pk, set()).add(tool)
    first_span = _first_spans(trace_pks, roots)
    summaries: dict[int, dict] = {}
    for pk in trace_pks:
        s = stats.get(pk)
        root = roots.get(pk) or first_span.get(pk)
        if s is None or root is None:
            continue
        summaries[pk] = _summary(s, models.get(pk, ()), tools.get(pk, ()), root,
                                 now or timezone.now())
    traces_update(summaries)


def _summary(s: dict, models, tools, root, now: datetime) -> dict:
    """The summary columns of a trace from its span statistics (``s``, keyed like the
    aggregate query in trace_summaries_refresh) and its root span (or earliest span)."""
    llm = s["llm_in"] is not None or s["llm_out"] is not None
    env = root.resource.get("deployment.environment.name",
                            root.resource.get("deployment.environment", ""))
    return {
        "span_count": s["n"],
        "error_count": s["errors"],
        "status": (TraceStatus.ERROR if s["errors"] else
                   TraceStatus.OK if s["oks"] else TraceStatus.UNSET),
        "start_time": _to_dt(s["start"]),
        "end_time": _to_dt(s["end"]),
        "duration_ms": (s["end"] - s["start"]) / 1e6,
        "input_tokens": (s["llm_in"] if llm else s["tokens_in"]) or 0,
        "output_tokens": (s["llm_out"] if llm else s["tokens_out"]) or 0,
        "cost_usd": (s["llm_cost"] if s["llm_cost"] is not None else s["cost"]) or Decimal(0),
        "has_retry": s["retries"] > 0,
        "has_timeout": s["timeouts"] > 0,
        "run_id": s["run"] or "",
        "models": sorted(models),
        "tools": sorted(tools),
        "root_span_name": root.name,
        "service_name": root.service_name,
        "environment": str(env)[:128],
        "updated_at": now,
    }


def _total(values) -> Decimal | int | None:
    """SQL's SUM: None when there is nothing but NULLs."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _summary_from_batch(items: list[_Prepared], now: datetime) -> dict:
    """``_summary`` computed in Python for a trace whose spans are all in this batch."""
    llm = [i.genai for i in items if i.genai.span_type == "llm"]
    every = [i.genai for i in items]
    codes = [i.record.status_code for i in items]
    stats = {
        "n": len(items), "errors": codes.count("error"), "oks": codes.count("ok"),
        "retries": sum(g.is_retry for g in every), "timeouts": sum(g.is_timeout for g in every),
        "start": min(i.record.start_ns for i in items),
        "end": max(i.record.end_ns for i in items),
        "llm_in": _total(g.input_tokens for g in llm),
        "llm_out": _total(g.output_tokens for g in llm),
        "llm_cost": _total(g.cost_usd for g in llm),
        "tokens_in": _total(g.input_tokens for g in every),
        "tokens_out": _total(g.output_tokens for g in every),
        "cost": _total(g.cost_usd for g in every),
        "run": max(i.run_id for i in items),
    }
    roots = [i for i in items if not i.record.parent_span_id] or items
    root = min(roots, key=lambda i: i.record.start_ns).record
    models = {g.model[:200] for g in every if g.model}
    tools = {g.tool_name[:256] for g in every if g.tool_name}
    return _summary(stats, models, tools, root, now)


def _first_spans(trace_pks: list[int], roots: dict[int, Span]) -> dict[int, Span]:
    """For traces whose root has not arrived yet, their earliest span stands in."""
    missing = [pk for pk in trace_pks if pk not in roots]
    found: dict[int, Span] = {}
    if not missing:
        return found
    for span in (
        Span.objects.filter(trace_id__in=missing)
        .only("trace_id", "name", "service_name", "resource", "start_time_unix_nano")
        .order_by("start_time_unix_nano")
    ):
        found.setdefault(span.trace_id, span)
    return found
