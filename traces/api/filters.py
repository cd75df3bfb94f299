"""Query filters, sorting and the keyset cursor of ``GET /api/v1/traces``."""

from __future__ import annotations

import re
from base64 import b64decode, b64encode
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib import parse

import django_filters
from django import forms
from django.db import connections
from django.db.models import BooleanField, F, Func, Q, QuerySet, Value
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.utils.urls import replace_query_param

from tracefoundry.api.inputs import (
    MAX_BIGINT,
    IsoDateTimeFilter,
    StrictFilterSet,
    datetime_checked,
)
from tracefoundry.api.pagination import ListCursorPagination
from traces import selectors
from traces.models import Trace, TraceStatus

_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")
MAX_SEARCH = 200
# Text that appears verbatim in the JSON text of a list holding it: no quote, backslash or
# control character (JSON escapes those); non-ASCII stays as it is in PostgreSQL's jsonb output.
_JSON_VERBATIM = re.compile(r"[^\"\\\x00-\x1f]+")
_TRIGRAM_MIN = 3  # a shorter pattern has no trigram for the index to look up


class _ToolsLike(Func):
    """PostgreSQL: a tool name in the JSON list (first expression) matches the ILIKE pattern
    (second) — what ``selectors.traces_with_tool`` tests — written so the planner can use the
    trigram index ``trace_tools_trgm_idx`` (migration traces 0004) and estimate the match.

    ``list::text ILIKE pattern`` is the indexable necessary condition (a name containing the
    text puts it in the list's JSON text); the EXISTS over the elements stays the exact test
    (the text match could span two names). The non-array guard sits inside the EXISTS, not
    beside it as ``jsonb_typeof(...) = 'array'``: that equality is estimated at 0.5% of the
    rows, so the planner took a common tool for a rare one and fetched and sorted every trace
    that has it instead of walking the newest-first index.
    """

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra):
        (lhs, lhs_params), (rhs, rhs_params) = (
            compiler.compile(e) for e in self.get_source_expressions())
        sql = (f"(({lhs})::text ILIKE {rhs} ESCAPE '\\' AND EXISTS (SELECT 1 FROM "
               f"jsonb_array_elements_text(CASE WHEN jsonb_typeof({lhs}) = 'array' THEN {lhs} "
               f"ELSE '[]'::jsonb END) AS element(value) "
               f"WHERE element.value ILIKE {rhs} ESCAPE '\\'))")
        return sql, (*lhs_params, *rhs_params, *lhs_params, *lhs_params, *rhs_params)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Beyond these, a comparison overflows the column (PostgreSQL: a 500), and no trace is there.
MAX_NUMBER = 10**15


@extend_schema_field({"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER})
class NumberFilter(django_filters.NumberFilter):
    def __init__(self, **kwargs):
        super().__init__(min_value=-MAX_NUMBER, max_value=MAX_NUMBER, **kwargs)


@extend_schema_field({"type": "integer", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER})
class IntegerFilter(NumberFilter):
    field_class = forms.IntegerField


class TraceFilter(StrictFilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    since = IsoDateTimeFilter(
        field_name="start_time", lookup_expr="gte", help_text="Started at or after (ISO 8601)."
    )
    before = IsoDateTimeFilter(
        field_name="start_time", lookup_expr="lt", help_text="Started before (ISO 8601)."
    )
    service = django_filters.CharFilter(field_name="service_name",
                                        help_text="Service of the root span, exactly.")
    environment = django_filters.CharFilter(field_name="environment",
                                            help_text="`deployment.environment`, exactly.")
    status = django_filters.MultipleChoiceFilter(
        choices=TraceStatus.choices, help_text="One or more of unset, ok, error (repeat or "
        "comma-separate)."
    )
    model = django_filters.CharFilter(method="filter_model",
                                      help_text="Traces with a span using this model (exact).")
    tool = django_filters.CharFilter(
        method="filter_tool", help_text="Traces calling a tool whose name contains this text "
        "(case-insensitive)."
    )
    min_latency_ms = NumberFilter(
        field_name="duration_ms", lookup_expr="gte", help_text="Duration at least (ms)."
    )
    max_latency_ms = NumberFilter(
        field_name="duration_ms", lookup_expr="lte", help_text="Duration at most (ms)."
    )
    min_tokens = IntegerFilter(
        method="filter_min_tokens", help_text="Input + output tokens at least."
    )
    min_cost = NumberFilter(
        field_name="cost_usd", lookup_expr="gte", help_text="Cost at least (USD)."
    )
    q = django_filters.CharFilter(
        method="search", help_text="Free text: part of the root span's name (case-insensitive), "
        "or the first 4+ hex digits of a trace id."
    )
    has_error = django_filters.BooleanFilter(method="filter_has_error",
                                             help_text="Traces with (or without) error spans.")
    has_retry = django_filters.BooleanFilter(field_name="has_retry")
    has_timeout = django_filters.BooleanFilter(field_name="has_timeout")
    run_id = django_filters.CharFilter(field_name="run_id", help_text="Traces linked to this run.")

    class Meta:
        model = Trace
        fields = ["project", "since", "before", "service", "environment", "status", "model",
                  "tool", "min_latency_ms", "max_latency_ms", "min_tokens", "min_cost", "q",
                  "has_error", "has_retry", "has_timeout", "run_id"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and "status" in data:
            data = data.copy()
            data.setlist("status", [s for v in data.getlist("status") for s in v.split(",") if s])
        super().__init__(data, *args, **kwargs)

    def filter_model(self, queryset, name, value):
        value = value.strip()
        return selectors.traces_with_model(queryset, model=value) if value else queryset

    def filter_tool(self, queryset, name, value):
        value = value.strip()[:MAX_SEARCH]
        if not value:
            return queryset
        if (connections[queryset.db].vendor == "postgresql" and len(value) >= _TRIGRAM_MIN
                and _JSON_VERBATIM.fullmatch(value)):
            return queryset.filter(_ToolsLike(F("tools"), Value(_like_pattern(value))))
        return selectors.traces_with_tool(queryset, tool=value)

    def filter_min_tokens(self, queryset, name, value):
        return queryset.filter(total_tokens__gte=value)

    def filter_has_error(self, queryset, name, value):
        return queryset.filter(error_count__gt=0) if value else queryset.filter(error_count=0)

    def search(self, queryset, name, value):
        value = value.strip()[:MAX_SEARCH]
        if not value:
            return queryset
        # The trace id prefix uses the unique index; the name match scans only Trace rows.
        match = Q(root_span_name__icontains=value)
        if _HEX_PREFIX.match(value.lower()):
            match |= Q(trace_id__startswith=value.lower())
        return queryset.filter(match)


# --- sorting ----------------------------------------------------------------------------------

SORTS = {
    "newest": "-start_time",
    "oldest": "start_time",
    "slowest": "-duration_ms",
    "fastest": "duration_ms",
    "most_expensive": "-cost_usd",
    "most_tokens": "-total_tokens",
}
ORDERING_FIELDS = ("start_time", "duration_ms", "cost_usd", "total_tokens")
ORDERINGS = [f"{sign}{field}" for field in ORDERING_FIELDS for sign in ("", "-")]
DEFAULT_ORDERING = ("-start_time", "-id")


class TraceSort(BaseFilterBackend):
    """``sort`` (a named order) or ``ordering`` (a field, ``-`` for descending); ``-id`` breaks
    ties, so the keyset cursor works with every order."""

    def get_ordering(self, request, queryset, view) -> tuple[str, str]:
        for name in ("sort", "ordering"):
            if request.query_params.get(name) == "":
                raise ValidationError({name: ["Must not be empty; leave the parameter out."]})
        sort = request.query_params.get("sort", "")
        ordering = request.query_params.get("ordering", "")
        if sort:
            if sort not in SORTS:
                raise ValidationError({"sort": [f"one of {', '.join(SORTS)}"]})
            primary = SORTS[sort]
        elif ordering:
            if ordering.lstrip("-") not in ORDERING_FIELDS:
                raise ValidationError({"ordering": [
                    f"one of {', '.join(ORDERING_FIELDS)}, optionally prefixed with -"]})
            primary = ordering
        else:
            return DEFAULT_ORDERING
        return primary, ("-id" if primary.startswith("-") else "id")

    def filter_queryset(self, request, queryset, view):
        return queryset.order_by(*self.get_ordering(request, queryset, view))


# --- the keyset cursor ------------------------------------------------------------------------

def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return datetime_checked(value)


def _parse_decimal(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite() or abs(value) > MAX_NUMBER:
        raise ValueError("not finite")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value != value or abs(value) > MAX_NUMBER:
        raise ValueError("not finite")
    return value


def _parse_bigint(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_BIGINT:
        raise ValueError("out of range")
    return value


_POSITION_PARSERS = {
    "start_time": _parse_datetime,
    "duration_ms": _parse_float,
    "cost_usd": _parse_decimal,
    "total_tokens": _parse_bigint,
}


def _reversed(ordering: tuple[str, str]) -> tuple[str, str]:
    first, second = (o[1:] if o.startswith("-") else f"-{o}" for o in ordering)
    return first, second


def _position_text(value) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class TraceCursorPagination(ListCursorPagination):
    """Keyset pagination on (sort column, id): unlike DRF's position + offset cursor it stays
    exact and index-friendly when thousands of traces share a value (zero cost, zero tokens).

    The cursor carries the sort it was made for; reusing it with another sort is a 400.
    """

    ordering = DEFAULT_ORDERING
    invalid_cursor_message = "Invalid cursor."

    def paginate_queryset(self, queryset: QuerySet, request, view=None):
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        reverse, position = self._decode(request)
        ordering = _reversed(self.ordering) if reverse else self.ordering
        queryset = queryset.order_by(*ordering)
        if position is not None:
            queryset = queryset.filter(self._beyond(ordering, position))
        results = list(queryset[: self.page_size + 1])
        page = results[: self.page_size]
        more = len(results) > self.page_size
        if reverse:
            page.reverse()
        self.page = page
        self.has_next = more if not reverse else position is not None
        self.has_previous = more if reverse else position is not None
        self.display_page_controls = self.has_next or self.has_previous
        return self.page

    @staticmethod
    def _beyond(ordering: tuple[str, str], position: tuple) -> Q:
        """Rows after ``position`` in ``ordering``; the leading ``<=``/``>=`` term lets the
        database range-scan an index on the sort column."""
        field = ordering[0].lstrip("-")
        value, pk = position
        if ordering[0].startswith("-"):
            return Q(**{f"{field}__lte": value}) & (
                Q(**{f"{field}__lt": value}) | Q(pk__lt=pk))
        return Q(**{f"{field}__gte": value}) & (Q(**{f"{field}__gt": value}) | Q(pk__gt=pk))

    def _decode(self, request) -> tuple[bool, tuple | None]:
        encoded = request.query_params.get(self.cursor_query_param)
        if not encoded:  # absent or empty: the first page, as DRF's cursor pagination does
            return False, None
        field = self.ordering[0].lstrip("-")
        try:
            tokens = parse.parse_qs(b64decode(encoded.encode("ascii"), validate=True)
                                    .decode("ascii"), keep_blank_values=True)
            if tokens["s"][0] != self.ordering[0]:
                raise ValueError("cursor made for another sort")
            value = _POSITION_PARSERS[field](tokens["v"][0])
            pk = _parse_bigint(tokens["i"][0])
            reverse = tokens.get("r", ["0"])[0] == "1"
        except (KeyError, IndexError, TypeError, ValueError, InvalidOperation,
                UnicodeError) as exc:
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from exc
        return reverse, (value, pk)

    def _link(self, trace: Trace, *, reverse: bool) -> str:
        field = self.ordering[0].lstrip("-")
        tokens = {"s": self.ordering[0], "v": _position_text(getattr(trace, field)),
                  "i": str(trace.pk)}
        if reverse:
            tokens["r"] = "1"
        encoded = b64encode(parse.urlencode(tokens).encode("ascii")).decode("ascii")
        return replace_query_param(self.base_url, self.cursor_query_param, encoded)

    def get_next_link(self) -> str | None:
        if not self.has_next or not self.page:
            return None
        return self._link(self.page[-1], reverse=False)

    def get_previous_link(self) -> str | None:
        if not self.has_previous or not self.page:
            return None
        return self._link(self.page[0], reverse=True)
