"""The admin links a trace to its run and spans, and a span to its payload blobs."""

import pytest

from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import json_request, json_span
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db
T1, S1 = "d" * 31 + "1", "1" * 16


def test_trace_and_span_pages_link_run_spans_and_payloads(client, admin_user, make_key, project):
    run = RunFactory(state="running")
    _, raw = make_key("ingest")
    client_for(raw_key=raw).generic("POST", "/otlp/v1/traces", json_request([json_span(
        T1, S1, "chat", attributes={"tracefoundry.run_id": run.id, "input.value": "q" * 20_000,
                                    "gen_ai.request.model": "gpt-4o"})]),
        content_type="application/json")
    client.force_login(admin_user)
    trace = Trace.objects.get(trace_id=T1)
    page = client.get(f"/admin/traces/trace/{trace.pk}/change/").content.decode()
    assert "chat" in page and S1 in page
    listing = client.get("/admin/traces/trace/?model=gpt-4o").content.decode()
    assert f"/admin/runs/run/{run.id}/change/" in listing
    span = Span.objects.get()
    span_page = client.get(f"/admin/traces/span/{span.pk}/change/").content.decode()
    sha = span.attributes["tracefoundry.payload.input_ref"].removeprefix("sha256:")
    assert f"/admin/payloads/payloadblob/{sha}/change/" in span_page
