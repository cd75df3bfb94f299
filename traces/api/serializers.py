"""Input validation and output shapes of the traces API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tracefoundry.api.inputs import OptionalIdField
from traces.genai import event_retry_and_timeout
from traces.models import Span, Trace


def trace_links(trace: Trace) -> dict[str, str | None]:
    base = f"/api/v1/traces/{trace.trace_id}"
    return {"self": base, "spans": f"{base}/spans",
            "run": f"/api/v1/runs/{trace.run_id}" if trace.run_id else None}


class TraceLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    spans = serializers.CharField()
    run = serializers.CharField(allow_null=True, help_text="The linked run, if any.")


class TraceSerializer(serializers.ModelSerializer):
    """A trace summary: what the list shows, computed at ingest (never from spans on read)."""

    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=8, coerce_to_string=False,
                                        read_only=True)
    total_tokens = serializers.SerializerMethodField()
    models = serializers.ListField(child=serializers.CharField(), read_only=True,
                                   help_text="Models used by the trace's spans.")
    tools = serializers.ListField(child=serializers.CharField(), read_only=True,
                                  help_text="Tools called by the trace's spans.")
    links = serializers.SerializerMethodField()
    run_id = OptionalIdField(help_text="The run this trace belongs to, or null.")

    class Meta:
        model = Trace
        fields = [
            "trace_id", "project", "root_span_name", "service_name", "environment", "status",
            "start_time", "end_time", "duration_ms", "span_count", "error_count",
            "input_tokens", "output_tokens", "total_tokens", "cost_usd", "models", "tools",
            "has_retry", "has_timeout", "run_id", "source", "created_at", "updated_at", "links",
        ]
        read_only_fields = fields

    def get_total_tokens(self, trace: Trace) -> int:
        return trace.input_tokens + trace.output_tokens

    @extend_schema_field(TraceLinksSerializer)
    def get_links(self, trace: Trace) -> dict[str, str | None]:
        return trace_links(trace)


class SpanRelatedSerializer(serializers.Serializer):
    self = serializers.CharField()
    trace = serializers.CharField()
    parent = serializers.CharField(allow_null=True, help_text="Null for a root span.")


class EventFlagsSerializer(serializers.Serializer):
    is_retry = serializers.BooleanField()
    is_timeout = serializers.BooleanField()


class SpanSerializer(serializers.ModelSerializer):
    """One span with everything stored for it. ``links`` are its OpenTelemetry span links;
    ``related`` holds the API URLs around it."""

    trace_id = serializers.CharField(source="trace.trace_id", read_only=True)
    project = serializers.CharField(source="trace.project.slug", read_only=True)
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=8, coerce_to_string=False,
                                        read_only=True, allow_null=True)
    attributes = serializers.DictField(read_only=True)
    events = serializers.ListField(child=serializers.DictField(), read_only=True)
    event_flags = serializers.SerializerMethodField(help_text=(
        "For each of `events`, in order: `is_retry` and `is_timeout`, by the same rules as the "
        "span's own flags."))
    links = serializers.ListField(child=serializers.DictField(), read_only=True)
    resource = serializers.DictField(read_only=True)
    scope = serializers.DictField(read_only=True)
    related = serializers.SerializerMethodField()
    run_id = OptionalIdField(help_text="The run this span belongs to, or null.")

    class Meta:
        model = Span
        fields = [
            "span_id", "trace_id", "project", "parent_span_id", "name", "kind", "service_name",
            "start_time_unix_nano", "end_time_unix_nano", "duration_ms", "status_code",
            "status_message", "span_type", "model", "input_tokens", "output_tokens", "cost_usd",
            "tool_name", "is_retry", "is_timeout", "run_id", "attributes", "events",
            "event_flags", "links",
            "resource", "scope", "received_at", "related",
        ]
        read_only_fields = fields

    @extend_schema_field(EventFlagsSerializer(many=True))
    def get_event_flags(self, span: Span) -> list[dict[str, bool]]:
        flags = (event_retry_and_timeout(event) for event in span.events or [])
        return [{"is_retry": retry, "is_timeout": timeout} for retry, timeout in flags]

    @extend_schema_field(SpanRelatedSerializer)
    def get_related(self, span: Span) -> dict[str, str | None]:
        trace_id = span.trace.trace_id
        parent = span.parent_span_id
        return {
            "self": f"/api/v1/spans/{span.span_id}?trace_id={trace_id}",
            "trace": f"/api/v1/traces/{trace_id}",
            "parent": f"/api/v1/spans/{parent}?trace_id={trace_id}" if parent else None,
        }


class TraceDetailSerializer(TraceSerializer):
    """The summary, the root span (null until it arrives) and links to the spans and run."""

    root_span = serializers.SerializerMethodField()

    class Meta(TraceSerializer.Meta):
        fields = [*TraceSerializer.Meta.fields, "root_span"]
        read_only_fields = fields

    @extend_schema_field(SpanSerializer(allow_null=True))
    def get_root_span(self, trace: Trace) -> dict | None:
        root = self.context.get("root_span")
        return SpanSerializer(root).data if root is not None else None


FULL_ONLY = "Not with `?fields=compact`."


class SpanNodeSerializer(serializers.Serializer):
    """A span in the listing (built as plain dicts by traces.selectors.span_tree). With
    ``?fields=compact`` only what a tree/waterfall row draws (about a third of the bytes)."""

    span_id = serializers.CharField()
    parent_span_id = serializers.CharField(help_text="Empty for a root span.")
    name = serializers.CharField()
    kind = serializers.CharField(required=False, help_text=FULL_ONLY)
    service_name = serializers.CharField(required=False, help_text=FULL_ONLY)
    start_time_unix_nano = serializers.IntegerField(required=False, help_text=FULL_ONLY)
    end_time_unix_nano = serializers.IntegerField(required=False, help_text=FULL_ONLY)
    start_offset_ms = serializers.FloatField(help_text="Start relative to the trace's first span.")
    duration_ms = serializers.FloatField()
    status_code = serializers.CharField()
    status_message = serializers.CharField(required=False, help_text=FULL_ONLY)
    span_type = serializers.CharField()
    model = serializers.CharField()
    input_tokens = serializers.IntegerField(allow_null=True, required=False,
                                            help_text=FULL_ONLY)
    output_tokens = serializers.IntegerField(allow_null=True, required=False,
                                             help_text=FULL_ONLY)
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=8, coerce_to_string=False,
                                        allow_null=True, required=False, help_text=FULL_ONLY)
    tool_name = serializers.CharField()
    is_retry = serializers.BooleanField()
    is_timeout = serializers.BooleanField()
    run_id = serializers.CharField(required=False, help_text=FULL_ONLY)
    depth = serializers.IntegerField(help_text="0 for roots and orphans.")
    orphan = serializers.BooleanField(
        help_text="True for a span whose parent is not in the trace (it and its subtree are "
        "listed after the rooted spans)."
    )
    children = serializers.ListField(
        child=serializers.DictField(), required=False,
        help_text="Only with `?tree=1`: the child spans, each of this same shape.",
    )


class SpanListSerializer(serializers.Serializer):
    trace_id = serializers.CharField()
    span_count = serializers.IntegerField()
    spans = SpanNodeSerializer(many=True, help_text=(
        "Flat (default): every span, depth-first from the roots with siblings by start time, "
        "then the orphans. With `?tree=1`: the roots and orphans, with nested `children`."))


class SpanListQuerySerializer(serializers.Serializer):
    tree = serializers.BooleanField(required=False, default=False)
    # Declared fields leave the class body, so this does not shadow ``Serializer.fields``.
    fields = serializers.ChoiceField(choices=["full", "compact"], required=False, default="full")


TRACE_ID_OR_EMPTY = r"^(?:[0-9a-fA-F]{32})?$"


class SpanQuerySerializer(serializers.Serializer):
    trace_id = serializers.RegexField(TRACE_ID_OR_EMPTY, required=False, default="",
                                      allow_blank=True)

