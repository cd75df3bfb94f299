"""Query filters of ``GET /api/v1/runs``."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from runs.models import Run, RunState
from tracefoundry.api.inputs import IsoDateTimeFilter, StrictFilterSet


class RunFilter(StrictFilterSet):
    project = django_filters.CharFilter(field_name="project__slug", help_text="Project slug.")
    # distinct=False: the filter joins nothing, so no row can repeat, and SELECT DISTINCT made
    # PostgreSQL sort every matching run before the LIMIT (75 ms for a common state at 50,000
    # runs, 1.5 ms without).
    state = django_filters.MultipleChoiceFilter(
        choices=RunState.choices, distinct=False,
        help_text="One or more states (repeat or comma-separate)."
    )
    kind = django_filters.CharFilter(field_name="kind")
    since = IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    before = IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )
    q = django_filters.CharFilter(
        method="search", help_text="Free text: run id, name, kind or correlation id."
    )
    trace_id = django_filters.CharFilter(field_name="trace_id")

    class Meta:
        model = Run
        fields = ["project", "state", "kind", "since", "before", "q", "trace_id"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and "state" in data:
            data = data.copy()
            data.setlist("state", [s for v in data.getlist("state") for s in v.split(",") if s])
        super().__init__(data, *args, **kwargs)

    def search(self, queryset, name, value):
        value = value.strip()[:200]
        if not value:
            return queryset
        return queryset.filter(
            Q(id=value) | Q(name__icontains=value) | Q(kind__icontains=value)
            | Q(correlation_id=value) | Q(idempotency_key=value)
        )
