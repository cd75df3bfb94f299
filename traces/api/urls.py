from django.urls import re_path

from traces.api import views

TRACE = r"traces/(?P<trace_id>[0-9a-fA-F]{32})"

urlpatterns = [
    re_path(r"^traces/?$", views.TraceListView.as_view(), name="trace-list"),
    re_path(rf"^{TRACE}/?$", views.TraceDetailView.as_view(), name="trace-detail"),
    re_path(rf"^{TRACE}/spans/?$", views.TraceSpanListView.as_view(), name="trace-spans"),
    re_path(r"^spans/(?P<span_id>[0-9a-fA-F]{16})/?$", views.SpanDetailView.as_view(),
            name="span-detail"),
]
