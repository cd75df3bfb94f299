"""The traces app's URLs: the API (under /api/v1/), OTLP ingest (/otlp/v1/traces) and the pages
(in the shared `pages:` namespace); all mounted by tracefoundry/urls.py."""

from django.urls import path, re_path

from traces import pages
from traces.api import views
from traces.views_otlp import otlp_traces

TRACE = r"traces/(?P<trace_id>[0-9a-fA-F]{32})"

api_urlpatterns = [
    re_path(r"^traces/?$", views.TraceListView.as_view(), name="trace-list"),
    re_path(rf"^{TRACE}/?$", views.TraceDetailView.as_view(), name="trace-detail"),
    re_path(rf"^{TRACE}/spans/?$", views.TraceSpanListView.as_view(), name="trace-spans"),
    re_path(r"^spans/(?P<span_id>[0-9a-fA-F]{16})/?$", views.SpanDetailView.as_view(),
            name="span-detail"),
]

otlp_urlpatterns = [
    path("otlp/v1/traces", otlp_traces, name="otlp-traces"),
]

page_urlpatterns = [
    path("traces/", pages.traces_list, name="traces"),
    path("traces/<str:trace_id>/", pages.trace_detail, name="trace"),
]
