"""Pages for traces: the trace list and the trace detail (tree, waterfall, inspector).

Both are thin: the list is drawn by ``static/tf/traces.js`` from ``GET /api/v1/traces`` (so the
page has exactly the API's filters and sorts), the detail page renders the trace summary and
leaves the span tree, waterfall and inspector to ``static/tf/trace_detail.js``.
"""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from tracefoundry.errors import NotFound
from tracefoundry.roles import Access, Cap, reader_required
from traces import selectors
from traces.models import TraceStatus


@reader_required
def traces_list(request):
    return render(request, "pages/traces_list.html", {
        "nav": "traces", "statuses": TraceStatus.values,
    })


@reader_required
def trace_detail(request, trace_id: str):
    access = Access(user=request.user)
    try:
        trace = selectors.trace_get(trace_id=trace_id, access=access)
    except NotFound as exc:
        raise Http404(f"trace {trace_id} does not exist") from exc
    root = selectors.trace_root_span(trace=trace)
    return render(request, "pages/trace_detail.html", {
        "nav": "traces", "trace": trace, "trace_id": trace.trace_id, "root_span": root,
        "total_tokens": trace.input_tokens + trace.output_tokens,
        # The export API is the bundles app's (a layer above): named, not imported.
        "export_url": reverse("trace-export", kwargs={"trace_id": trace.trace_id}),
        "export_full": access.can(Cap.PAYLOADS),
    })

