"""The OpenAPI schema is valid, documents the runs API, and the docs page renders offline."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_is_valid_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/runs", "/api/v1/runs/{run_id}/events",
                 "/api/v1/runs/{run_id}/steps/{step_id}/start", "/api/v1/runs/{run_id}/cancel"):
        assert f"{path}:" in text or f"{path}/:" in text, path


@pytest.mark.django_db
def test_schema_and_docs_endpoints(client):
    resp = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    assert resp.json()["info"]["title"] == "TraceFoundry API"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # served from the sidecar, works offline
