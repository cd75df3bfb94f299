"""``GET /api/v1/traces/{id}/spans?fields=compact``: the columns the trace page draws, nothing else.

Traces are created through the real OTLP endpoint with an ingest key.
"""

from __future__ import annotations

import pytest

from tests.conftest import client_for
from tests.traces.otlp_builders import NOW, json_request, json_span

pytestmark = pytest.mark.django_db

SPANS = "/api/v1/traces/{}/spans"
T = "e" * 32
COMPACT_KEYS = {"span_id", "parent_span_id", "name", "start_offset_ms", "duration_ms",
                "status_code", "span_type", "model", "tool_name", "is_retry", "is_timeout",
                "depth", "orphan"}


def sid(n: int) -> str:
    return f"{n:016x}"


@pytest.fixture
def trace(make_key):
    _, raw = make_key("ingest")
    spans = [
        json_span(T, sid(1), "agent", start=NOW, duration_ms=50),
        json_span(T, sid(2), "chat", parent=sid(1), start=NOW + 2_000_000, duration_ms=20,
                  attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                              "retry.count": 1}),
        json_span(T, sid(3), "search", parent=sid(1), start=NOW + 30_000_000, duration_ms=5,
                  attributes={"gen_ai.tool.name": "web_search"}, status=2),
        json_span(T, sid(4), "lost child", parent=sid(99), start=NOW + 1_000_000),
    ]
    resp = client_for(raw_key=raw).generic("POST", "/otlp/v1/traces", json_request(spans),
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    return T


def test_compact_lists_the_same_spans_in_the_same_order_with_fewer_keys(viewer_client, trace):
    full = viewer_client.get(SPANS.format(trace)).json()
    compact = viewer_client.get(SPANS.format(trace), {"fields": "compact"}).json()
    assert compact["trace_id"] == trace and compact["span_count"] == 4
    assert [s["span_id"] for s in compact["spans"]] == [s["span_id"] for s in full["spans"]]
    for small, big in zip(compact["spans"], full["spans"], strict=True):
        assert set(small) == COMPACT_KEYS
        assert small == {key: big[key] for key in COMPACT_KEYS}
    chat, search = compact["spans"][1], compact["spans"][2]
    assert chat["model"] == "gpt-4o" and chat["is_retry"] and chat["start_offset_ms"] == 2.0
    assert search["tool_name"] == "web_search" and search["status_code"] == "error"
    assert compact["spans"][3]["orphan"] is True


def test_full_is_the_default_and_can_be_asked_for(viewer_client, trace):
    default = viewer_client.get(SPANS.format(trace)).json()
    full = viewer_client.get(SPANS.format(trace), {"fields": "full"}).json()
    assert default == full
    assert "start_time_unix_nano" in full["spans"][0] and "run_id" in full["spans"][0]


def test_compact_tree_nests_compact_nodes(viewer_client, trace):
    tree = viewer_client.get(SPANS.format(trace), {"fields": "compact", "tree": "1"}).json()
    root = tree["spans"][0]
    assert set(root) == COMPACT_KEYS | {"children"}
    assert [c["name"] for c in root["children"]] == ["chat", "search"]


def test_unknown_fields_value_is_a_400(viewer_client, trace):
    resp = viewer_client.get(SPANS.format(trace), {"fields": "everything"})
    assert resp.status_code == 400
    assert "fields" in resp.json()["error"]["details"]


def test_compact_needs_the_same_access(anon_client, trace):
    assert anon_client.get(SPANS.format(trace), {"fields": "compact"}).status_code in (401, 403)
