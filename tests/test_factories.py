"""The shared factories build rows the product's own reads accept (tests/factories.py)."""

from __future__ import annotations

import pytest

from payloads.store import payload_read
from tests.conftest import client_for
from tests.factories import ApiKeyFactory, PayloadBlobFactory, SpanFactory, TraceFactory

pytestmark = pytest.mark.django_db


def test_api_key_factory_issues_a_key_that_authenticates(project):
    key = ApiKeyFactory(scopes="runs:read")
    assert key.project == project and key.raw.startswith("tf_")
    assert client_for(raw_key=key.raw).get("/api/v1/runs").status_code == 200
    assert client_for(raw_key=key.raw + "x").get("/api/v1/runs").status_code == 401


def test_payload_blob_factory_stores_distinct_readable_bytes():
    first, second = PayloadBlobFactory(), PayloadBlobFactory()
    assert first.sha256 != second.sha256
    assert payload_read(first).startswith(b"payload ")


def test_span_factory_builds_its_trace_and_project(engineer_client):
    span = SpanFactory(name="tool call")
    assert span.trace.project.slug.startswith("project-")
    assert SpanFactory(trace=span.trace).trace_id == span.trace_id
    assert TraceFactory().trace_id != span.trace.trace_id
    resp = engineer_client.get(f"/api/v1/spans/{span.span_id}")
    assert resp.status_code == 200 and resp.json()["name"] == "tool call"
