"""OTLP requests that are not OTLP: 400 naming the field, and nothing of the batch stored.

One table of cases, each a change to an otherwise valid request whose first span is good (so
"nothing stored" means the whole batch was refused, not just the bad span), sent as JSON and,
where protobuf can carry the same mistake, as protobuf.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.conftest import client_for
from tests.traces.otlp_builders import json_request, json_span, pb_request
from traces.models import Span, Trace

URL = "/otlp/v1/traces"
T1 = "c" * 31 + "1"
S1, S2 = "1" * 16, "2" * 16
NUL = "a\x00b"
SPAN = "resourceSpans[0].scopeSpans[0].spans[1]"
HUGE = "__1e400__"  # written as the bare number 1e400, which json.dumps cannot produce
DEEP = "__deep__"  # written as kvlist values nested 1,000 levels deep (json.dumps would recurse)


def doc() -> dict:
    spans = [json_span(T1, S1, "good", attributes={"k": "v"}),
             json_span(T1, S2, "bad", parent=S1, attributes={"k": "v"},
                       events=[{"name": "e", "timeUnixNano": "1", "attributes": []}])]
    return json.loads(json_request(spans))


def nested(kind: str, levels: int) -> dict:
    value: dict = {"stringValue": "leaf"}
    for _ in range(levels):
        value = ({"arrayValue": {"values": [value]}} if kind == "array"
                 else {"kvlistValue": {"values": [{"key": "k", "value": value}]}})
    return value


def deep_text(levels: int) -> str:
    return '{"kvlistValue":{"values":[{"key":"k","value":' * levels + '{"stringValue":"x"}' \
        + "}]}}" * levels


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, by hand: the protobuf library itself refuses to build
    messages nested as deeply as these."""
    size, varint = len(payload), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        varint += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([number << 3 | 2]) + varint + payload


def pb_deep_request(levels: int) -> bytes:
    """A valid span whose attribute ``k`` holds kvlist values nested ``levels`` deep."""
    value = _field(1, b"leaf")  # AnyValue.string_value
    for _ in range(levels):  # AnyValue.kvlist_value -> KeyValueList.values -> KeyValue
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    good = ExportTraceServiceRequest.FromString(pb_request([span(doc(), 0)]))
    s = good.resource_spans[0].scope_spans[0].spans[0]
    s.span_id = bytes.fromhex(S2)
    del s.attributes[:]
    span_bytes = s.SerializeToString() + _field(9, _field(1, b"k") + _field(2, value))
    return _field(1, _field(2, _field(2, span_bytes)))


def span(d: dict, i: int = 1) -> dict:
    return d["resourceSpans"][0]["scopeSpans"][0]["spans"][i]


def setter(path, value):
    def change(d: dict) -> None:
        *parents, last = path(d)
        target = d
        for part in parents:
            target = target[part]
        target[last] = value
    return change


S = ["resourceSpans", 0, "scopeSpans", 0, "spans", 1]
A = [*S, "attributes", 0]
# (id, change to the JSON document, the field named, change to the protobuf request or None)
CASES = [
    ("resource-list", setter(lambda d: ["resourceSpans", 0, "resource"], [1]),
     "resourceSpans[0].resource", None),
    ("scopeSpans-number", setter(lambda d: ["resourceSpans", 0, "scopeSpans"], 5),
     "resourceSpans[0].scopeSpans", None),
    ("spans-number", setter(lambda d: ["resourceSpans", 0, "scopeSpans", 0, "spans"], 5),
     "resourceSpans[0].scopeSpans[0].spans", None),
    ("scope-string", setter(lambda d: ["resourceSpans", 0, "scopeSpans", 0, "scope"], "x"),
     "resourceSpans[0].scopeSpans[0].scope", None),
    ("status-string", setter(lambda d: [*S, "status"], "x"), f"{SPAN}.status", None),
    ("events-number", setter(lambda d: [*S, "events"], 5), f"{SPAN}.events", None),
    ("links-string", setter(lambda d: [*S, "links"], "x"), f"{SPAN}.links", None),
    ("attributes-number", setter(lambda d: [*S, "attributes"], 5), f"{SPAN}.attributes", None),
    ("attribute-not-object", setter(lambda d: A, 7), f"{SPAN}.attributes[0]", None),
    ("key-number", setter(lambda d: [*A, "key"], 7), f"{SPAN}.attributes[0].key", None),
    ("arrayValue-list", setter(lambda d: [*A, "value"], {"arrayValue": [1]}),
     f"{SPAN}.attributes[0].value.arrayValue", None),
    ("kvlistValue-number", setter(lambda d: [*A, "value"], {"kvlistValue": 5}),
     f"{SPAN}.attributes[0].value.kvlistValue", None),
    ("array-item-number", setter(lambda d: [*A, "value"], {"arrayValue": {"values": [1]}}),
     f"{SPAN}.attributes[0].value.arrayValue.values[0]", None),
    ("intValue-1e400", setter(lambda d: [*A, "value"], {"intValue": HUGE}),
     f"{SPAN}.attributes[0].value.intValue", None),
    ("intValue-beyond-int64", setter(lambda d: [*A, "value"], {"intValue": str(2**63)}),
     f"{SPAN}.attributes[0].value.intValue", None),
    ("intValue-text", setter(lambda d: [*A, "value"], {"intValue": "12abc"}),
     f"{SPAN}.attributes[0].value.intValue", None),
    ("boolValue-string", setter(lambda d: [*A, "value"], {"boolValue": "false"}),
     f"{SPAN}.attributes[0].value.boolValue", None),
    ("stringValue-object", setter(lambda d: [*A, "value"], {"stringValue": {}}),
     f"{SPAN}.attributes[0].value.stringValue", None),
    ("nul-in-span-name", setter(lambda d: [*S, "name"], NUL), f"{SPAN}.name",
     lambda r: setattr(r.resource_spans[0].scope_spans[0].spans[1], "name", NUL)),
    ("nul-in-status-message", setter(lambda d: [*S, "status", "message"], NUL),
     f"{SPAN}.status.message",
     lambda r: setattr(r.resource_spans[0].scope_spans[0].spans[1].status, "message", NUL)),
    ("nul-in-attribute-key", setter(lambda d: [*A, "key"], NUL), f"{SPAN}.attributes[0].key",
     lambda r: setattr(r.resource_spans[0].scope_spans[0].spans[1].attributes[0], "key", NUL)),
    ("nul-in-attribute-value", setter(lambda d: [*A, "value"], {"stringValue": NUL}),
     f"{SPAN}.attributes[0].value.stringValue",
     lambda r: r.resource_spans[0].scope_spans[0].spans[1].attributes[0].value.MergeFrom(
         AnyValue(string_value=NUL))),
    ("nul-in-resource-value",
     setter(lambda d: ["resourceSpans", 0, "resource", "attributes", 0, "value"],
            {"stringValue": NUL}),
     "resourceSpans[0].resource.attributes[0].value.stringValue",
     lambda r: r.resource_spans[0].resource.attributes[0].value.MergeFrom(
         AnyValue(string_value=NUL))),
    ("nul-in-scope-name", setter(lambda d: ["resourceSpans", 0, "scopeSpans", 0, "scope", "name"],
                                 NUL),
     "resourceSpans[0].scopeSpans[0].scope.name",
     lambda r: setattr(r.resource_spans[0].scope_spans[0].scope, "name", NUL)),
    ("nul-in-event-name", setter(lambda d: [*S, "events", 0, "name"], NUL),
     f"{SPAN}.events[0].name",
     lambda r: r.resource_spans[0].scope_spans[0].spans[1].events.add(name=NUL)),
    ("nul-in-nested-value",
     setter(lambda d: [*A, "value"], {"arrayValue": {"values": [{"stringValue": NUL}]}}),
     f"{SPAN}.attributes[0].value.arrayValue.values[0].stringValue",
     lambda r: r.resource_spans[0].scope_spans[0].spans[1].attributes[0].value.array_value
     .values.add(string_value=NUL)),
    ("kvlist-nested-40", setter(lambda d: [*A, "value"], nested("kvlist", 40)),
     f"{SPAN}.attributes[0].value", None),
    ("kvlist-nested-150", setter(lambda d: [*A, "value"], nested("kvlist", 150)),
     f"{SPAN}.attributes[0].value", None),
    ("array-nested-300", setter(lambda d: [*A, "value"], nested("array", 300)),
     f"{SPAN}.attributes[0].value", None),
    # Too deep for the JSON parser itself: the body as a whole is refused (no field).
    ("kvlist-nested-1000", setter(lambda d: [*A, "value"], DEEP), "", None),
]


@pytest.fixture
def ingest(make_key):
    _, raw = make_key("ingest")
    return client_for(raw_key=raw)


def assert_refused(resp, field: str) -> None:
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["code"] == "bad_request"
    if field:
        assert error["details"]["field"].startswith(field), error
        assert field in error["message"]
    else:
        assert "field" not in error["details"], error
    assert Span.objects.count() == 0 and Trace.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", [pytest.param(c, f, id=i) for i, c, f, _ in CASES])
def test_json_with_a_bad_field_is_400_and_stores_nothing(ingest, change, field):
    d = doc()
    change(d)
    body = json.dumps(d).replace(f'"{HUGE}"', "1e400").replace(f'"{DEEP}"', deep_text(1000))
    resp = ingest.generic("POST", URL, body.encode(), content_type="application/json")
    assert_refused(resp, field)


PB_CASES = [pytest.param(c, f, id=i) for i, _, f, c in CASES if c is not None]


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", PB_CASES)
def test_protobuf_with_a_bad_field_is_400_and_stores_nothing(ingest, change, field):
    request = ExportTraceServiceRequest.FromString(
        pb_request([span(doc(), 0), span(doc(), 1)]))
    change(request)
    resp = ingest.generic("POST", URL, request.SerializeToString(),
                          content_type="application/x-protobuf")
    assert_refused(resp, field)


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [40, 300])
def test_protobuf_nested_too_deeply_is_400_and_stores_nothing(ingest, levels):
    resp = ingest.generic("POST", URL, pb_deep_request(levels),
                          content_type="application/x-protobuf")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["code"] == "bad_request"
    assert Span.objects.count() == 0 and Trace.objects.count() == 0


@pytest.mark.django_db
def test_nesting_up_to_the_limit_and_big_ints_are_kept(ingest):
    d = doc()
    span(d)["attributes"] = [
        {"key": "deep", "value": nested("kvlist", 32)},
        {"key": "max", "value": {"intValue": str(2**63 - 1)}},
        {"key": "min", "value": {"intValue": -(2**63)}},
        {"key": "float-int", "value": {"intValue": 5.0}},
    ]
    resp = ingest.generic("POST", URL, json.dumps(d).encode(), content_type="application/json")
    assert resp.status_code == 200, resp.content
    attributes = Span.objects.get(span_id=S2).attributes
    assert attributes["max"] == 2**63 - 1 and attributes["min"] == -(2**63)
    assert attributes["float-int"] == 5
    value = attributes["deep"]
    for _ in range(32):
        value = value["k"]
    assert value == "leaf"


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_non_finite_doubles_are_stored_as_otlp_json_writes_them(ingest, encoding):
    values = {"nan": float("nan"), "inf": float("inf"), "neg": float("-inf"), "one": 1.5}
    if encoding == "json":
        d = doc()
        span(d)["attributes"] = [
            {"key": "nan", "value": {"doubleValue": "NaN"}},
            {"key": "inf", "value": {"doubleValue": HUGE}},
            {"key": "neg", "value": {"doubleValue": "-Infinity"}},
            {"key": "one", "value": {"doubleValue": 1.5}},
        ]
        body = json.dumps(d).replace(f'"{HUGE}"', "1e400").encode()
        resp = ingest.generic("POST", URL, body, content_type="application/json")
    else:
        request = ExportTraceServiceRequest.FromString(
            pb_request([span(doc(), 0), span(doc(), 1)]))
        target = request.resource_spans[0].scope_spans[0].spans[1].attributes
        del target[:]
        for key, value in values.items():
            target.append(KeyValue(key=key, value=AnyValue(double_value=value)))
        resp = ingest.generic("POST", URL, request.SerializeToString(),
                              content_type="application/x-protobuf")
    assert resp.status_code == 200, resp.content
    attributes = Span.objects.get(span_id=S2).attributes
    assert attributes == {"nan": "NaN", "inf": "Infinity", "neg": "-Infinity", "one": 1.5}


@pytest.mark.django_db
def test_protobuf_nested_within_the_decoders_limit_is_kept(ingest):
    resp = ingest.generic("POST", URL, pb_deep_request(8), content_type="application/x-protobuf")
    assert resp.status_code == 200, resp.content
    value = Span.objects.get(span_id=S2).attributes["k"]
    for _ in range(8):
        value = value["k"]
    assert value == "leaf"
