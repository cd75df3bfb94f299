"""The bundles app's URLs: the API (under /api/v1/) and the import page (in the shared `pages:`
namespace); mounted by tracefoundry/urls.py."""

from django.urls import path, re_path

from bundles import pages
from bundles.api import export_views, import_views

api_urlpatterns = [
    re_path(r"^traces/(?P<trace_id>[0-9a-fA-F]{32})/export/?$",
            export_views.TraceExportView.as_view(), name="trace-export"),
    re_path(r"^runs/(?P<run_id>run_[0-9A-Za-z]{1,36})/export/?$",
            export_views.RunExportView.as_view(), name="run-export"),
    re_path(r"^bundles/import/?$", import_views.BundleImportView.as_view(),
            name="bundle-import"),
    re_path(r"^bundles/dry-replay/?$", import_views.BundleDryReplayView.as_view(),
            name="bundle-dry-replay"),
]

page_urlpatterns = [
    path("bundles/import/", pages.bundle_import_page, name="bundle-import"),
]
