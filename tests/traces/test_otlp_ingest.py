"""OTLP/HTTP ingest: the stock exporter, hand-built JSON and protobuf, every status code."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.conftest import client_for
from tests.traces.otlp_builders import json_request, json_span, pb_request
from traces.models import Span, Trace
from traces.views_otlp import in_flight

URL = "/otlp/v1/traces"
T1, T2 = "a" * 31 + "1", "b" * 31 + "2"
S1, S2, S3 = "1" * 16, "2" * 16, "3" * 16


@pytest.fixture
def ingest(make_key):
    _, raw = make_key("ingest")
    return client_for(raw_key=raw)


def post(client, body: bytes, content_type="application/json", **extra):
    return client.generic("POST", URL, body, content_type=content_type, **extra)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_stock_exporter_protobuf(live_server, make_key):
    _, raw = make_key("ingest")
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}{URL}", headers={"Authorization": f"Bearer {raw}"}
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "demo-agent", "deployment.environment": "ci"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("agent.run") as root:
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 300)
        with tracer.start_as_current_span("execute_tool read_file") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "read_file")
            tool.set_status(Status(StatusCode.ERROR, "file not found"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()

    trace = Trace.objects.get(trace_id=trace_id)
    assert trace.span_count == 3 and trace.error_count == 1 and trace.status == "error"
    assert trace.root_span_name == "agent.run" and trace.service_name == "demo-agent"
    assert trace.environment == "ci" and trace.project.slug == "default"
    assert trace.input_tokens == 1200 and trace.output_tokens == 300
    assert trace.models == ["gpt-4o"] and trace.tools == ["read_file"]
    assert trace.cost_usd > 0
    spans = {s.name: s for s in Span.objects.filter(trace=trace)}
    root_id = spans["agent.run"].span_id
    assert spans["chat gpt-4o"].parent_span_id == root_id
    assert spans["chat gpt-4o"].span_type == "llm" and spans["chat gpt-4o"].model == "gpt-4o"
    assert spans["execute_tool read_file"].span_type == "tool"
    assert spans["execute_tool read_file"].status_message == "file not found"


@pytest.mark.django_db
def test_json_request_and_response(ingest):
    resp = post(
        ingest,
        json_request([json_span(T1, S1, "root"), json_span(T1, S2, "child", parent=S1, status=2)]),
    )
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"] == "application/json" and resp.json() == {}
    trace = Trace.objects.get(trace_id=T1)
    assert trace.span_count == 2 and trace.status == "error" and trace.environment == "test"
    child = Span.objects.get(span_id=S2)
    assert child.parent_span_id == S1 and child.kind == "internal"


@pytest.mark.django_db
def test_protobuf_response_is_protobuf(ingest):
    resp = post(ingest, pb_request([json_span(T1, S1)]), "application/x-protobuf")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(resp.content)
    assert parsed.partial_success.rejected_spans == 0
    assert Span.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf"])
def test_partial_success(ingest, content_type):
    spans = [json_span(T1, S1), json_span("0" * 32, S2), json_span(T1, "0" * 16)]
    body = json_request(spans) if content_type == "application/json" else pb_request(spans)
    resp = post(ingest, body, content_type)
    assert resp.status_code == 200
    if content_type == "application/json":
        partial = resp.json()["partialSuccess"]
        assert partial["rejectedSpans"] == 2 and "invalid" in partial["errorMessage"]
    else:
        partial = ExportTraceServiceResponse.FromString(resp.content).partial_success
        assert partial.rejected_spans == 2
    assert Span.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf"])
def test_gzip_bodies(ingest, content_type):
    spans = [json_span(T1, S1)]
    raw = json_request(spans) if content_type == "application/json" else pb_request(spans)
    resp = post(ingest, gzip.compress(raw), content_type, HTTP_CONTENT_ENCODING="gzip")
    assert resp.status_code == 200, resp.content
    assert Span.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"\xff\xfe not protobuf", "application/x-protobuf"),
        (b"{not json", "application/json"),
        (b'{"resourceSpans": "nope"}', "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
def test_undecodable_bodies_are_400(ingest, body, content_type):
    resp = post(ingest, body, content_type)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_request"
    assert Span.objects.count() == 0


@pytest.mark.django_db
def test_broken_gzip_is_400(ingest):
    resp = post(ingest, b"not gzip", HTTP_CONTENT_ENCODING="gzip")
    assert resp.status_code == 400


@pytest.mark.django_db
def test_too_large_is_413(ingest, settings):
    settings.TRACEFOUNDRY_OTLP_MAX_BYTES = 2048
    big = json_request([json_span(T1, S1, attributes={"x": "y" * 5000})])
    assert post(ingest, big).status_code == 413
    # A small gzip body that inflates past the cap is refused too (a zip bomb).
    assert post(ingest, gzip.compress(big), HTTP_CONTENT_ENCODING="gzip").status_code == 413
    assert Span.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_other_media_types_are_415(ingest, content_type):
    resp = post(ingest, b"x", content_type)
    assert resp.status_code == 415


@pytest.mark.django_db
def test_auth(make_key, anon_client):
    body = json_request([json_span(T1, S1)])
    assert post(anon_client, body).status_code == 401
    assert post(client_for(raw_key="tf_00000000_nope"), body).status_code == 401
    _, raw = make_key("runs:read,runs:write")
    assert post(client_for(raw_key=raw), body).status_code == 403
    _, ingest_raw = make_key("ingest")
    from rest_framework.test import APIClient

    header_client = APIClient()
    resp = post(header_client, body, HTTP_X_TRACEFOUNDRY_KEY=ingest_raw)
    assert resp.status_code == 200
    assert Span.objects.count() == 1


@pytest.mark.django_db
def test_resending_is_idempotent(ingest):
    body = json_request([json_span(T1, S1, "root"), json_span(T1, S2, "child", parent=S1)])
    for _ in range(3):
        assert post(ingest, body).status_code == 200
    assert Span.objects.count() == 2
    assert Trace.objects.get(trace_id=T1).span_count == 2
    renamed = json_request([json_span(T1, S2, "child renamed", parent=S1)])
    post(ingest, renamed)
    assert Span.objects.get(span_id=S2).name == "child renamed"
    assert Span.objects.count() == 2


@pytest.mark.django_db
def test_child_before_parent_ends_in_the_same_tree(ingest):
    post(ingest, json_request([json_span(T1, S3, "grandchild", parent=S2, start=2000)]))
    trace = Trace.objects.get(trace_id=T1)
    assert trace.root_span_name == "grandchild"  # best effort until the root arrives
    post(ingest, json_request([json_span(T1, S2, "child", parent=S1, start=1500)]))
    post(ingest, json_request([json_span(T1, S1, "root", start=1000, duration_ms=5)]))
    trace.refresh_from_db()
    assert trace.span_count == 3 and trace.root_span_name == "root"
    parents = dict(Span.objects.filter(trace=trace).values_list("span_id", "parent_span_id"))
    assert parents == {S1: "", S2: S1, S3: S2}


@pytest.mark.django_db
def test_a_trace_of_another_project_is_rejected(ingest, make_key, other_project):
    _, other_raw = make_key("ingest", project_obj=other_project)
    post(client_for(raw_key=other_raw), json_request([json_span(T1, S1)]))
    resp = post(ingest, json_request([json_span(T1, S2), json_span(T2, S3)]))
    assert resp.json()["partialSuccess"]["rejectedSpans"] == 1
    assert Span.objects.filter(trace__trace_id=T1).count() == 1
    assert Trace.objects.get(trace_id=T2).project.slug == "default"


@pytest.mark.django_db
def test_overload_is_503_with_retry_after(ingest, settings):
    settings.TRACEFOUNDRY_OTLP_MAX_IN_FLIGHT = 1
    assert in_flight.enter(1)  # another export is being processed
    try:
        resp = post(ingest, json_request([json_span(T1, S1)]))
    finally:
        in_flight.leave()
    assert resp.status_code == 503 and resp["Retry-After"] == "1"
    assert Span.objects.count() == 0
    assert post(ingest, json_request([json_span(T1, S1)])).status_code == 200


@pytest.mark.django_db
def test_throttled_is_429_with_retry_after(ingest, settings):
    settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": None, "cancel": None, "ingest": "1/min"}
    assert post(ingest, json_request([json_span(T1, S1)])).status_code == 200
    resp = post(ingest, json_request([json_span(T1, S2)]))
    assert resp.status_code == 429 and int(resp["Retry-After"]) > 0


@pytest.mark.django_db
def test_secrets_in_span_attributes_are_redacted(ingest):
    token = "ghp_" + "Zz09" * 9
    post(
        ingest,
        json_request(
            [
                json_span(
                    T1,
                    S1,
                    attributes={
                        "http.request.header.authorization": f"Bearer {token}",
                        "input.value": f"use token {token} please",
                        "gen_ai.usage.input_tokens": 12,
                    },
                )
            ]
        ),
    )
    span = Span.objects.get()
    assert token not in json.dumps(span.attributes)
    assert span.attributes["gen_ai.usage.input_tokens"] == 12


@pytest.mark.django_db
def test_agent_usage_is_not_counted_twice(ingest):
    post(ingest, json_request([
        json_span(T1, S1, "invoke_agent planner", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 300,
            "gen_ai.usage.output_tokens": 30}),
        json_span(T1, S2, "chat", parent=S1, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 30}),
    ]))
    trace = Trace.objects.get(trace_id=T1)
    assert (trace.input_tokens, trace.output_tokens) == (300, 30)


@pytest.mark.django_db
def test_a_batch_of_only_foreign_spans_is_rejected_cleanly(ingest, make_key, other_project):
    _, other_raw = make_key("ingest", project_obj=other_project)
    post(client_for(raw_key=other_raw), json_request([json_span(T1, S1)]))
    resp = post(ingest, json_request([json_span(T1, S2)]))
    assert resp.status_code == 200
    assert resp.json()["partialSuccess"]["rejectedSpans"] == 1


SUMMARY_FIELDS = ["span_count", "error_count", "status", "start_time", "end_time", "duration_ms",
                  "input_tokens", "output_tokens", "cost_usd", "has_retry", "has_timeout",
                  "run_id", "models", "tools", "root_span_name", "service_name", "environment"]


@pytest.mark.django_db
def test_one_batch_and_many_batches_give_the_same_summary(ingest):
    """New traces are summarised from the batch, existing ones by SQL: both must agree."""
    def spans(trace_id):
        return [
            json_span(trace_id, S3, "retry", parent=S1, start=3000, status=2,
                      attributes={"retry.count": 2, "gen_ai.operation.name": "chat",
                                  "gen_ai.request.model": "claude-3-5-sonnet",
                                  "gen_ai.usage.input_tokens": 50}),
            json_span(trace_id, S1, "agent", start=1000, duration_ms=9,
                      attributes={"tracefoundry.run_id": "run_x", "gen_ai.usage.input_tokens": 7,
                                  "gen_ai.operation.name": "invoke_agent"}),
            json_span(trace_id, S2, "chat", parent=S1, start=2000, status=1, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}),
            json_span(trace_id, "4" * 16, "execute_tool grep", parent=S1, start=2500,
                      attributes={"gen_ai.operation.name": "execute_tool",
                                  "gen_ai.tool.name": "grep"}),
        ]
    post(ingest, json_request(spans(T1)))
    for span in spans(T2):  # the same spans, one request each, children first
        post(ingest, json_request([span]))
    one, many = (Trace.objects.values(*SUMMARY_FIELDS).get(trace_id=t) for t in (T1, T2))
    assert one == many
    assert one["span_count"] == 4 and one["root_span_name"] == "agent"
    assert one["input_tokens"] == 150 and one["models"] == ["claude-3-5-sonnet", "gpt-4o"]


@pytest.mark.django_db
def test_a_span_sent_twice_in_one_batch_is_stored_once_last_copy_wins(ingest):
    body = json_request([json_span(T1, S1, "first"), json_span(T1, S2, "child", parent=S1),
                         json_span(T1, S1, "second"), json_span(T2, S3, "other")])
    resp = post(ingest, body)
    assert resp.status_code == 200 and resp.json() == {}
    assert Span.objects.get(span_id=S1).name == "second"
    assert Span.objects.count() == 3
    assert Trace.objects.get(trace_id=T1).span_count == 2
    # The same again, now that every span exists: an update, still one row each.
    post(ingest, json_request([json_span(T1, S1, "third"), json_span(T1, S1, "fourth")]))
    assert Span.objects.get(span_id=S1).name == "fourth"
    assert Span.objects.count() == 3


@pytest.mark.django_db
def test_a_batch_mixing_new_existing_and_foreign_traces(ingest, make_key, other_project):
    T3 = "c" * 31 + "3"
    _, other_raw = make_key("ingest", project_obj=other_project)
    post(client_for(raw_key=other_raw), json_request([json_span(T3, S1, "theirs")]))
    post(ingest, json_request([json_span(T1, S1, "root")]))
    resp = post(ingest, json_request([
        json_span(T1, S2, "child", parent=S1), json_span(T2, S1, "new root"),
        json_span(T3, S2, "intruder"), json_span(T1, S3, "child 2", parent=S1),
    ]))
    assert resp.json()["partialSuccess"]["rejectedSpans"] == 1
    names = set(Span.objects.filter(trace__trace_id=T1).values_list("name", flat=True))
    assert names == {"root", "child", "child 2"}
    assert Trace.objects.get(trace_id=T1).span_count == 3
    assert Trace.objects.get(trace_id=T2).span_count == 1
    assert list(Span.objects.filter(trace__trace_id=T3).values_list("name", flat=True)) == [
        "theirs"]
