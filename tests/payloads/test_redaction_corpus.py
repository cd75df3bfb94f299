"""Every string that reaches a row, a blob or a log line passes the redactor.

Synthetic credentials of every detected class (CLASSES, generated from their formats with a
seeded random) are pushed through every ingest path (PATHS: HTTP API and OTLP, JSON and
protobuf); then every text and JSON column of every model, every payload blob (decompressed)
and every log line formatted during the test are searched for them. A new path or a new
credential class is one row.
"""

from __future__ import annotations

import base64
import json
import logging
import logging.config
import random
import string
from collections import Counter
from collections.abc import Callable

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, models
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from payloads.models import PayloadBlob
from payloads.store import payload_read
from tests.conftest import client_for

UPPER, LOWER, DIGITS = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UPPER + LOWER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def pick(rnd: random.Random, alphabet: str, n: int) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def with_digit(rnd: random.Random, alphabet: str, n: int) -> str:
    body = pick(rnd, alphabet, n - 1)
    i = rnd.randrange(n)
    return body[:i] + rnd.choice(DIGITS) + body[i:]


def pem(rnd: random.Random, kind: str = "RSA ") -> tuple[str, list[str]]:
    lines = [pick(rnd, B64, 64) for _ in range(4)]
    block = (f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines)
             + f"\n-----END {kind}PRIVATE KEY-----")
    return block, lines


# A credential class: seeded random -> (the text carrying it, the secret parts that must never
# be stored verbatim). `glue`: a match is expected even with letters glued before it.
Make = Callable[[random.Random], tuple[str, list[str]]]


def token(prefix: str, alphabet: str, n: int, *, digit: bool = False) -> Make:
    def make(rnd: random.Random) -> tuple[str, list[str]]:
        value = prefix + (with_digit(rnd, alphabet, n) if digit else pick(rnd, alphabet, n))
        return value, [value]

    return make


def context(template: str, alphabet: str, n: int) -> Make:
    def make(rnd: random.Random) -> tuple[str, list[str]]:
        secret = with_digit(rnd, alphabet, n)
        return template.format(secret), [secret]

    return make


def pem_block(rnd: random.Random) -> tuple[str, list[str]]:
    return pem(rnd, rnd.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "]))


def pem_after_key(rnd: random.Random) -> tuple[str, list[str]]:
    block, lines = pem(rnd)
    return rnd.choice(["PRIVATE_KEY={}", "password: {}"]).format(block), lines


def gcp_service_account(rnd: random.Random) -> tuple[str, list[str]]:
    block, lines = pem(rnd, "")
    key_id = pick(rnd, HEX, 40)
    doc = {"type": "service_account", "project_id": "demo-123", "private_key_id": key_id,
           "private_key": block + "\n", "client_email": "svc@demo-123.iam.gserviceaccount.com"}
    return json.dumps(doc), [*lines, key_id]


def basic_auth(rnd: random.Random) -> tuple[str, list[str]]:
    raw = base64.b64encode(f"user{pick(rnd, DIGITS, 3)}:{pick(rnd, ALNUM, 14)}".encode()).decode()
    return f"Authorization: Basic {raw}", [raw]


def jwt(rnd: random.Random) -> tuple[str, list[str]]:
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    value = f"{head}.{pick(rnd, URLSAFE, 60)}.{pick(rnd, URLSAFE, 43)}"
    return value, [value.split(".", 1)[1]]


def azure_connection_string(rnd: random.Random) -> tuple[str, list[str]]:
    key = pick(rnd, B64, 86) + "=="
    return (f"DefaultEndpointsProtocol=https;AccountName=demo{pick(rnd, DIGITS, 4)};"
            f"AccountKey={key};EndpointSuffix=core.windows.net"), [key[:80]]


def sendgrid(rnd: random.Random) -> tuple[str, list[str]]:
    value = f"SG.{pick(rnd, URLSAFE, 22)}.{pick(rnd, URLSAFE, 43)}"
    return value, [value]


def url_password(rnd: random.Random) -> tuple[str, list[str]]:
    secret = with_digit(rnd, ALNUM, 18)
    scheme = rnd.choice(["postgres", "redis", "mysql", "https", "amqp"])
    return f"{scheme}://app:{secret}@db.internal:5432/prod", [secret]


CLASSES: dict[str, tuple[Make, bool]] = {  # name -> (maker, found glued to letters before it)
    "aws_access_key": (token("AKIA", UPPER + DIGITS, 16), True),
    "aws_temporary_key": (token("ASIA", UPPER + DIGITS, 16), True),
    "aws_secret_key": (context("aws_secret_access_key={}", B64, 40), False),
    "gcp_api_key": (token("AIza", URLSAFE, 35), True),
    "gcp_service_account": (gcp_service_account, False),
    "azure_storage": (azure_connection_string, False),
    "azure_sas": (context("https://demo.blob.core.windows.net/c/f?sv=2022-11-02&sig={}",
                          ALNUM, 43), False),
    "stripe_live": (token("sk_live_", ALNUM, 24), True),
    "stripe_restricted": (token("rk_live_", ALNUM, 99), True),
    "stripe_test": (token("sk_test_", ALNUM, 32), True),
    "square_access": (token("sq0atp-", URLSAFE, 22), True),
    "square_oauth": (token("EAAA", URLSAFE, 60), True),
    "slack_bot": (token(f"xoxb-{random.Random(1).randrange(10**11)}-", ALNUM, 24), True),
    "slack_user": (token("xoxp-1234567890-1234567890-", ALNUM, 32), True),
    "slack_webhook": (context("https://hooks.slack.com/services/T0000/B0000/{}", ALNUM, 24),
                      False),
    "twilio_api_key": (token("SK", HEX, 32), True),
    "twilio_account": (token("AC", HEX, 32), True),
    "sendgrid": (sendgrid, True),
    "mailgun": (token("key-", HEX, 32), True),
    "github_pat": (token("ghp_", ALNUM, 36), True),
    "github_fine_grained": (token("github_pat_", ALNUM + "_", 82), True),
    "github_app": (token("ghs_", ALNUM, 36), True),
    "gitlab": (token("glpat-", URLSAFE, 20), True),
    "npm": (token("npm_", ALNUM, 36), True),
    "pypi": (token("pypi-AgEIcHlwaS5vcmc", URLSAFE, 70), True),
    "dockerhub": (token("dckr_pat_", URLSAFE, 27), True),
    "openai": (token("sk-proj-", URLSAFE, 48, digit=True), False),
    "anthropic": (token("sk-ant-api03-", URLSAFE, 93), True),
    "huggingface": (token("hf_", ALNUM, 34), True),
    "google_ai": (token("AIzaSy", URLSAFE, 33), True),
    "jwt": (jwt, True),
    "private_key": (pem_block, True),
    "private_key_after_key": (pem_after_key, False),
    "bearer": (context("Authorization: Bearer {}", ALNUM + "._-", 40), False),
    "basic_auth": (basic_auth, False),
    "url_password": (url_password, False),
}


def carrier(marker: str, make: Make, glue: bool, rnd: random.Random, *, short: bool):
    """A text holding the class's secrets in several settings, and the secret parts."""
    if short:  # fields of a few hundred characters at most: one plain occurrence
        text, needles = make(rnd)
        return f"{marker} {text}", needles
    texts, needles = [], []
    for _ in range(5):
        t, n = make(rnd)
        texts.append(t)
        needles += n
    plain, glued, kv, in_json, json_in_json = texts
    glued = f"x{glued}abc" if glue else f"({glued})"
    body = (f"{marker} plain {plain} | glued {glued} | kv token={kv}; | "
            f"json {json.dumps({'v': in_json})} | "
            f"nested {json.dumps(json.dumps({'v': json_in_json}))}")
    return body, needles


# --- ingest paths: (name, short field, push(ctx, text)) ---------------------------------------


class Ctx:
    def __init__(self, api, rnd: random.Random):
        self.api, self.rnd = api, rnd
        self.statuses: dict[str, list[int]] = {}
        self.runs: dict[str, str] = {}

    def post(self, path_name: str, url: str, body, **extra):
        resp = self.api.post(url, body, format="json", **extra)
        self.statuses.setdefault(path_name, []).append(resp.status_code)
        assert resp.status_code < 500, (path_name, resp.status_code, resp.content[:300])
        return resp

    def run(self, name: str = "", **fields) -> str:
        resp = self.api.post("/api/v1/runs", {"kind": "corpus", "name": name, **fields},
                             format="json")
        assert resp.status_code == 201, resp.content
        return resp.json()["id"]

    def running_run(self, reuse: str = "") -> str:
        """A running run; with ``reuse``, the same one for every call with that name."""
        if reuse in self.runs:
            return self.runs[reuse]
        run_id = self.run()
        resp = self.api.post(f"/api/v1/runs/{run_id}/start", {"worker_id": "w1"}, format="json")
        assert resp.status_code == 200, resp.content
        if reuse:
            self.runs[reuse] = run_id
        return run_id

    def otlp(self, path_name: str, doc: dict, protobuf: bool):
        if protobuf:
            body = json_format.ParseDict(_ids_to_base64(doc), ExportTraceServiceRequest())
            data, ctype = body.SerializeToString(), "application/x-protobuf"
        else:
            data, ctype = json.dumps(doc).encode(), "application/json"
        resp = self.api.generic("POST", "/otlp/v1/traces", data, content_type=ctype)
        self.statuses.setdefault(path_name, []).append(resp.status_code)
        assert resp.status_code == 200, (path_name, resp.content[:300])


def _ids_to_base64(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for item in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId"):
                        item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    return doc


def _attrs(pairs: dict) -> list[dict]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in pairs.items()]


def otlp_doc(rnd: random.Random, field: str, text: str) -> dict:
    now = 1_700_000_000_000_000_000
    span = {
        "traceId": pick(rnd, HEX, 32), "spanId": pick(rnd, HEX, 16), "name": "op", "kind": 1,
        "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 10**6),
        "attributes": _attrs({"ok": "1"}), "events": [], "links": [],
        "status": {"code": 2, "message": "failed"},
    }
    resource = {"attributes": _attrs({"service.name": "corpus"})}
    scope = {"name": "corpus", "version": "1", "attributes": []}
    event = {"timeUnixNano": str(now), "name": "evt", "attributes": []}
    link = {"traceId": pick(rnd, HEX, 32), "spanId": pick(rnd, HEX, 16), "attributes": []}
    if field == "span_name":
        span["name"] = text
    elif field == "span_attribute":
        span["attributes"] += _attrs({"note": text})
    elif field == "span_attribute_key":
        span["attributes"] += _attrs({text: "v"})
    elif field == "span_attribute_big":
        span["attributes"] += _attrs({"input.value": text + " " + "y" * 9000})
    elif field == "span_attribute_json":
        span["attributes"] += _attrs({"llm.input": json.dumps({"messages": [{"content": text}]})})
    elif field == "status_message":
        span["status"]["message"] = text
    elif field == "event_name":
        span["events"] = [{**event, "name": text}]
    elif field == "event_attribute":
        span["events"] = [{**event, "attributes": _attrs({"exception.message": text})}]
    elif field == "link_attribute":
        span["links"] = [{**link, "attributes": _attrs({"note": text})}]
    elif field == "resource_attribute":
        resource["attributes"] += _attrs({"process.command_line": text})
    elif field == "scope_name":
        scope["name"] = text
    elif field == "scope_version":
        scope["version"] = text
    elif field == "scope_attribute":
        scope["attributes"] = _attrs({"note": text})
    else:
        raise AssertionError(field)
    return {"resourceSpans": [{"resource": resource,
                               "scopeSpans": [{"scope": scope, "spans": [span]}]}]}


def _otlp(field: str, protobuf: bool):
    def push(ctx: Ctx, name: str, text: str):
        ctx.otlp(name, otlp_doc(ctx.rnd, field, text), protobuf)

    return push


def _event(payload_of: Callable[[str], dict], etype: str = "note", **envelope):
    def push(ctx: Ctx, name: str, text: str):
        run_id = ctx.running_run()
        ctx.post(name, f"/api/v1/runs/{run_id}/events",
                 {"type": etype, "payload": payload_of(text), **envelope})

    return push


def _run_create(field: str):
    def push(ctx: Ctx, name: str, text: str):
        body = {"kind": "corpus", field: text}
        if field == "input":
            body["input"] = {"prompt": text, "nested": {"deep": [text]}}
        ctx.post(name, "/api/v1/runs", body)

    return push


def _idempotency_header(ctx: Ctx, name: str, text: str):
    ctx.post(name, "/api/v1/runs", {"kind": "corpus"}, HTTP_IDEMPOTENCY_KEY=text)


def _event_ids(ctx: Ctx, name: str, text: str):
    run_id = ctx.running_run(name)
    ctx.post(name, f"/api/v1/runs/{run_id}/events",
             {"type": "note", "payload": {}, "correlation_id": text, "causation_id": text})


def _step(field: str):
    def push(ctx: Ctx, name: str, text: str):
        run_id = ctx.running_run(name)
        body = {"name": text} if field == "name" else {"name": "s", field: text}
        ctx.post(name, f"/api/v1/runs/{run_id}/steps", body)

    return push


def _step_fail(ctx: Ctx, name: str, text: str):
    run_id = ctx.running_run()
    step = ctx.post(name, f"/api/v1/runs/{run_id}/steps", {"name": "s"}).json()
    ctx.post(name, f"/api/v1/runs/{run_id}/steps/{step['id']}/fail",
             {"error": {"message": text, "stack": [text]}})


def _finish(action: str, body_of: Callable[[str], dict], *, queued: bool = False):
    def push(ctx: Ctx, name: str, text: str):
        run_id = ctx.run() if queued else ctx.running_run()
        ctx.post(name, f"/api/v1/runs/{run_id}/{action}", body_of(text))

    return push


BIG = " " + "z" * 9000  # over TRACEFOUNDRY_INLINE_STRING_LIMIT (8 KiB): moved to a blob

PATHS: list[tuple[str, bool, Callable]] = [
    *((f"otlp_{fmt}_{field}", False, _otlp(field, fmt == "protobuf"))
      for fmt in ("json", "protobuf")
      for field in ("span_name", "span_attribute", "span_attribute_key", "span_attribute_big",
                    "span_attribute_json", "status_message", "event_name", "event_attribute",
                    "link_attribute", "resource_attribute", "scope_name", "scope_version",
                    "scope_attribute")),
    ("run_name", True, _run_create("name")),
    ("run_input", False, _run_create("input")),
    ("run_correlation_id", True, _run_create("correlation_id")),
    ("run_idempotency_key", True, _run_create("idempotency_key")),
    ("run_idempotency_header", True, _idempotency_header),
    ("event_payload", False, _event(lambda t: {"text": t, "nested": {"a": [{"b": t}]}})),
    ("event_log_text", False, _event(lambda t: {"text": t, "stream": "stderr"}, "log")),
    ("event_json_in_string", False, _event(lambda t: {"raw": json.dumps({"body": t})})),
    ("event_object_key", False, _event(lambda t: {"headers": {t: "x", "other": {t: 1}}})),
    ("event_big_string", False, _event(lambda t: {"blob": t + BIG})),
    ("event_correlation_id", True, _event_ids),
    ("step_name", True, _step("name")),
    ("step_node_ref", True, _step("node_ref")),
    ("step_fail_error", False, _step_fail),
    ("succeed_output", False, _finish("succeed", lambda t: {"output": {"answer": t, t: t}})),
    ("succeed_output_big", False, _finish("succeed", lambda t: {"output": t + BIG})),
    ("fail_error", False, _finish("fail", lambda t: {"error": {"message": t, "trace": t}})),
    ("fail_error_text", False, _finish("fail", lambda t: {"error": t, "retryable": True})),
    ("cancel_reason", True, _finish("cancel", lambda t: {"reason": t}, queued=True)),
    ("cancel_request_reason", True, _finish("cancel", lambda t: {"reason": t})),
]
# Identifiers compared later are refused (400) rather than stored redacted.
REFUSED = {"run_idempotency_key", "run_idempotency_header"}

# --- where things are stored -----------------------------------------------------------------


def stored_texts():
    """(where, text) for every text and JSON column of every model, and every blob."""
    tables = set(connection.introspection.table_names())
    for model in apps.get_models():
        if model._meta.db_table not in tables:
            continue
        fields = [f for f in model._meta.concrete_fields
                  if isinstance(f, (models.CharField, models.TextField, models.JSONField))]
        if not fields:
            continue
        names = [f.attname for f in fields]
        for row in model._default_manager.values_list(*names).iterator():
            for field_name, value in zip(names, row, strict=True):
                if value in (None, "", {}, []):
                    continue
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                yield f"{model._meta.db_table}.{field_name}", text
    for blob in PayloadBlob.objects.all():
        yield f"blob {blob.sha256[:12]}", payload_read(blob).decode("utf-8", "replace")


class _Lines(logging.Handler):
    """Formats records with the server's configured console formatter (settings.LOGGING)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        config = dict(settings.LOGGING["formatters"]["plain"])
        formatter_class = config.pop("class", "logging.Formatter")
        module, _, attr = formatter_class.rpartition(".")
        cls = getattr(__import__(module, fromlist=[attr]), attr)
        self.setFormatter(cls(config.get("format")))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def server_log():
    handler, root = _Lines(), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_no_synthetic_secret_is_stored_or_logged(make_key, server_log):
    _, raw = make_key("runs:read,runs:write,ingest,worker")
    rnd = random.Random(20261204)
    ctx = Ctx(client_for(raw_key=raw), rnd)
    needles: dict[str, tuple[str, str]] = {}  # secret part -> (path, class)
    markers: dict[str, str] = {}  # marker -> path
    for pi, (path_name, short, push) in enumerate(PATHS):
        texts = []
        for ci, (class_name, (make, glue)) in enumerate(CLASSES.items()):
            marker = f"mk{pi:03d}q{ci:03d}mk"
            markers[marker] = path_name
            text, parts = carrier(marker, make, glue, rnd, short=short)
            texts.append(text)
            for part in parts:
                needles[part] = (path_name, class_name)
        # Short fields take one class at a time; the others every class in one request.
        for text in texts if short else ["\n".join(texts)]:
            push(ctx, path_name, text)
    logging.getLogger("tests.corpus").warning("end of corpus")

    found: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], str] = {}
    seen_paths: set[str] = set()
    sources = [*stored_texts(), *(("server log", line) for line in server_log)]
    for location, text in sources:
        for needle, key in needles.items():
            if needle in text:
                found[key] += 1
                where.setdefault(key, f"{location}: …{needle[:24]}…")
        if "mk" in text:
            seen_paths.update(p for m, p in markers.items() if m in text)
    assert not found, "\n".join(
        f"{path} × {cls}: {n} found, e.g. in {where[(path, cls)]}"
        for (path, cls), n in sorted(found.items())
    )
    # The corpus reached storage: every path stored some of it, but those that refuse it.
    assert seen_paths == {p for p, _, _ in PATHS} - REFUSED, sorted(
        {p for p, _, _ in PATHS} - REFUSED - seen_paths)
    assert {code for p in REFUSED for code in ctx.statuses[p]} == {400}
    assert sum(1 for line in server_log if "end of corpus" in line) == 1
