"""The admin's "Export selected as bundle" action, on the Trace and Run admin pages.

The Trace and Run admins live in ``traces`` and ``runs``, which sit below ``bundles`` and may
not import it; so this module (found by the admin's autodiscovery, like every app's
``admin.py``) adds the action to their registered ModelAdmins. It imports ``traces.admin`` and
``runs.admin`` itself, so the registrations exist whatever the order of INSTALLED_APPS.

One selected row: its bundle is the response. Several: one zip holding a bundle per row
(``bundles.multi_export``). The mode is the most the admin user may have (``full`` for an
engineer or admin, ``strict`` for a viewer), as for the API without ``mode``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages

import runs.admin  # noqa: F401  (registers the Run admin this module extends)
import traces.admin  # noqa: F401  (registers the Trace admin this module extends)
from bundles.exports import PreparedBundle, export_mode_for, run_export, trace_export
from bundles.multi_export import bundles_zip
from bundles.streaming import zip_response
from runs.models import Run
from tracefoundry.errors import DomainError
from tracefoundry.roles import Access, Cap
from traces.models import Trace

# At most this many rows a download: each bundle is read and deflated in the request.
MAX_SELECTED = 100


def _export_selected(modeladmin, request, queryset, *, kind: str, field: str,
                     export: Callable[..., PreparedBundle]):
    access = Access(user=request.user)
    if not access.can(Cap.READ):
        modeladmin.message_user(request, f"Exporting {kind}s needs a role (viewer, engineer or "
                                "admin).", messages.ERROR)
        return None
    idents = list(queryset.values_list(field, flat=True)[:MAX_SELECTED + 1])
    if len(idents) > MAX_SELECTED:
        modeladmin.message_user(
            request, f"Select at most {MAX_SELECTED} {kind}s to export at once (a bundle each "
            f"is read and zipped while you wait); narrow the list with the filters or the "
            f"search, or export them in parts.", messages.ERROR)
        return None
    mode = export_mode_for(access, None)
    try:
        if len(idents) == 1:
            bundle = export(access=access, mode=mode, **{f"{kind}_id": idents[0]})
            return zip_response(request, bundle.chunks(), filename=bundle.filename,
                                mode=bundle.mode, on_close=bundle.close)
        suffix = "-strict" if mode == "strict" else ""
        content = bundles_zip(idents, lambda ident: export(
            access=access, mode=mode, **{f"{kind}_id": ident}))
        return zip_response(request, content, mode=mode, reads_database=True,
                            filename=f"tracefoundry-{len(idents)}-{kind}s{suffix}.zip")
    except DomainError as exc:  # a single row deleted meanwhile: say so on the list
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return None


@admin.action(description="Export selected as bundle")
def export_traces(modeladmin, request, queryset):
    return _export_selected(modeladmin, request, queryset, kind="trace", field="trace_id",
                            export=trace_export)


@admin.action(description="Export selected as bundle")
def export_runs(modeladmin, request, queryset):
    return _export_selected(modeladmin, request, queryset, kind="run", field="id",
                            export=run_export)


def _add_action(model, action) -> None:
    model_admin = admin.site.get_model_admin(model)
    # On the instance, a new list: the class attribute (shared, maybe None) stays as it was.
    model_admin.actions = [*(model_admin.actions or ()), action]


_add_action(Trace, export_traces)
_add_action(Run, export_runs)
