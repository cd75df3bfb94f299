"""Decoding OTLP/HTTP trace export requests (protobuf or JSON) into plain span records.

Both encodings end in the same ``SpanRecord`` list; spans that break the OTLP data model (bad or
all-zero ids, missing timestamps) are counted as rejected with a reason, so the endpoint can
answer with ``partial_success`` instead of failing the whole batch. A request that is not OTLP
at all (a field of the wrong JSON type, an ``intValue`` outside int64, a NUL character in a
name, key or value, attribute values nested more than ``MAX_DEPTH`` levels) raises
``DecodeError`` naming the field: nothing of it is stored.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")
_TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID_RE = re.compile(r"^[0-9a-f]{16}$")
MAX_NAME = 512
MAX_STATUS_MESSAGE = 4096
# Names and status messages are cut to their columns only after redaction (traces/services.py):
# cut here, a secret straddling the limit would lose the part that makes it recognisable and
# keep the rest. Decoding keeps this many times the column, which bounds memory all the same.
RAW_CUT_FACTOR = 8
_BAD_TRACE_ID = "invalid trace id (need 16 non-zero bytes)"
_BAD_SPAN_ID = "invalid span id (need 8 non-zero bytes)"
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
MAX_MESSAGES = 5
# Array/kvlist values nested deeper than this are refused (the protobuf decoder itself stops
# near 33; JSON would otherwise recurse until Python's limit).
MAX_DEPTH = 32
_INT_RE = re.compile(r"^\s*-?[0-9]{1,20}\s*$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class DecodeError(Exception):
    """The body is not an OTLP trace export request (HTTP 400, not retryable).

    ``field`` is where in the request the problem is (``resourceSpans[0].scopeSpans[0]…``),
    or "" for a body that does not parse at all."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class _Bad(Exception):
    """A field of the wrong type or value; the path to it is collected on the way out."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)

    def under(self, *path: str | int) -> _Bad:
        self.path[:0] = path
        return self

    def decode_error(self) -> DecodeError:
        where = ""
        for part in self.path:
            if isinstance(part, int):
                where += f"[{part}]"
            else:
                where += f".{part}" if where else part
        return DecodeError(self.message, where)


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "?")


def _no_nul(text: str, *path: str | int) -> str:
    if "\x00" in text:
        raise _Bad("NUL characters are not allowed", *path)
    return text


@dataclass(slots=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    attributes: dict
    events: list
    links: list
    resource: dict
    scope: dict

    @property
    def service_name(self) -> str:
        return str(self.resource.get("service.name", ""))[:256]

    @property
    def environment(self) -> str:
        env = self.resource.get("deployment.environment.name",
                                self.resource.get("deployment.environment", ""))
        return str(env)[:128]


@dataclass
class Decoded:
    spans: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_MESSAGES and reason not in self.reasons:
            self.reasons.append(reason)


# --- protobuf ----------------------------------------------------------------------------------

def _double(d: float) -> float | str:
    """NaN and the infinities as OTLP/JSON writes them: JSON (and PostgreSQL's jsonb) has no
    literal for them."""
    return d if d - d == 0 else _NON_FINITE[str(d)]


def _pb_value(v, depth: int) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return _no_nul(v.string_value, "stringValue")
    if which == "double_value":
        return _double(v.double_value)
    if which in ("array_value", "kvlist_value") and depth >= MAX_DEPTH:
        raise _Bad(f"values nested more than {MAX_DEPTH} levels deep")
    if which == "array_value":
        out = []
        for i, x in enumerate(v.array_value.values):
            try:
                out.append(_pb_value(x, depth + 1))
            except _Bad as exc:
                raise exc.under("arrayValue", "values", i) from None
        return out
    if which == "kvlist_value":
        try:
            return _pb_attrs(v.kvlist_value.values, depth + 1)
        except _Bad as exc:
            raise exc.under("kvlistValue", "values") from None
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, which)


def _index(attributes, kv) -> int:
    """Where ``kv`` is in ``attributes`` (only looked up to name a bad field)."""
    return next(i for i, other in enumerate(attributes) if other == kv)


def _pb_attrs(attributes, depth: int = 0) -> dict:
    # The scalar cases inline: this loop runs for every attribute of every span.
    out = {}
    for kv in attributes:
        key, v = kv.key, kv.value
        if "\x00" in key:
            raise _Bad("NUL characters are not allowed", _index(attributes, kv), "key")
        which = v.WhichOneof("value")
        if which == "string_value":
            text = v.string_value
            if "\x00" in text:
                raise _Bad("NUL characters are not allowed",
                           _index(attributes, kv), "value", "stringValue")
            out[key] = text
        elif which == "int_value":
            out[key] = v.int_value
        elif which == "bool_value":
            out[key] = v.bool_value
        elif which == "double_value":
            d = v.double_value
            out[key] = d if d - d == 0 else _double(d)
        else:
            try:
                out[key] = _pb_value(v, depth)
            except _Bad as exc:
                raise exc.under(_index(attributes, kv), "value") from None
    return out


def _pb_attributes(attributes) -> dict:
    try:
        return _pb_attrs(attributes)
    except _Bad as exc:
        raise exc.under("attributes") from None


def _pb_text(text: str, *path: str | int) -> str:
    return _no_nul(text, *path) if "\x00" in text else text


def decode_protobuf(body: bytes) -> Decoded:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (ProtobufDecodeError, ValueError) as exc:
        raise DecodeError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    return decode_message(request)


def decode_message(request: ExportTraceServiceRequest) -> Decoded:
    """An export request already parsed (or built in this process, e.g. by the OpenTelemetry
    encoder: tracefoundry/sdk_bridge.py), checked like one that came over HTTP."""
    out = Decoded()
    for ri, rs in enumerate(request.resource_spans):
        try:
            _pb_resource_spans(out, rs)
        except _Bad as exc:
            raise exc.under("resourceSpans", ri).decode_error() from None
    return out


def _pb_resource_spans(out: Decoded, rs) -> None:
    try:
        resource = _pb_attrs(rs.resource.attributes)
    except _Bad as exc:
        raise exc.under("resource", "attributes") from None
    for si, ss in enumerate(rs.scope_spans):
        try:
            scope = {"name": _pb_text(ss.scope.name, "scope", "name"),
                     "version": _pb_text(ss.scope.version, "scope", "version")}
            if ss.scope.attributes:
                try:
                    scope["attributes"] = _pb_attrs(ss.scope.attributes)
                except _Bad as exc:
                    raise exc.under("scope", "attributes") from None
            for i, s in enumerate(ss.spans):
                try:
                    _pb_span(out, resource, scope, s)
                except _Bad as exc:
                    raise exc.under("spans", i) from None
        except _Bad as exc:
            raise exc.under("scopeSpans", si) from None


def _pb_span(out: Decoded, resource: dict, scope: dict, s) -> None:
    trace_id, span_id, parent = s.trace_id, s.span_id, s.parent_span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        out.reject(_BAD_TRACE_ID)
        return
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        out.reject(_BAD_SPAN_ID)
        return
    attributes = _pb_attributes(s.attributes)
    events, links = [], []
    if s.events:
        for i, e in enumerate(s.events):
            try:
                events.append({"name": _pb_text(e.name, "name"),
                               "time_unix_nano": e.time_unix_nano,
                               "attributes": _pb_attributes(e.attributes)})
            except _Bad as exc:
                raise exc.under("events", i) from None
    if s.links:
        for i, ln in enumerate(s.links):
            try:
                links.append({"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                              "attributes": _pb_attributes(ln.attributes)})
            except _Bad as exc:
                raise exc.under("links", i) from None
    _add(out, resource, scope, {
        "trace_id": trace_id.hex(),
        "span_id": span_id.hex(),
        "parent_span_id": parent.hex() if len(parent) == 8 and parent != _ZERO_SPAN else "",
        "name": _pb_text(s.name, "name"),
        "kind": s.kind,
        "start": s.start_time_unix_nano,
        "end": s.end_time_unix_nano,
        "status_code": s.status.code,
        "status_message": _pb_text(s.status.message, "status", "message"),
        "attributes": attributes,
        "events": events,
        "links": links,
    }, ids_checked=True)


# --- JSON (OTLP/JSON: lowerCamelCase keys, hex ids, enums as integers) ---------------------------

def _object(value: Any, *path: str | int) -> dict:
    """An optional object field (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"must be an object, not {_type(value)}", *path)
    return value


def _list(value: Any, *path: str | int) -> list:
    """An optional list field (absent or null: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"must be a list, not {_type(value)}", *path)
    return value


def _string(value: Any, *path: str | int) -> str:
    """An optional string field. Numbers are taken as their text, as before; NUL is refused."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _no_nul(value, *path) if "\x00" in value else value
    if isinstance(value, bool | int | float):
        return str(value)
    raise _Bad(f"must be a string, not {_type(value)}", *path)


def _json_int(value: Any) -> int:
    """An OTLP/JSON int64: a number or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Bad(f"must be an integer, not {_type(value)}")
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and the infinities (1e400 parses as inf)
            raise _Bad(f"must be an int64, not {value}")
        value = int(value)
    elif isinstance(value, str):
        if not _INT_RE.match(value):
            raise _Bad(f"must be an int64, not {value[:40]!r}")
        value = int(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Bad("must be an int64 (out of range)")
    return value


def _json_double(value: Any) -> float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Bad(f"must be a number, not {_type(value)}")
    try:
        return _double(float(value))
    except (ValueError, OverflowError):
        raise _Bad(f"must be a number, not {str(value)[:40]!r}") from None


def _json_value(v: Any, depth: int = 0) -> Any:
    """An AnyValue. Wrong types raise ``_Bad``; an empty or unknown value is None."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _Bad(f"must be an object, not {_type(v)}")
    if "stringValue" in v:
        return _string(v["stringValue"], "stringValue")
    if "boolValue" in v:
        if not isinstance(v["boolValue"], bool):
            raise _Bad(f"must be a boolean, not {_type(v['boolValue'])}", "boolValue")
        return v["boolValue"]
    if "intValue" in v:
        try:
            return _json_int(v["intValue"])
        except _Bad as exc:
            raise exc.under("intValue") from None
    if "doubleValue" in v:
        try:
            return _json_double(v["doubleValue"])
        except _Bad as exc:
            raise exc.under("doubleValue") from None
    if ("arrayValue" in v or "kvlistValue" in v) and depth >= MAX_DEPTH:
        raise _Bad(f"values nested more than {MAX_DEPTH} levels deep")
    if "arrayValue" in v:
        values = _list(_object(v["arrayValue"], "arrayValue").get("values"),
                       "arrayValue", "values")
        out = []
        for i, x in enumerate(values):
            try:
                out.append(_json_value(x, depth + 1))
            except _Bad as exc:
                raise exc.under("arrayValue", "values", i) from None
        return out
    if "kvlistValue" in v:
        values = _list(_object(v["kvlistValue"], "kvlistValue").get("values"),
                       "kvlistValue", "values")
        try:
            return _json_attrs(values, depth + 1)
        except _Bad as exc:
            raise exc.under("kvlistValue", "values") from None
    if "bytesValue" in v:
        if not isinstance(v["bytesValue"], str):
            raise _Bad(f"must be a base64 string, not {_type(v['bytesValue'])}", "bytesValue")
        return v["bytesValue"]
    return None


def _json_attrs(items: Any, depth: int = 0) -> dict:
    """A KeyValue list; raises ``_Bad`` with the path below the list."""
    out = {}
    for i, kv in enumerate(_list(items)):
        if not isinstance(kv, dict):
            raise _Bad(f"must be an object, not {_type(kv)}", i)
        if "key" not in kv:
            continue
        key = kv["key"]
        if not isinstance(key, str):
            raise _Bad(f"must be a string, not {_type(key)}", i, "key")
        if "\x00" in key:
            raise _Bad("NUL characters are not allowed", i, "key")
        try:
            out[key] = _json_value(kv.get("value"), depth)
        except _Bad as exc:
            raise exc.under(i, "value") from None
    return out


def _attributes(container: dict) -> dict:
    try:
        return _json_attrs(container.get("attributes"))
    except _Bad as exc:
        raise exc.under("attributes") from None


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        name = value.lower().removeprefix(prefix)
        if name in names:
            return names.index(name)
        if value.isascii() and value.isdigit():
            return int(value)
    return 0


def _int(value: Any) -> int:
    """A timestamp; anything that is not an int64 counts as missing (the span is rejected)."""
    try:
        return _json_int(value)
    except _Bad:
        return -1


def decode_json(body: bytes) -> Decoded:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        raise DecodeError("expected an object with a resourceSpans list")
    out = Decoded()
    for ri, rs in enumerate(doc.get("resourceSpans") or []):
        try:
            _json_resource_spans(out, rs)
        except _Bad as exc:
            raise exc.under("resourceSpans", ri).decode_error() from None
    return out


def _json_resource_spans(out: Decoded, rs: Any) -> None:
    if not isinstance(rs, dict):
        raise _Bad(f"must be an object, not {_type(rs)}")
    try:
        resource = _attributes(_object(rs.get("resource")))
    except _Bad as exc:
        raise exc.under("resource") from None
    for si, ss in enumerate(_list(rs.get("scopeSpans"), "scopeSpans")):
        try:
            if not isinstance(ss, dict):
                raise _Bad(f"must be an object, not {_type(ss)}")
            raw_scope = _object(ss.get("scope"), "scope")
            scope = {"name": _string(raw_scope.get("name"), "scope", "name"),
                     "version": _string(raw_scope.get("version"), "scope", "version")}
            if raw_scope.get("attributes"):
                try:
                    scope["attributes"] = _attributes(raw_scope)
                except _Bad as exc:
                    raise exc.under("scope") from None
            for i, s in enumerate(_list(ss.get("spans"), "spans")):
                if not isinstance(s, dict):
                    out.reject("a span must be an object")
                    continue
                try:
                    _json_span(out, resource, scope, s)
                except _Bad as exc:
                    raise exc.under("spans", i) from None
        except _Bad as exc:
            raise exc.under("scopeSpans", si) from None


def _json_span(out: Decoded, resource: dict, scope: dict, s: dict) -> None:
    status = _object(s.get("status"), "status")
    events, links = [], []
    for i, e in enumerate(_list(s.get("events"), "events")):
        try:
            e = _object(e)
            events.append({"name": _string(e.get("name"), "name"),
                           "time_unix_nano": max(_int(e.get("timeUnixNano")), 0),
                           "attributes": _attributes(e)})
        except _Bad as exc:
            raise exc.under("events", i) from None
    for i, ln in enumerate(_list(s.get("links"), "links")):
        try:
            ln = _object(ln)
            links.append({"trace_id": _string(ln.get("traceId")).lower(),
                          "span_id": _string(ln.get("spanId")).lower(),
                          "attributes": _attributes(ln)})
        except _Bad as exc:
            raise exc.under("links", i) from None
    _add(out, resource, scope, {
        "trace_id": _string(s.get("traceId"), "traceId").lower(),
        "span_id": _string(s.get("spanId"), "spanId").lower(),
        "parent_span_id": _string(s.get("parentSpanId"), "parentSpanId").lower(),
        "name": _string(s.get("name"), "name"),
        "kind": _enum(s.get("kind", 0), KINDS, "span_kind_"),
        "start": _int(s.get("startTimeUnixNano")),
        "end": _int(s.get("endTimeUnixNano")),
        "status_code": _enum(status.get("code", 0), STATUS_CODES, "status_code_"),
        "status_message": _string(status.get("message"), "status", "message"),
        "attributes": _attributes(s),
        "events": events,
        "links": links,
    })


# --- shared validation -------------------------------------------------------------------------

def _add(out: Decoded, resource: dict, scope: dict, s: dict, *, ids_checked: bool = False) -> None:
    """Validate one span and append its record. ``ids_checked``: the ids are the hex of
    byte strings the caller checked (protobuf), and need no second look."""
    trace_id, span_id, parent = s["trace_id"], s["span_id"], s["parent_span_id"]
    if not ids_checked:
        if not _TRACE_ID_RE.match(trace_id) or trace_id == "0" * 32:
            out.reject(_BAD_TRACE_ID)
            return
        if not _SPAN_ID_RE.match(span_id) or span_id == "0" * 16:
            out.reject(_BAD_SPAN_ID)
            return
        if parent and (not _SPAN_ID_RE.match(parent) or parent == "0" * 16):
            parent = ""
    start, end = s["start"], s["end"]
    if start <= 0 or end < 0 or start >= 2**63 or end >= 2**63:
        out.reject("missing or invalid start/end time")
        return
    name = s["name"] if isinstance(s["name"], str) else str(s["name"])
    kind = s["kind"] if 0 <= s["kind"] < len(KINDS) else 0
    code = s["status_code"] if 0 <= s["status_code"] < len(STATUS_CODES) else 0
    out.spans.append(SpanRecord(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent,
        name=name[:MAX_NAME * RAW_CUT_FACTOR], kind=KINDS[kind], start_ns=start,
        end_ns=max(end, start), status_code=STATUS_CODES[code],
        status_message=s["status_message"][:MAX_STATUS_MESSAGE * RAW_CUT_FACTOR],
        attributes=s["attributes"], events=s["events"], links=s["links"],
        resource=resource, scope=scope,
    ))


def decode_request(body: bytes, content_type: str) -> Decoded:
    if content_type == "application/json":
        return decode_json(body)
    return decode_protobuf(body)
