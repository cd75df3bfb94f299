"""Writing spans: redaction, GenAI extraction, idempotent upsert, trace summaries.

Re-sending a span updates the same ``(trace, span_id)`` row, so retries of an export are
harmless and a trace spread over many requests ends in one tree. The summaries of every trace a
batch touched are recomputed from its spans in the same transaction.

On PostgreSQL each span is COPYed into a staging table as soon as it is prepared, so the server
parses the rows while this process redacts the next spans (see ``traces.span_store``).
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
from payloads.store import payload_store
from runs.envelope import dumps
from runs.models import Project
from runs.services import run_link_trace
from traces.genai import GenAI, extract
from traces.models import Span, Trace, TraceSource, TraceStatus
from traces.otlp_decode import SpanRecord
from traces.span_payloads import PendingBlob, SpanBlob, externalize
from traces.span_store import (
    span_stream,
    spans_upsert,
    spans_upsert_streamed,
    traces_insert_new,
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
             pending: list[PendingBlob] | None = None) -> _Prepared:
    """Redact, extract GenAI fields, apply the strict allowlist, move big values to blobs.

    Regex work never holds row locks: it runs before the ingest transaction (SQLite), or inside
    it before any trace row is written or locked (PostgreSQL). ``shared`` remembers resources
    already redacted: all spans of an OTLP resource share one. With ``pending``, blobs are
    addressed but left there for the caller to store (see ``externalize``).
    """
    policy = redactor.policy
    record.attributes = attributes = redactor.value(record.attributes)
    key = id(record.resource)
    if key not in shared:
        resource = redactor.value(record.resource)
        shared[key] = keep_allowed(resource) if policy == "strict" else resource
    record.resource = shared[key]
    if record.events:
        record.events = redactor.value(record.events)
    if record.links:
        record.links = redactor.value(record.links)
    record.name = redactor.text(record.name)
    if record.status_message:
        record.status_message = redactor.text(record.status_message)
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
                                    pending=pending)
    for i, event in enumerate(record.events):
        event["attributes"] = externalize(event.get("attributes") or {},
                                          path=f"events/{i}/attributes",
                                          mode=policy, blobs=blobs, pending=pending)
    return _Prepared(record=record, genai=genai, run_id=run_id, blobs=blobs)


def _span_values(prepared: _Prepared, trace_pk: int, now: datetime) -> dict:
    record, genai = prepared.record, prepared.genai
    return {
        "trace_id": trace_pk, "span_id": record.span_id,
        "parent_span_id": record.parent_span_id, "name": record.name, "kind": record.kind,
        "service_name": record.service_name, "start_time_unix_nano": record.start_ns,
        "end_time_unix_nano": record.end_ns,
        "duration_ms": (record.end_ns - record.start_ns) / 1e6,
        "status_code": record.status_code, "status_message": record.status_message,
        "attributes": record.attributes, "events": record.events, "links": record.links,
        "resource": record.resource, "scope": record.scope, "span_type": genai.span_type,
        "model": genai.model[:200], "input_tokens": genai.input_tokens,
        "output_tokens": genai.output_tokens, "cost_usd": genai.cost_usd,
        "tool_name": genai.tool_name[:256], "is_retry": genai.is_retry,
        "is_timeout": genai.is_timeout, "run_id": prepared.run_id, "received_at": now,
    }


def _stream_row(seq: int, prepared: _Prepared, now: datetime, texts: dict[int, str]) -> tuple:
    """``_span_values`` as a row of span_store.STREAM_COLUMNS (keyed by the OTLP trace id);
    the resource and scope objects spans share are serialised once per batch."""
    record, genai = prepared.record, prepared.genai
    resource, scope = record.resource, record.scope
    resource_text = texts.get(id(resource))
    if resource_text is None:
        resource_text = texts[id(resource)] = dumps(resource)
    scope_text = texts.get(id(scope))
    if scope_text is None:
        scope_text = texts[id(scope)] = dumps(scope)
    return (
        seq, record.trace_id, record.span_id, record.parent_span_id, record.name, record.kind,
        record.service_name, record.start_ns, record.end_ns,
        (record.end_ns - record.start_ns) / 1e6, record.status_code, record.status_message,
        dumps(record.attributes), dumps(record.events), dumps(record.links), resource_text,
        scope_text, genai.span_type, genai.model[:200], genai.input_tokens,
        genai.output_tokens, genai.cost_usd, genai.tool_name[:256], genai.is_retry,
        genai.is_timeout, prepared.run_id, now,
    )


def spans_ingest(
    *, project: Project, records: list[SpanRecord], source: str = TraceSource.OTLP
) -> IngestResult:
    """Store ``records`` for ``project``; spans of another project's trace are rejected."""
    result = IngestResult()
    if not records:
        return result
    redactor = get_redactor(project.redaction_policy or None)
    shared: dict[int, dict] = {}
    # PostgreSQL: the spans are COPYed into a staging table as they are prepared, so the
    # server parses them while this process works on the next ones.
    streamed = connection.vendor == "postgresql"
    if not streamed:
        prepared = [_prepare(r, redactor, shared) for r in records]
    now = timezone.now()
    with transaction.atomic():
        if streamed:
            prepared = _prepare_streamed(records, redactor, shared, now)
        by_trace: dict[str, dict[str, _Prepared]] = {}
        for item in prepared:  # the last copy of a span sent twice in one batch wins
            by_trace.setdefault(item.record.trace_id, {})[item.record.span_id] = item
        trace_ids = sorted(by_trace)
        # Traces this batch creates get their summary from the batch itself: no other span of
        # them can exist, and a concurrent writer of the same trace waits on the unique index,
        # then finds it existing. Existing traces are locked and re-aggregated below.
        owners = traces_insert_new([
            {"trace_id": t, "project_id": project.pk, "source": source, "created_at": now,
             **_summary_from_batch(list(by_trace[t].values()), now)}
            for t in trace_ids
        ])
        existing = (Trace.objects.select_for_update().filter(trace_id__in=[
            t for t in trace_ids if t not in owners]).order_by("pk")
            .values_list("trace_id", "pk", "project_id"))
        foreign: set[str] = set()
        refresh: list[int] = []
        for trace_id, pk, project_id in existing:
            owners[trace_id] = pk
            if project_id == project.pk:
                refresh.append(pk)
            else:
                foreign.add(trace_id)
        rows: dict[tuple[int, str], _Prepared] = {}
        for item in prepared:
            if item.record.trace_id in foreign:
                result.rejected += 1
                _note(result, "trace belongs to another project")
                continue
            trace_pk = owners[item.record.trace_id]
            # The last copy of a span sent twice in one batch wins.
            rows[(trace_pk, item.record.span_id)] = item
        if streamed:
            ids = spans_upsert_streamed(
                trace_pks=sorted({trace_pk for trace_pk, _ in rows}),
                dedupe=len(rows) < len(prepared) - result.rejected,
            ) if rows else {}
        else:
            ids = spans_upsert([_span_values(item, trace_pk, now)
                                for (trace_pk, _), item in rows.items()])
        _save_span_payload_refs([(ids[key], key[0], item) for key, item in rows.items()],
                                replaced=set(refresh))
        trace_summaries_refresh(trace_pks=refresh, now=now)
        for run_id, trace_id in sorted({(i.run_id, i.record.trace_id) for i in rows.values()
                                        if i.run_id}):
            run_link_trace(run_id=run_id, trace_id=trace_id, project_id=project.pk)
    result.accepted = len(records) - result.rejected
    result.trace_ids = [t for t in trace_ids if t not in foreign]
    return result


def _prepare_streamed(records: list[SpanRecord], redactor, shared: dict[int, dict],
                      now: datetime) -> list[_Prepared]:
    """PostgreSQL: prepare each span and COPY it into the staging table at once; then write
    the blobs its values were moved to (the connection is free again)."""
    pending: list[PendingBlob] = []
    prepared: list[_Prepared] = []
    texts: dict[int, str] = {}
    with span_stream() as stream:
        write_row = stream.write_row
        for seq, record in enumerate(records):
            item = _prepare(record, redactor, shared, pending)
            prepared.append(item)
            write_row(_stream_row(seq, item, now, texts))
    for blob in pending:
        payload_store(data=blob.data, content_type=blob.content_type, redaction_mode=blob.mode)
    return prepared


def _save_span_payload_refs(spans: list[tuple[int, int, _Prepared]], *,
                            replaced: set[int]) -> None:
    """Point PayloadRef rows at the (re-)sent spans; a re-send replaces the old refs.

    Only spans of traces that existed before this batch (``replaced``: trace pks) can have
    refs already: a trace created by this batch has nothing but new span rows."""
    old = [pk for pk, trace_pk, _ in spans if trace_pk in replaced] if replaced else []
    if old:
        # One plain DELETE: the ORM's delete() would first SELECT every row to collect
        # cascades, and PayloadRef has none.
        marks = ", ".join(["%s"] * len(old))
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {PayloadRef._meta.db_table} WHERE span_id IN ({marks})", old
            )
    refs = [
        PayloadRef(blob_id=b.sha256, span_id=pk, role=b.role, json_path=b.json_path[:512])
        for pk, _, item in spans for b in item.blobs
    ]
    if refs:
        PayloadRef.objects.bulk_create(refs)


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
