"""The admin's trace and span pages link to the trace explorer page."""

import pytest

from tests.conftest import client_for
from tests.traces.otlp_builders import json_request, json_span
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db
T1, S1 = "d" * 31 + "2", "2" * 16


def test_admin_links_traces_and_spans_to_the_trace_page(client, admin_user, make_key):
    _, raw = make_key("ingest")
    resp = client_for(raw_key=raw).generic("POST", "/otlp/v1/traces", json_request(
        [json_span(T1, S1, "agent")]), content_type="application/json")
    assert resp.status_code == 200
    client.force_login(admin_user)
    trace, span = Trace.objects.get(trace_id=T1), Span.objects.get()
    page = f'href="/traces/{T1}/"'
    assert page in client.get("/admin/traces/trace/").content.decode()
    assert page in client.get(f"/admin/traces/trace/{trace.pk}/change/").content.decode()
    in_trace = f'href="/traces/{T1}/?span={S1}"'
    assert in_trace in client.get("/admin/traces/span/").content.decode()
    assert in_trace in client.get(f"/admin/traces/span/{span.pk}/change/").content.decode()
    assert client.get(f"/traces/{T1}/").status_code == 200
