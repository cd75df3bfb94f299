"""The bundles app's URLs: the API (under /api/v1/) and the import page (in the shared `pages:`
namespace); mounted by tracefoundry/urls.py."""

from django.urls import path, re_path

from bundles import pages
from bundles.api import import_views

api_urlpatterns = [
    re_path(r"^bundles/import/?$", import_views.BundleImportView.as_view(),
            name="bundle-import"),
    re_path(r"^bundles/dry-replay/?$", import_views.BundleDryReplayView.as_view(),
            name="bundle-dry-replay"),
]

page_urlpatterns = [
    path("bundles/import/", pages.bundle_import_page, name="bundle-import"),
]
