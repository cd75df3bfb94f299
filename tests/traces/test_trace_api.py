"""The traces query API: list filters, sorts and cursors; trace detail; span trees; span lookup.

Traces are created through the real OTLP endpoint with an ingest key.
"""

from __future__ import annotations

from base64 import b64encode
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import client_for
from tests.traces.otlp_builders import NOW, json_request, json_span
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db

OTLP = "/otlp/v1/traces"
LIST = "/api/v1/traces"
SEC = 1_000_000_000
BASE = NOW - 3600 * SEC  # an hour ago, so every trace is in the past
A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


@pytest.fixture
def ingest(make_key):
    _, raw = make_key("ingest")
    return client_for(raw_key=raw)


@pytest.fixture
def other_ingest(make_key, other_project):
    _, raw = make_key("ingest", project_obj=other_project)
    return client_for(raw_key=raw)


def send(client, spans: list[dict], **kwargs) -> None:
    resp = client.generic("POST", OTLP, json_request(spans, **kwargs),
                          content_type="application/json")
    assert resp.status_code == 200, resp.content
    assert resp.json() == {}, resp.json()


def llm(trace_id, span_id, parent, model, tokens_in, tokens_out, *, start, cost=None, **attrs):
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                  "gen_ai.usage.input_tokens": tokens_in,
                  "gen_ai.usage.output_tokens": tokens_out, **attrs}
    if cost is not None:
        attributes["tracefoundry.cost_usd"] = cost
    return json_span(trace_id, span_id, f"chat {model}", parent=parent, start=start + SEC // 100,
                     duration_ms=5, attributes=attributes)


def tool(trace_id, span_id, parent, name, *, start, **kwargs):
    return json_span(trace_id, span_id, f"execute_tool {name}", parent=parent,
                     start=start + SEC // 50, duration_ms=5,
                     attributes={"gen_ai.operation.name": "execute_tool",
                                 "gen_ai.tool.name": name}, **kwargs)


@pytest.fixture
def corpus(ingest, other_ingest):
    """A (ok, gpt-4o, search_web, cheap-ish), B (error, retry, gpt-4o-mini, read_file, slow,
    many tokens), C (timeout, linked to a run, no model); D in the other project."""
    a0, b0, c0 = BASE + SEC, BASE + 2 * SEC, BASE + 3 * SEC
    send(ingest, [
        json_span(A, sid(1), "Plan trip", start=a0, duration_ms=100, status=1),
        llm(A, sid(2), sid(1), "gpt-4o", 100, 50, start=a0, cost=0.5),
        tool(A, sid(3), sid(1), "search_web", start=a0),
    ], service="agent", environment="prod")
    send(ingest, [
        json_span(B, sid(1), "nightly build", start=b0, duration_ms=2000),
        llm(B, sid(2), sid(1), "gpt-4o-mini", 1000, 1000, start=b0, cost=0.01,
            **{"tracefoundry.retry": True}),
        tool(B, sid(3), sid(1), "read_file", start=b0, status=2),
    ], service="worker", environment="staging")
    send(ingest, [
        json_span(C, sid(1), "plan dinner", start=c0, duration_ms=50,
                  attributes={"tracefoundry.timeout": True, "tracefoundry.run_id": "run_01ABC"}),
    ], service="agent", environment="prod")
    send(other_ingest, [json_span(D, sid(1), "elsewhere", start=c0 + SEC)], service="remote")
    return {"A": A, "B": B, "C": C, "D": D}


def listed(client, **params) -> list[str]:
    resp = client.get(LIST, params)
    assert resp.status_code == 200, resp.content
    return [t["trace_id"] for t in resp.json()["results"]]


def names(ids: list[str]) -> list[str]:
    return [{A: "A", B: "B", C: "C", D: "D"}[i] for i in ids]


# --- the list ---------------------------------------------------------------------------------

def test_list_shape(viewer_client, corpus):
    body = viewer_client.get(LIST).json()
    assert set(body) == {"next", "previous", "results"}
    assert names([t["trace_id"] for t in body["results"]]) == ["D", "C", "B", "A"]
    a = next(t for t in body["results"] if t["trace_id"] == A)
    assert a["project"] == "default" and a["root_span_name"] == "Plan trip"
    assert a["service_name"] == "agent" and a["environment"] == "prod" and a["status"] == "ok"
    assert a["span_count"] == 3 and a["error_count"] == 0
    assert (a["input_tokens"], a["output_tokens"], a["total_tokens"]) == (100, 50, 150)
    assert a["cost_usd"] == 0.5 and a["models"] == ["gpt-4o"] and a["tools"] == ["search_web"]
    assert a["duration_ms"] == 100 and a["start_time"].startswith(
        datetime.fromtimestamp(BASE // SEC + 1, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    assert a["links"] == {"self": f"/api/v1/traces/{A}", "spans": f"/api/v1/traces/{A}/spans",
                          "run": None}
    c = next(t for t in body["results"] if t["trace_id"] == C)
    assert c["run_id"] == "run_01ABC" and c["links"]["run"] == "/api/v1/runs/run_01ABC"


@pytest.mark.parametrize("params, expected", [
    ({"project": "default"}, ["C", "B", "A"]),
    ({"project": "other"}, ["D"]),
    ({"project": "nope"}, []),
    ({"service": "agent"}, ["C", "A"]),
    ({"service": "worker"}, ["B"]),
    ({"environment": "prod"}, ["C", "A"]),
    ({"environment": "staging"}, ["B"]),
    ({"status": "error"}, ["B"]),
    ({"status": "ok,unset", "project": "default"}, ["C", "A"]),
    ({"status": "ok"}, ["A"]),
    ({"model": "gpt-4o"}, ["A"]),
    ({"model": "gpt-4o-mini"}, ["B"]),
    ({"model": "gpt"}, []),
    ({"model": "GPT-4O"}, []),
    ({"tool": "file"}, ["B"]),
    ({"tool": "SEARCH"}, ["A"]),
    ({"tool": "_"}, ["B", "A"]),
    ({"tool": "%"}, []),
    ({"tool": "h_w"}, ["A"]),
    ({"tool": "e\", \"r"}, []),
    ({"tool": "READ_FILE"}, ["B"]),
    ({"tool": "web"}, ["A"]),
    ({"tool": "web read"}, []),
    ({"tool": "b\",\"r"}, []),
    ({"tool": "no such tool"}, []),
    ({"min_latency_ms": 1000}, ["B"]),
    ({"max_latency_ms": 60}, ["D", "C"]),
    ({"min_latency_ms": 60, "max_latency_ms": 1000}, ["A"]),
    ({"min_tokens": 150}, ["B", "A"]),
    ({"min_tokens": 151}, ["B"]),
    ({"min_cost": "0.1"}, ["A"]),
    ({"min_cost": "0.01"}, ["B", "A"]),
    ({"q": "plan"}, ["C", "A"]),
    ({"q": "NIGHTLY"}, ["B"]),
    ({"q": "bbbbbbbb"}, ["B"]),
    ({"q": "BBBB"}, ["B"]),
    ({"q": "bbb"}, []),
    ({"q": "zzzz"}, []),
    ({"has_error": "true"}, ["B"]),
    ({"has_error": "false", "project": "default"}, ["C", "A"]),
    ({"has_retry": "true"}, ["B"]),
    ({"has_retry": "false", "project": "default"}, ["C", "A"]),
    ({"has_timeout": "true"}, ["C"]),
    ({"run_id": "run_01ABC"}, ["C"]),
    ({"run_id": "run_nope"}, []),
    ({"service": "agent", "model": "gpt-4o", "tool": "search"}, ["A"]),
])
def test_filters(viewer_client, corpus, params, expected):
    assert names(listed(viewer_client, **params)) == expected


def test_time_range(viewer_client, corpus):
    b_start = Trace.objects.get(trace_id=B).start_time.isoformat()
    assert names(listed(viewer_client, since=b_start, project="default")) == ["C", "B"]
    assert names(listed(viewer_client, before=b_start)) == ["A"]
    assert names(listed(viewer_client, since=b_start, before=Trace.objects.get(
        trace_id=C).start_time.isoformat())) == ["B"]
    assert listed(viewer_client, since="2999-01-01T00:00:00Z") == []


@pytest.mark.parametrize("params", [
    {"status": "bogus"}, {"since": "yesterday"}, {"min_latency_ms": "fast"},
    {"min_tokens": "many"}, {"min_cost": "cheap"}, {"sort": "random"}, {"ordering": "name"},
    {"ordering": "-root_span_name"}, {"cursor": "not-a-cursor"},
    {"cursor": b64encode(b"s=-start_time&v=yesterday&i=1").decode()},
    {"cursor": b64encode(b"s=-start_time&v=2024-01-01T00:00:00&i=1").decode()},
    {"cursor": b64encode(b"s=-cost_usd&v=NaN&i=1").decode(), "sort": "most_expensive"},
    {"cursor": b64encode(b"s=-duration_ms&v=inf&i=1").decode(), "sort": "slowest"},
])
def test_bad_query_is_400(viewer_client, corpus, params):
    resp = viewer_client.get(LIST, params)
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("params, expected", [
    ({}, ["C", "B", "A"]),
    ({"sort": "newest"}, ["C", "B", "A"]),
    ({"sort": "oldest"}, ["A", "B", "C"]),
    ({"sort": "slowest"}, ["B", "A", "C"]),
    ({"sort": "fastest"}, ["C", "A", "B"]),
    ({"sort": "most_expensive"}, ["A", "B", "C"]),
    ({"sort": "most_tokens"}, ["B", "A", "C"]),
    ({"ordering": "-duration_ms"}, ["B", "A", "C"]),
    ({"ordering": "start_time"}, ["A", "B", "C"]),
    ({"ordering": "total_tokens"}, ["C", "A", "B"]),
    ({"ordering": "-cost_usd"}, ["A", "B", "C"]),
    ({"ordering": "start_time", "sort": "slowest"}, ["B", "A", "C"]),
])
def test_sorts(viewer_client, corpus, params, expected):
    assert names(listed(viewer_client, project="default", **params)) == expected


def test_list_reads_only_the_summary_table(viewer_client, corpus):
    with CaptureQueriesContext(connection) as ctx:
        resp = viewer_client.get(LIST, {"model": "gpt-4o", "tool": "search", "q": "plan",
                                        "min_tokens": 1, "sort": "most_tokens"})
    assert resp.status_code == 200 and names([t["trace_id"] for t in resp.json()["results"]]) \
        == ["A"]
    assert not any("traces_span" in q["sql"] for q in ctx.captured_queries)


# --- cursor pagination ------------------------------------------------------------------------

@pytest.fixture
def many(ingest):
    """23 traces with plenty of ties: start times in pairs, three durations, no cost/tokens for
    most, so every sort has to break ties to page correctly."""
    spans = []
    for i in range(23):
        attrs = {"tracefoundry.cost_usd": 0.25} if i % 5 == 0 else {}
        if i % 4 == 0:
            attrs.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                          "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1})
        spans.append(json_span(tid(1000 + i), sid(1), f"t{i}", start=BASE + (i // 2) * SEC,
                               duration_ms=10 * (1 + i % 3), attributes=attrs))
    send(ingest, spans)
    return {tid(1000 + i) for i in range(23)}


SORT_KEYS = {
    "newest": lambda t: (-t.start_time.timestamp(), -t.pk),
    "oldest": lambda t: (t.start_time.timestamp(), t.pk),
    "slowest": lambda t: (-t.duration_ms, -t.pk),
    "fastest": lambda t: (t.duration_ms, t.pk),
    "most_expensive": lambda t: (-t.cost_usd, -t.pk),
    "most_tokens": lambda t: (-(t.input_tokens + t.output_tokens), -t.pk),
}


@pytest.mark.parametrize("sort", list(SORT_KEYS))
def test_cursor_walks_every_trace_once_in_every_sort(viewer_client, many, sort):
    seen, url, pages = [], f"{LIST}?limit=5&sort={sort}", 0
    while url:
        body = viewer_client.get(url).json()
        seen += [t["trace_id"] for t in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 5 and len(seen) == 23 and set(seen) == many
    expected = [t.trace_id for t in sorted(Trace.objects.all(), key=SORT_KEYS[sort])]
    assert seen == expected

    # ... and back again through the previous links.
    back, url = [], body["previous"]
    first_of_last = body["results"][0]["trace_id"]
    while url:
        body = viewer_client.get(url).json()
        back = [t["trace_id"] for t in body["results"]] + back
        url = body["previous"]
    assert back == seen[: seen.index(first_of_last)]


def test_ordering_param_pages_too(viewer_client, many):
    seen, url = [], f"{LIST}?limit=7&ordering=-total_tokens"
    while url:
        body = viewer_client.get(url).json()
        seen += [t["trace_id"] for t in body["results"]]
        url = body["next"]
    assert len(seen) == 23 and set(seen) == many


def test_cursor_belongs_to_its_sort(viewer_client, many):
    next_url = viewer_client.get(LIST, {"limit": 5, "sort": "slowest"}).json()["next"]
    cursor = next_url.split("cursor=")[1].split("&")[0]
    resp = viewer_client.get(LIST, {"limit": 5, "sort": "newest", "cursor": cursor})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["fields"]["cursor"]


def test_page_size_is_capped_at_100(viewer_client, ingest):
    send(ingest, [json_span(tid(5000 + i), sid(1), start=BASE + i) for i in range(105)])
    body = viewer_client.get(LIST, {"limit": 500}).json()
    assert len(body["results"]) == 100 and body["next"]
    assert len(viewer_client.get(body["next"]).json()["results"]) == 5


# --- access -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    LIST, f"{LIST}/{A}", f"{LIST}/{A}/spans", f"/api/v1/spans/{sid(2)}?trace_id={A}",
])
def test_role_matrix(path, corpus, anon_client, viewer_client, engineer_client,
                     admin_client_api, no_role_user, key_client, engineer):
    resp = anon_client.get(path)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "not_authenticated"
    assert client_for(no_role_user).get(path).status_code == 403
    for client in (viewer_client, engineer_client, admin_client_api,
                   key_client("runs:read"), key_client("runs:read", user=engineer)):
        assert client.get(path).status_code == 200, path
    for scopes in ("ingest", "runs:write", "worker"):
        resp = key_client(scopes).get(path)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def test_keys_see_only_their_project(corpus, key_client, other_project):
    other_key = key_client("runs:read", project_obj=other_project)
    assert names(listed(other_key)) == ["D"]
    assert listed(other_key, project="default") == []
    for path in (f"{LIST}/{A}", f"{LIST}/{A}/spans", f"/api/v1/spans/{sid(1)}?trace_id={A}"):
        resp = other_key.get(path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found", path
    # The span id exists in A, B, C and D; for this key only D's is visible.
    resp = other_key.get(f"/api/v1/spans/{sid(1)}")
    assert resp.status_code == 200 and resp.json()["trace_id"] == D
    assert names(listed(key_client("runs:read"))) == ["C", "B", "A"]


# --- one trace --------------------------------------------------------------------------------

def test_trace_detail(viewer_client, corpus):
    resp = viewer_client.get(f"{LIST}/{A}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["trace_id"] == A and body["span_count"] == 3 and body["total_tokens"] == 150
    assert body["links"] == {"self": f"/api/v1/traces/{A}", "spans": f"/api/v1/traces/{A}/spans",
                             "run": None}
    root = body["root_span"]
    assert root["span_id"] == sid(1) and root["name"] == "Plan trip" and root["trace_id"] == A
    assert root["resource"]["service.name"] == "agent" and root["parent_span_id"] == ""
    assert viewer_client.get(f"{LIST}/{C}").json()["links"]["run"] == "/api/v1/runs/run_01ABC"
    assert viewer_client.get(f"{LIST}/{A.upper()}").json()["trace_id"] == A


def test_trace_detail_without_root(viewer_client, ingest):
    send(ingest, [json_span(tid(7), sid(2), "child", parent=sid(1), start=BASE)])
    body = viewer_client.get(f"{LIST}/{tid(7)}").json()
    assert body["root_span"] is None and body["root_span_name"] == "child"


@pytest.mark.parametrize("path", [f"{LIST}/{'e' * 32}", f"{LIST}/{'e' * 32}/spans",
                                  f"{LIST}/not-a-trace-id", "/api/v1/spans/nothex"])
def test_unknown_trace_is_404_json(viewer_client, corpus, path):
    resp = viewer_client.get(path)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


# --- the span tree ----------------------------------------------------------------------------

R, C1, C2, G, ORPHAN, ORPHAN_CHILD, R2 = (sid(n) for n in range(0x10, 0x17))
MISSING = sid(0x99)


@pytest.fixture
def tree_trace(ingest):
    """Spans of one trace arriving out of order over four requests, with an orphan subtree."""
    t = tid(42)
    send(ingest, [json_span(t, G, "grandchild", parent=C1, start=BASE + 12)])
    send(ingest, [json_span(t, ORPHAN_CHILD, "orphan child", parent=ORPHAN, start=BASE + 2),
                  json_span(t, ORPHAN, "orphan", parent=MISSING, start=BASE + 1)])
    send(ingest, [json_span(t, C1, "child 1", parent=R, start=BASE + 10),
                  json_span(t, R2, "second root", start=BASE + 20)])
    send(ingest, [json_span(t, C2, "child 2", parent=R, start=BASE + 5),
                  json_span(t, R, "root", start=BASE)])
    return t


def test_spans_flat_in_drawing_order(viewer_client, tree_trace):
    resp = viewer_client.get(f"{LIST}/{tree_trace}/spans")
    assert resp.status_code == 200
    body = resp.json()
    assert body["trace_id"] == tree_trace and body["span_count"] == 7
    got = [(s["span_id"], s["depth"], s["orphan"]) for s in body["spans"]]
    assert got == [(R, 0, False), (C2, 1, False), (C1, 1, False), (G, 2, False),
                   (R2, 0, False), (ORPHAN, 0, True), (ORPHAN_CHILD, 1, False)]
    first = body["spans"][0]
    assert first["name"] == "root" and first["start_offset_ms"] == 0
    assert first["start_time_unix_nano"] == BASE and "attributes" not in first
    assert body["spans"][1]["start_offset_ms"] == 5 / 1e6


def test_spans_tree(viewer_client, tree_trace):
    body = viewer_client.get(f"{LIST}/{tree_trace}/spans", {"tree": "1"}).json()
    assert body["span_count"] == 7
    tops = body["spans"]
    assert [(s["span_id"], s["orphan"]) for s in tops] == [
        (R, False), (R2, False), (ORPHAN, True)]
    root = tops[0]
    assert [c["span_id"] for c in root["children"]] == [C2, C1]
    assert root["children"][1]["children"][0]["span_id"] == G
    assert root["children"][1]["children"][0]["children"] == []
    assert [c["span_id"] for c in tops[2]["children"]] == [ORPHAN_CHILD]
    assert viewer_client.get(f"{LIST}/{tree_trace}/spans", {"tree": "maybe"}).status_code == 400


def test_parent_cycles_still_list_every_span_once(viewer_client, ingest):
    t = tid(43)
    send(ingest, [json_span(t, sid(1), "a", parent=sid(2), start=BASE),
                  json_span(t, sid(2), "b", parent=sid(1), start=BASE + 1),
                  json_span(t, sid(3), "self", parent=sid(3), start=BASE + 2)])
    spans = viewer_client.get(f"{LIST}/{t}/spans").json()["spans"]
    assert [(s["span_id"], s["depth"], s["orphan"]) for s in spans] == [
        (sid(3), 0, True), (sid(1), 0, True), (sid(2), 1, False)]
    tree = viewer_client.get(f"{LIST}/{t}/spans", {"tree": "true"}).json()["spans"]
    assert [s["span_id"] for s in tree] == [sid(3), sid(1)]


def test_deep_chain(viewer_client, ingest):
    t = tid(44)
    send(ingest, [json_span(t, sid(i + 1), f"level {i}", parent=sid(i) if i else "",
                            start=BASE + i) for i in range(150)])
    spans = viewer_client.get(f"{LIST}/{t}/spans").json()["spans"]
    assert [s["depth"] for s in spans] == list(range(150))
    resp = viewer_client.get(f"{LIST}/{t}/spans", {"tree": "1"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "trace_too_deep" and error["details"]["depth"] == 150


def test_ten_thousand_spans_in_a_few_queries(viewer_client, ingest, django_assert_max_num_queries):
    t = tid(45)
    spans = [json_span(t, sid(i + 1), f"s{i}", parent=sid((i - 1) // 10 + 1) if i else "",
                       start=BASE + (10_000 - i)) for i in range(10_000)]
    send(ingest, spans)
    with django_assert_max_num_queries(8):
        resp = viewer_client.get(f"{LIST}/{t}/spans")
    assert resp.status_code == 200
    got = resp.json()["spans"]
    assert len(got) == 10_000 and len({s["span_id"] for s in got}) == 10_000
    assert got[0]["span_id"] == sid(1) and got[0]["depth"] == 0
    by_id = {s["span_id"]: s for s in got}
    position = {s["span_id"]: i for i, s in enumerate(got)}
    for s in got[1:]:
        parent = by_id[s["parent_span_id"]]
        assert s["depth"] == parent["depth"] + 1 and position[s["span_id"]] > position[
            parent["span_id"]]
    # Siblings (children of the root) in start-time order, which is the reverse of arrival.
    roots_children = [s for s in got if s["parent_span_id"] == sid(1)]
    assert [s["start_time_unix_nano"] for s in roots_children] == sorted(
        s["start_time_unix_nano"] for s in roots_children)
    with django_assert_max_num_queries(8):
        tree = viewer_client.get(f"{LIST}/{t}/spans", {"tree": "1"}).json()
    assert tree["span_count"] == 10_000 and len(tree["spans"]) == 1


# --- one span ---------------------------------------------------------------------------------

def test_span_detail(viewer_client, ingest):
    t = tid(50)
    send(ingest, [
        json_span(t, sid(1), "root", start=BASE),
        json_span(t, sid(2), "chat gpt-4o", parent=sid(1), start=BASE + 1, status=2,
                  attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                              "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3,
                              "custom": "value"},
                  events=[{"name": "retry", "timeUnixNano": str(BASE + 2),
                           "attributes": [{"key": "n", "value": {"intValue": "1"}}]}]),
    ])
    resp = viewer_client.get(f"/api/v1/spans/{sid(2)}")
    assert resp.status_code == 200
    span = resp.json()
    assert span["span_id"] == sid(2) and span["trace_id"] == t and span["project"] == "default"
    assert span["parent_span_id"] == sid(1) and span["status_code"] == "error"
    assert span["attributes"]["custom"] == "value" and span["attributes"][
        "gen_ai.request.model"] == "gpt-4o"
    assert span["events"] == [{"name": "retry", "time_unix_nano": BASE + 2,
                               "attributes": {"n": 1}}]
    assert span["links"] == [] and span["resource"]["service.name"] == "agent"
    assert span["scope"] == {"name": "tests", "version": "1"}
    assert (span["span_type"], span["model"], span["input_tokens"], span["output_tokens"]) == (
        "llm", "gpt-4o", 7, 3)
    assert span["is_retry"] is True and span["tool_name"] == ""
    assert span["related"] == {
        "self": f"/api/v1/spans/{sid(2)}?trace_id={t}", "trace": f"/api/v1/traces/{t}",
        "parent": f"/api/v1/spans/{sid(1)}?trace_id={t}"}
    root = viewer_client.get(f"/api/v1/spans/{sid(1).upper()}").json()
    assert root["related"]["parent"] is None


def test_ambiguous_span_id(viewer_client, ingest):
    send(ingest, [json_span(tid(60), sid(7), "first", start=BASE),
                  json_span(tid(61), sid(7), "second", start=BASE + SEC)])
    resp = viewer_client.get(f"/api/v1/spans/{sid(7)}")
    assert resp.status_code == 409
    error = resp.json()["error"]
    assert error["code"] == "ambiguous_span_id" and "trace_id" in error["message"]
    assert [c["trace_id"] for c in error["details"]["candidates"]] == [tid(61), tid(60)]
    assert error["details"]["candidates"][0]["url"] == f"/api/v1/spans/{sid(7)}?trace_id={tid(61)}"
    for trace_id, name in ((tid(60), "first"), (tid(61), "second")):
        body = viewer_client.get(f"/api/v1/spans/{sid(7)}", {"trace_id": trace_id}).json()
        assert body["name"] == name and body["trace_id"] == trace_id
    resp = viewer_client.get(f"/api/v1/spans/{sid(7)}", {"trace_id": tid(62)})
    assert resp.status_code == 404
    resp = viewer_client.get(f"/api/v1/spans/{sid(7)}", {"trace_id": "nope"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid"
    assert Span.objects.filter(span_id=sid(7)).count() == 2


def test_unknown_span_is_404(viewer_client, corpus):
    resp = viewer_client.get(f"/api/v1/spans/{sid(0xfff)}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_schema_documents_the_trace_endpoints(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/traces", "/api/v1/traces/{trace_id}",
                 "/api/v1/traces/{trace_id}/spans", "/api/v1/spans/{span_id}"):
        assert f"{path}:" in text or f"{path}/:" in text, path
    for param in ("min_latency_ms", "has_timeout", "most_tokens", "tree", "ambiguous_span_id"):
        assert param in text, param


def test_tool_filter_is_served_by_the_trigram_index(corpus):
    """PostgreSQL: the `tool` filter carries a `tools::text ILIKE` condition the GIN trigram
    index (migration traces 0004) answers; tiny tables would be seq-scanned, so that is off."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_trgm is PostgreSQL only")
    from traces.api.filters import TraceFilter

    qs = TraceFilter({"tool": "read_fi"}, queryset=Trace.objects.all()).qs
    assert [t.trace_id for t in qs] == [B]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()
    assert "trace_tools_trgm_idx" in plan
    short = TraceFilter({"tool": "_f"}, queryset=Trace.objects.all()).qs
    assert "::text ILIKE" not in str(short.query)  # under 3 characters: no trigram to use
    assert [t.trace_id for t in short] == [B]


def test_span_detail_flags_each_event(viewer_client, ingest):
    """The span page marks retries and timeouts per event from `event_flags` (one rule,
    traces/genai.py), instead of re-deriving them in the browser."""
    t = tid(51)
    send(ingest, [json_span(t, sid(1), "call tool", start=BASE, events=[
        {"name": "tool.retry", "timeUnixNano": str(BASE + 1)},
        {"name": "exception", "timeUnixNano": str(BASE + 2), "attributes": [
            {"key": "exception.type", "value": {"stringValue": "httpx.ReadTimeout"}}]},
        {"name": "exception", "timeUnixNano": str(BASE + 3), "attributes": [
            {"key": "exception.type", "value": {"stringValue": "ValueError"}}]},
        {"name": "request.timeout", "timeUnixNano": str(BASE + 4)},
        {"name": "note", "timeUnixNano": str(BASE + 5)},
    ])])
    span = viewer_client.get(f"/api/v1/spans/{sid(1)}?trace_id={t}").json()
    assert [e["name"] for e in span["events"]] == [
        "tool.retry", "exception", "exception", "request.timeout", "note"]
    assert span["event_flags"] == [
        {"is_retry": True, "is_timeout": False}, {"is_retry": False, "is_timeout": True},
        {"is_retry": False, "is_timeout": False}, {"is_retry": False, "is_timeout": True},
        {"is_retry": False, "is_timeout": False}]
    assert span["is_retry"] is True and span["is_timeout"] is True
