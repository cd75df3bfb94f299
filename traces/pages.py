"""Pages for traces: the trace list and the trace detail (tree, waterfall, inspector)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path


@login_required
def traces_list(request):
    return render(request, "pages/traces_list.html", {"nav": "traces"})


@login_required
def trace_detail(request, trace_id):
    return render(request, "pages/trace_detail.html", {"nav": "traces", "trace_id": trace_id})


urlpatterns = [
    path("traces/", traces_list, name="traces"),
    path("traces/<str:trace_id>/", trace_detail, name="trace"),
]
