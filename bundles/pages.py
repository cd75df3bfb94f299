"""The import page: upload a bundle to import it, or to dry-replay it, and read the report.

The page is a frame; ``static/tf/bundle_import.js`` posts the file to the API
(``/api/v1/bundles/import`` or ``/dry-replay``, with the session and its CSRF token: an upload
to a page URL would meet the 1 MiB cap on page bodies) and draws the JSON report.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from runs.selectors import DEFAULT_PROJECT_SLUG, project_list
from tracefoundry.roles import Access, Cap, reader_required


@reader_required
@ensure_csrf_cookie
def bundle_import_page(request):
    access = Access(user=request.user)
    if not access.can(Cap.WRITE):
        raise PermissionDenied("importing bundles is for engineers and admins")
    return render(request, "pages/bundle_import.html", {
        "nav": "import", "projects": project_list(access=access),
        "default_project": DEFAULT_PROJECT_SLUG,
    })
