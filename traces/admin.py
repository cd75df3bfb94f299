"""Admin for traces and spans: read-only, with filters and links to the run and the spans."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from payloads.models import PayloadRef
from tracefoundry.admin_formsets import capped
from traces.models import Span, Trace


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ModelFilter(admin.SimpleListFilter):
    """Traces that called a model (the summary's ``models`` list)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        names = (Span.objects.exclude(model="").values_list("model", flat=True)
                 .distinct().order_by("model")[:50])
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        trace_pks = Span.objects.filter(model=self.value()).values("trace_id")
        return queryset.filter(pk__in=trace_pks)


class SpanPayloadInline(admin.TabularInline):
    model = PayloadRef
    fk_name = "span"
    extra = 0
    fields = ["role", "blob_link", "json_path"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "Payloads"

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Blob")
    def blob_link(self, obj):
        url = reverse("admin:payloads_payloadblob_change", args=[obj.blob_id])
        return format_html('<a href="{}">{}</a>', url, obj.blob_id)


class SpanInline(ReadOnly, admin.TabularInline):
    model = Span
    extra = 0
    fields = ["span_id", "parent_span_id", "name", "span_type", "model", "status_code",
              "duration_ms", "input_tokens", "output_tokens", "cost_usd", "is_retry",
              "is_timeout"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    verbose_name_plural = "Spans (first 200 by start time)"
    formset = capped(200)

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("start_time_unix_nano", "id")


@admin.register(Trace)
class TraceAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["trace_id", "root_span_name", "service_name", "environment", "status",
                    "start_time", "duration_ms", "span_count", "input_tokens", "output_tokens",
                    "cost_usd", "run_link", "trace_page_link"]
    list_filter = ["status", "service_name", "environment", ModelFilter, "source", "has_retry",
                   "has_timeout", "project"]
    search_fields = ["=trace_id", "root_span_name", "run_id"]
    date_hierarchy = "start_time"
    inlines = [SpanInline]
    readonly_fields = ["trace_page_link"]
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(description="Run")
    def run_link(self, obj):
        if not obj.run_id:
            return "–"
        url = reverse("admin:runs_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, obj.run_id)

    @admin.display(description="Trace page")
    def trace_page_link(self, obj):
        url = reverse("pages:trace", args=[obj.trace_id])
        return format_html('<a href="{}">View trace</a>', url)


@admin.register(Span)
class SpanAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["span_id", "name", "trace_link", "span_type", "model", "service_name",
                    "status_code", "duration_ms", "is_retry", "is_timeout", "trace_page_link"]
    list_filter = ["span_type", "status_code", "kind", "is_retry", "is_timeout"]
    search_fields = ["=span_id", "name", "=trace__trace_id", "model", "tool_name"]
    list_select_related = ["trace"]
    show_full_result_count = False
    inlines = [SpanPayloadInline]
    readonly_fields = ["trace_page_link"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Trace")
    def trace_link(self, obj):
        url = reverse("admin:traces_trace_change", args=[obj.trace_id])
        return format_html('<a href="{}">{}</a>', url, obj.trace.trace_id)

    @admin.display(description="Trace page")
    def trace_page_link(self, obj):
        """The span selected on its trace's page."""
        url = reverse("pages:trace", args=[obj.trace.trace_id])
        return format_html('<a href="{}?span={}">View in trace</a>', url, obj.span_id)
