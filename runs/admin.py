"""Admin for the run ledger: read-only views of the projection and the event stream.

Runs change only through runs.services, so the admin offers actions (cancel) rather than forms.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from runs import queue_selectors, services
from runs.models import Project, Run, RunEvent, Step, Worker
from tracefoundry.admin_formsets import capped
from tracefoundry.errors import DomainError
from tracefoundry.roles import Access

EVENT_INLINE_LIMIT = 50
STATE_COLOURS = {
    "queued": "#6b7280", "running": "#2563eb", "succeeded": "#16a34a", "failed": "#dc2626",
    "canceled": "#9ca3af", "pending": "#6b7280", "skipped": "#9ca3af",
}


def state_badge(state: str):
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px">{}</span>',
        STATE_COLOURS.get(state, "#6b7280"), state,
    )


@admin.display(description="Run")
def run_link(obj):
    """The run a step or event belongs to, linked to its admin page (list_display entry)."""
    url = reverse("admin:runs_run_change", args=[obj.run_id])
    return format_html('<a href="{}">{}</a>', url, obj.run_id)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at", "runs_link"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}

    def get_readonly_fields(self, request, obj=None):
        # The slug names the project's live-stream group and API scope: fixed once created.
        return ["slug"] if obj is not None else []

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None else self.prepopulated_fields

    @admin.display(description="Runs")
    def runs_link(self, obj):
        url = reverse("admin:runs_run_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">runs</a>', url)


class StepInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Step
    extra = 0
    fields = ["position", "name", "state_display", "started_at", "finished_at", "error"]
    readonly_fields = fields
    ordering = ["position", "created_at"]
    show_change_link = True

    @admin.display(description="State")
    def state_display(self, obj):
        return state_badge(obj.state)


class RunEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The newest events of the run; the link above the table opens all of them."""

    model = RunEvent
    extra = 0
    fields = ["seq", "created_at", "type", "level", "source", "step", "payload_preview"]
    readonly_fields = fields
    show_change_link = True
    verbose_name_plural = f"Latest events (newest first, at most {EVENT_INLINE_LIMIT})"

    formset = capped(EVENT_INLINE_LIMIT)

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-id")

    @admin.display(description="Payload")
    def payload_preview(self, obj):
        text = str(obj.payload)
        return text[:200] + ("…" if len(text) > 200 else "")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "name", "state_display", "attempt", "progress",
                    "event_count", "error_count", "created_at", "finished_at", "live_link"]
    list_filter = ["state", "kind", "project", "created_at"]
    search_fields = ["id", "name", "kind", "correlation_id", "idempotency_key", "trace_id"]
    date_hierarchy = "created_at"
    list_select_related = ["project"]
    readonly_fields = [f.name for f in Run._meta.fields] + ["events_link", "live_link"]
    inlines = [StepInline, RunEventInline]
    actions = ["cancel_runs"]
    fieldsets = [
        (None, {"fields": ["id", "project", "kind", "name", "state", "live_link", "events_link"]}),
        ("Input and result", {"fields": ["input", "output", "output_ref", "error"]}),
        ("Queue", {"fields": ["idempotency_key", "attempt", "max_attempts", "run_after",
                              "claimed_by", "claimed_at", "heartbeat_at", "cancel_requested_at"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "updated_at",
                               "latest_event_at"]}),
        ("Summary", {"fields": ["steps_total", "steps_completed", "event_count", "error_count",
                                "dropped_event_count"]}),
        ("Links", {"fields": ["correlation_id", "trace_id"]}),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only (runs change only through the services): no save buttons.
        extra_context = {**(extra_context or {}), "show_save": False,
                         "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="State", ordering="state")
    def state_display(self, obj):
        return state_badge(obj.state)

    @admin.display(description="Steps")
    def progress(self, obj):
        return f"{obj.steps_completed}/{obj.steps_total}" if obj.steps_total else "–"

    @admin.display(description="Live")
    def live_link(self, obj):
        return format_html('<a href="{}">View live →</a>', reverse("pages:run", args=[obj.pk]))

    @admin.display(description="Events")
    def events_link(self, obj):
        url = reverse("admin:runs_runevent_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">All {} events of this run →</a>', url, obj.event_count)

    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel_runs(self, request, queryset):
        done, failed = 0, 0
        for run_id in queryset.values_list("id", flat=True):
            try:
                services.run_cancel(run_id=run_id, reason=f"canceled in admin by {request.user}")
                done += 1
            except DomainError:
                failed += 1
        self.message_user(request, f"Cancel requested for {done} run(s).", messages.SUCCESS)
        if failed:
            self.message_user(request, f"{failed} run(s) had already finished.", messages.WARNING)


@admin.register(Step)
class StepAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", run_link, "position", "name", "state_display", "started_at",
                    "finished_at"]
    list_filter = ["state"]
    search_fields = ["id", "name", "run__id", "node_ref"]
    list_select_related = ["run"]

    @admin.display(description="State", ordering="state")
    def state_display(self, obj):
        return state_badge(obj.state)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", run_link, "seq", "type", "level", "source", "created_at", "truncated",
                    "late"]
    list_filter = ["level", "type", "source", "truncated"]
    search_fields = ["run__id", "type", "correlation_id", "=event_id"]
    date_hierarchy = "created_at"
    list_select_related = ["run"]
    show_full_result_count = False
    ordering = ["-id"]


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who claims runs (runs/worker_registry.py writes it): read-only."""

    list_display = ["worker_id", "online_display", "source", "host", "pid", "kinds_display",
                    "concurrency", "project", "started_at", "heartbeat_at"]
    list_filter = ["source", "project"]
    search_fields = ["worker_id", "host"]
    list_select_related = ["project"]

    def get_queryset(self, request):
        return queue_selectors.worker_list(access=Access(user=request.user))

    @admin.display(description="Online", boolean=True, ordering="online")
    def online_display(self, obj):
        return obj.online

    @admin.display(description="Kinds")
    def kinds_display(self, obj):
        return "every kind" if obj.every_kind else ", ".join(obj.kinds) or "–"
