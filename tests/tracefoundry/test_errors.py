"""Every API error is JSON `{"error": {"code", "message", "details"}}`, whoever raises it."""

from __future__ import annotations

import pytest
from django.urls import path

from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def assert_error(resp, status: int, code: str | None = None):
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"code", "message", "details"} and err["message"]
    if code:
        assert err["code"] == code


def test_unknown_api_url_is_json_404(viewer_client):
    assert_error(viewer_client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(viewer_client.get("/api/v1/runs/not-a-run-id"), 404, "not_found")


def test_wrong_method_is_json_405(viewer_client, project):
    run = RunFactory()
    assert_error(viewer_client.delete(f"/api/v1/runs/{run.id}"), 405, "method_not_allowed")


def test_unauthenticated_is_json_401(anon_client):
    assert_error(anon_client.get("/api/v1/runs"), 401, "not_authenticated")


def test_validation_error_lists_fields(engineer_client):
    resp = engineer_client.post("/api/v1/runs", {"kind": 5, "max_attempts": "x"}, format="json")
    assert_error(resp, 400, "invalid")
    assert "max_attempts" in resp.json()["error"]["details"]["fields"]


def _boom(request):
    raise RuntimeError("kaboom")


urlpatterns = [path("api/v1/boom", _boom)]


@pytest.mark.parametrize("debug", [False, True])
def test_unhandled_exception_on_api_path_is_json_500(client, settings, debug):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = debug
    resp = client.get("/api/v1/boom")
    assert_error(resp, 500, "server_error")
    assert "kaboom" not in resp.content.decode()


def test_throttled_enqueue_is_429_with_retry_after(engineer_client, settings):
    settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": "2/min", "cancel": None, "ingest": None}
    for _ in range(2):
        assert engineer_client.post("/api/v1/runs", {"kind": "x"}, format="json").status_code == 201
    resp = engineer_client.post("/api/v1/runs", {"kind": "x"}, format="json")
    assert_error(resp, 429, "throttled")
    assert int(resp["Retry-After"]) > 0


def test_non_api_404_stays_html(client):
    resp = client.get("/not-an-api-page")
    assert resp.status_code == 404
    assert not resp["Content-Type"].startswith("application/json")
