"""Pages for runs: the runs list, the live run page, projects and the project stream.

The views render the frame and the first state; the browser does the rest over the public API
and the live protocol (``static/tf/live.js``): the runs list pages through ``GET /api/v1/runs``
with the API's own filters and cursors, the run page and the project stream follow their
WebSocket (falling back to SSE, then polling, for a run).
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from runs import selectors, wire
from runs.api.serializers import RunSerializer
from runs.models import RunState
from tracefoundry.errors import NotFound
from tracefoundry.roles import Access, Cap, reader_required

LIVE_TIMELINE_ROWS = 2000


@reader_required
def runs_list(request):
    projects = selectors.project_list(access=Access(user=request.user))
    return render(request, "pages/runs_list.html", {
        "nav": "runs", "projects": projects, "states": RunState.values,
    })


@reader_required
@ensure_csrf_cookie  # the cancel button posts to the API with the CSRF token from the cookie
def run_detail(request, run_id: str):
    access = Access(user=request.user)
    try:
        run = selectors.run_get(run_id=run_id, access=access)
    except NotFound as exc:
        raise Http404(f"run {run_id} does not exist") from exc
    steps = [wire.step_dict(step) for step in selectors.step_list(run=run)]
    return render(request, "pages/run_detail.html", {
        "nav": "runs", "run": run, "run_id": run.id,
        "run_json": RunSerializer(run).data, "steps_json": steps,
        "timeline_rows": LIVE_TIMELINE_ROWS,
        # The export API is the bundles app's (a layer above): named, not imported.
        "export_url": reverse("run-export", kwargs={"run_id": run.id}),
        "export_full": access.can(Cap.PAYLOADS),
    })


@reader_required
def projects(request):
    rows = selectors.project_list_with_counts(access=Access(user=request.user))
    return render(request, "pages/projects.html", {"nav": "projects", "projects": rows})


@reader_required
def project_stream(request, slug: str):
    try:
        project = selectors.project_get(slug=slug)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    return render(request, "pages/project_stream.html", {
        "nav": "projects", "project": project, "slug": project.slug,
        "timeline_rows": LIVE_TIMELINE_ROWS,
    })

