"""Admin for API keys: created through the service (the key is shown once), revoked by action."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from tracefoundry import services
from tracefoundry.errors import InvalidInput
from tracefoundry.models import SCOPES, ApiKey


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in SCOPES],
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "project", "user", "scopes"]

    def clean_user(self):
        user = self.cleaned_data.get("user")
        if user is not None and not user.is_active:
            raise forms.ValidationError("This user is inactive; a key for them would not work.")
        return user


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "project", "user", "scope_list", "created_at",
                    "last_used_at", "revoked_at"]
    list_filter = ["project", "revoked_at"]
    search_fields = ["prefix", "name", "user__username"]
    actions = ["revoke_keys"]
    readonly_fields = ["prefix", "name", "project", "user", "scopes", "created_at",
                       "last_used_at", "revoked_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        return ["name", "project", "user", "scopes"] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        # Keys are immutable apart from revocation; the change page is a read-only view.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="Scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            issued = services.apikey_create(
                project=form.cleaned_data["project"], scopes=form.cleaned_data["scopes"],
                name=form.cleaned_data.get("name", ""), user=form.cleaned_data.get("user"),
            )
        except InvalidInput as exc:
            self.message_user(request, exc.message, messages.ERROR)
            raise
        obj.pk = issued.key.pk
        obj.prefix = issued.key.prefix
        obj.key_hash = issued.key.key_hash
        obj._state.adding = False
        self.message_user(
            request,
            f"New API key (copy it now, it is not shown again): {issued.raw}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys", permissions=["delete"])
    def revoke_keys(self, request, queryset):
        for key in queryset:
            services.apikey_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
