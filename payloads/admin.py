from django.contrib import admin

from payloads.models import PayloadBlob, PayloadRef


class PayloadRefInline(admin.TabularInline):
    model = PayloadRef
    extra = 0
    fields = ["role", "run_event", "span", "json_path", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PayloadBlob)
class PayloadBlobAdmin(admin.ModelAdmin):
    list_display = ["sha256", "content_type", "size_bytes", "stored_bytes", "compression",
                    "redaction_mode", "created_at"]
    list_filter = ["content_type", "redaction_mode", "compression"]
    search_fields = ["=sha256"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in PayloadBlob._meta.fields]
    inlines = [PayloadRefInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
