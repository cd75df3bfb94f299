"""The project's URLs: each app declares its own in its ``urls.py`` (``api_urlpatterns`` under
/api/v1/, ``page_urlpatterns`` in the shared ``pages:`` namespace); this module mounts them."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from bundles import urls as bundle_urls
from payloads import urls as payload_urls
from runs import urls as run_urls
from tracefoundry import health
from traces import urls as trace_urls

pages = [
    path("", RedirectView.as_view(pattern_name="pages:runs", permanent=False), name="home"),
    *run_urls.page_urlpatterns,
    *trace_urls.page_urlpatterns,
    *bundle_urls.page_urlpatterns,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/v1/", include(run_urls.api_urlpatterns)),
    path("api/v1/", include(trace_urls.api_urlpatterns)),
    path("api/v1/", include(payload_urls.api_urlpatterns)),
    path("api/v1/", include(bundle_urls.api_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    *trace_urls.otlp_urlpatterns,
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include((pages, "pages"))),
]
