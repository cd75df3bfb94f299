"""HTTP views of the traces API: translate requests into selector calls, nothing more."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.schema import common_errors, error_response, validated
from tracefoundry.roles import Cap
from traces import selectors
from traces.api import serializers as s
from traces.api.filters import ORDERINGS, SORTS, TraceCursorPagination, TraceFilter, TraceSort

ERRORS = common_errors("No such trace (or not visible to this key)")


class TraceListView(generics.GenericAPIView):
    """`GET` lists trace summaries (filters, sorting, cursor pagination); never reads spans."""

    serializer_class = s.TraceSerializer
    pagination_class = TraceCursorPagination
    filterset_class = TraceFilter
    filter_backends = [DjangoFilterBackend, TraceSort]
    permission_classes = [allows(Cap.READ)]

    def get_queryset(self):
        return selectors.trace_list(access=access_for(self.request))

    @extend_schema(
        parameters=[
            OpenApiParameter("sort", str, enum=list(SORTS), description=(
                "newest (default), oldest, slowest, fastest, most_expensive, most_tokens.")),
            OpenApiParameter("ordering", str, enum=ORDERINGS, description=(
                "Alternative to `sort`: start_time, duration_ms, cost_usd or total_tokens, "
                "prefixed with - for descending. `sort` wins when both are given.")),
        ],
        responses={200: s.TraceSerializer(many=True), **ERRORS},
        operation_id="traces_list",
        description=(
            "Trace summaries of traces with at least one span. The cursor of `next`/`previous` "
            "belongs to the sort it was made with; an invalid cursor is a 400."
        ),
    )
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.TraceSerializer(page, many=True).data)


class TraceDetailView(APIView):
    permission_classes = [allows(Cap.READ)]

    @extend_schema(responses={200: s.TraceDetailSerializer, **ERRORS},
                   operation_id="traces_retrieve")
    def get(self, request, trace_id: str):
        trace = selectors.trace_get(trace_id=trace_id, access=access_for(request))
        root = selectors.trace_root_span(trace=trace)
        return Response(s.TraceDetailSerializer(trace, context={"root_span": root}).data)


class TraceSpanListView(APIView):
    permission_classes = [allows(Cap.READ)]

    @extend_schema(
        parameters=[
            OpenApiParameter("tree", bool, description=(
                "1/true: nest children under their parents (up to 100 levels; deeper traces are "
                "a 400 `trace_too_deep`).")),
            OpenApiParameter("fields", str, enum=["full", "compact"], description=(
                "`compact`: only the columns a tree/waterfall row draws (about a third of the "
                "bytes; what the trace page loads). Default `full`.")),
        ],
        responses={200: s.SpanListSerializer, **ERRORS},
        operation_id="traces_spans_list",
        description=(
            "Every span of the trace, in drawing order: depth-first from the roots, siblings by "
            "start time; spans whose parent is missing (`orphan: true`) and their subtrees "
            "follow. Attributes, events and links are served by `GET /spans/{span_id}`."
        ),
    )
    def get(self, request, trace_id: str):
        query = validated(s.SpanListQuerySerializer, request.query_params)
        trace = selectors.trace_get(trace_id=trace_id, access=access_for(request))
        spans = selectors.span_tree(trace=trace, compact=query["fields"] == "compact")
        count = len(spans)
        if query["tree"]:
            spans = selectors.span_tree_nested(flat=spans)
        return Response({"trace_id": trace.trace_id, "span_count": count, "spans": spans})


class SpanDetailView(APIView):
    permission_classes = [allows(Cap.READ)]

    @extend_schema(
        parameters=[OpenApiParameter(
            "trace_id", {"type": "string", "pattern": s.TRACE_ID_OR_EMPTY}, description=(
                "The span's trace (empty: not given). Span ids are unique only within a trace: "
                "without it, an id found in several traces is a 409 `ambiguous_span_id` listing "
                "the candidates in `details.candidates`."))],
        responses={200: s.SpanSerializer, **ERRORS,
                   409: error_response("The span id occurs in several traces; pass trace_id")},
        operation_id="spans_retrieve",
    )
    def get(self, request, span_id: str):
        query = validated(s.SpanQuerySerializer, request.query_params)
        span = selectors.span_get(span_id=span_id, access=access_for(request),
                                  trace_id=query["trace_id"] or None)
        return Response(s.SpanSerializer(span).data)
