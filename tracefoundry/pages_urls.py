"""The explorer pages (login required), namespaced `pages:`; each app owns its own views."""

from django.urls import path
from django.views.generic import RedirectView

from runs import pages as run_pages
from traces import pages as trace_pages

app_name = "pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="pages:runs", permanent=False), name="home"),
    *run_pages.urlpatterns,
    *trace_pages.urlpatterns,
]
