"""Reads of traces and spans: the trace list (summary table only), one trace, its span tree, a span.

The list never touches spans: every filter and sort works on the ``Trace`` summary columns. The
span tree is built in Python from one query, so a trace of 10,000 spans costs one round trip.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import BooleanField, F, Func, QuerySet, Value

from tracefoundry.errors import Conflict, InvalidInput, NotFound
from tracefoundry.roles import Access
from traces.models import Span, Trace

MAX_TREE_DEPTH = 100  # nesting levels of ``?tree=1``; JSON encoders refuse much deeper documents
MAX_SPAN_CANDIDATES = 20

# The columns of a span in the flat list and the tree; attributes, events and links are left to
# the span endpoint, so a 10,000-span trace stays a few MB.
SPAN_TREE_FIELDS = (
    "span_id", "parent_span_id", "name", "kind", "service_name", "start_time_unix_nano",
    "end_time_unix_nano", "duration_ms", "status_code", "status_message", "span_type", "model",
    "input_tokens", "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout", "run_id",
)
# ``?fields=compact``: only what a tree/waterfall row draws (the trace page of 10,000 spans).
SPAN_COMPACT_FIELDS = (
    "span_id", "parent_span_id", "name", "duration_ms", "status_code", "span_type", "model",
    "tool_name", "is_retry", "is_timeout",
)


class AmbiguousSpanId(Conflict):
    """Span ids are unique only within a trace; several visible traces have this one."""

    code = "ambiguous_span_id"


class TraceTooDeep(InvalidInput):
    code = "trace_too_deep"


# --- the trace list ---------------------------------------------------------------------------

def trace_list(*, access: Access) -> QuerySet[Trace]:
    """Traces visible to ``access`` that have spans; filters and sorting come from the API layer.

    ``total_tokens`` (input + output) is annotated for the ``most_tokens`` sort and its cursor.
    """
    qs = Trace.objects.select_related("project").filter(start_time__isnull=False)
    if access.project_id is not None:
        qs = qs.filter(project_id=access.project_id)
    return qs.annotate(total_tokens=F("input_tokens") + F("output_tokens"))


class _JSONArrayHas(Func):
    """SQLite: the JSON array in the first expression has an element equal to the second."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra):
        array, value = (compiler.compile(e) for e in self.get_source_expressions())
        sql = f"EXISTS (SELECT 1 FROM json_each({array[0]}) WHERE json_each.value = {value[0]})"
        return sql, (*array[1], *value[1])


class _JSONArrayAnyLike(Func):
    """An element of the JSON array (first expression) matches the LIKE pattern (second),
    ignoring case."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra):
        array, pattern = (compiler.compile(e) for e in self.get_source_expressions())
        sql = (f"EXISTS (SELECT 1 FROM json_each({array[0]}) "
               f"WHERE json_each.value LIKE {pattern[0]} ESCAPE '\\')")
        return sql, (*array[1], *pattern[1])

    def as_postgresql(self, compiler, connection, **extra):
        array, pattern = (compiler.compile(e) for e in self.get_source_expressions())
        sql = (f"(jsonb_typeof({array[0]}) = 'array' AND EXISTS (SELECT 1 FROM "
               f"jsonb_array_elements_text({array[0]}) AS element(value) "
               f"WHERE element.value ILIKE {pattern[0]} ESCAPE '\\'))")
        return sql, (*array[1], *array[1], *pattern[1])


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def traces_with_model(queryset: QuerySet[Trace], *, model: str) -> QuerySet[Trace]:
    """Traces whose ``models`` list contains ``model`` exactly."""
    if connections[queryset.db].vendor == "postgresql":
        return queryset.filter(models__contains=[model])  # JSONB containment
    if connections[queryset.db].vendor == "sqlite":
        return queryset.filter(_JSONArrayHas(F("models"), Value(model)))
    return queryset.filter(models__icontains=f'"{model}"')  # other backends: the JSON text


def traces_with_tool(queryset: QuerySet[Trace], *, tool: str) -> QuerySet[Trace]:
    """Traces with a tool whose name contains ``tool`` (case-insensitive)."""
    pattern = f"%{_like_escaped(tool)}%"
    if connections[queryset.db].vendor in ("postgresql", "sqlite"):
        return queryset.filter(_JSONArrayAnyLike(F("tools"), Value(pattern)))
    return queryset.filter(tools__icontains=tool)


# --- one trace --------------------------------------------------------------------------------

def trace_get(*, trace_id: str, access: Access) -> Trace:
    """A trace visible to ``access``; traces of other projects do not exist for a key."""
    trace = Trace.objects.select_related("project").filter(trace_id=trace_id.lower()).first()
    if trace is None or not access.can_see_project(trace.project_id):
        raise NotFound(f"trace {trace_id} does not exist")
    return trace


def trace_root_span(*, trace: Trace) -> Span | None:
    """The earliest span without a parent, or None while the root has not arrived."""
    return (Span.objects.filter(trace=trace, parent_span_id="")
            .order_by("start_time_unix_nano", "id").first())


# --- the span tree ----------------------------------------------------------------------------

def span_tree(*, trace: Trace, compact: bool = False) -> list[dict[str, Any]]:
    """Every span of ``trace`` in drawing order, each with ``depth`` and ``orphan``
    (``compact``: only the ``SPAN_COMPACT_FIELDS`` and ``start_offset_ms``).

    Depth-first from the roots (spans without a parent), siblings by start time. Spans whose
    parent never arrived ("orphans") follow with their subtrees, marked ``orphan: true`` at
    depth 0; spans caught in a parent cycle (malformed input) are treated as orphans too, so
    every span appears exactly once.
    """
    fields = (*SPAN_COMPACT_FIELDS, "start_time_unix_nano") if compact else SPAN_TREE_FIELDS
    rows = list(
        Span.objects.filter(trace=trace).order_by("start_time_unix_nano", "id").values(*fields)
    )
    trace_start = rows[0]["start_time_unix_nano"] if rows else 0
    known = {row["span_id"] for row in rows}
    children: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    orphans: list[dict[str, Any]] = []
    for row in rows:
        start = row.pop("start_time_unix_nano") if compact else row["start_time_unix_nano"]
        row["start_offset_ms"] = (start - trace_start) / 1e6
        parent = row["parent_span_id"]
        if not parent:
            roots.append(row)
        elif parent not in known or parent == row["span_id"]:
            orphans.append(row)
        else:
            children.setdefault(parent, []).append(row)
    ordered: list[dict[str, Any]] = []
    visited: set[str] = set()
    for top in roots:
        _walk(top, children, ordered, visited, orphan=False)
    for top in orphans:
        _walk(top, children, ordered, visited, orphan=True)
    for row in rows:  # only spans whose ancestors form a cycle are left
        if row["span_id"] not in visited:
            _walk(row, children, ordered, visited, orphan=True)
    return ordered


def _walk(top: dict, children: dict, out: list, visited: set, *, orphan: bool) -> None:
    """Depth-first, without recursion: a trace may be thousands of levels deep."""
    stack = [(top, 0)]
    while stack:
        row, depth = stack.pop()
        if row["span_id"] in visited:
            continue
        visited.add(row["span_id"])
        row["depth"] = depth
        row["orphan"] = orphan and depth == 0
        out.append(row)
        stack.extend((child, depth + 1) for child in reversed(children.get(row["span_id"], ())))


def span_tree_nested(*, flat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``span_tree`` list nested: each span gets ``children``; returns the top-level spans."""
    deepest = max((row["depth"] for row in flat), default=0)
    if deepest >= MAX_TREE_DEPTH:
        raise TraceTooDeep(
            f"the trace is {deepest + 1} levels deep; the nested form stops at "
            f"{MAX_TREE_DEPTH}: use the flat form, whose spans carry their depth",
            details={"depth": deepest + 1, "max_depth": MAX_TREE_DEPTH},
        )
    tops: list[dict[str, Any]] = []
    path: list[dict[str, Any]] = []  # the current ancestors, by depth
    for row in flat:
        node = {**row, "children": []}
        del path[row["depth"]:]
        (path[-1]["children"] if path else tops).append(node)
        path.append(node)
    return tops


# --- one span ---------------------------------------------------------------------------------

def span_get(*, span_id: str, access: Access, trace_id: str | None = None) -> Span:
    """The span ``span_id`` visible to ``access`` (in trace ``trace_id`` when given).

    Span ids are unique only within their trace: when several visible traces have the id and no
    trace id narrows it down, ``AmbiguousSpanId`` (409) lists the candidates.
    """
    qs = Span.objects.select_related("trace", "trace__project").filter(span_id=span_id.lower())
    if access.project_id is not None:
        qs = qs.filter(trace__project_id=access.project_id)
    if trace_id:
        qs = qs.filter(trace__trace_id=trace_id.lower())
    found = list(qs.order_by("-start_time_unix_nano", "-id")[:MAX_SPAN_CANDIDATES + 1])
    if not found:
        where = f" in trace {trace_id}" if trace_id else ""
        raise NotFound(f"span {span_id}{where} does not exist")
    if len(found) > 1:
        raise AmbiguousSpanId(
            f"span id {span_id} occurs in several traces; pass ?trace_id= to choose one",
            details={"candidates": [
                {"trace_id": s.trace.trace_id, "name": s.name,
                 "start_time_unix_nano": s.start_time_unix_nano,
                 "url": f"/api/v1/spans/{s.span_id}?trace_id={s.trace.trace_id}"}
                for s in found[:MAX_SPAN_CANDIDATES]
            ], "truncated": len(found) > MAX_SPAN_CANDIDATES},
        )
    return found[0]

