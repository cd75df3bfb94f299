"""The payloads app's URLs: the API (under /api/v1/, mounted by tracefoundry/urls.py)."""

from django.urls import re_path

from payloads.api import PayloadView

api_urlpatterns = [
    re_path(r"^payloads/(?:sha256:)?(?P<sha256>[0-9a-fA-F]{64})/?$", PayloadView.as_view(),
            name="payload-detail"),
]
