"""Large span values go to the payload store; secrets never reach a row or a blob file."""

from __future__ import annotations

import json

import pytest
import zstandard
from django.db import connection

from payloads.models import PayloadBlob, PayloadRef
from payloads.store import payload_read
from runs.models import Run
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import json_request, json_span
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db
URL = "/otlp/v1/traces"
T1 = "c" * 31 + "1"
S1, S2 = "1" * 16, "2" * 16


@pytest.fixture
def ingest(make_key):
    _, raw = make_key("ingest")
    return client_for(raw_key=raw)


def send(client, spans, **kwargs):
    resp = client.generic("POST", URL, json_request(spans, **kwargs),
                          content_type="application/json")
    assert resp.status_code == 200, resp.content
    return resp


def test_big_values_become_preview_plus_ref(ingest):
    prompt = "Summarise this file:\n" + "line of code\n" * 2000
    send(ingest, [json_span(T1, S1, "chat", attributes={
        "input.value": prompt, "output.value": "short", "gen_ai.request.model": "gpt-4o",
    }, events=[{"name": "gen_ai.content.completion", "timeUnixNano": "1",
                "attributes": [{"key": "text", "value": {"stringValue": "x" * 20_000}}]}])])
    span = Span.objects.get()
    ref = span.attributes["tracefoundry.payload.input_ref"]
    assert ref.startswith("sha256:") and span.attributes["input.value"].endswith("…")
    assert len(span.attributes["input.value"]) < 600 and span.attributes["output.value"] == "short"
    blob = PayloadBlob.objects.get(sha256=ref.removeprefix("sha256:"))
    assert payload_read(blob).decode() == prompt
    event_attrs = span.events[0]["attributes"]
    assert event_attrs["tracefoundry.payload.attribute_ref"].startswith("sha256:")
    roles = set(PayloadRef.objects.filter(span=span).values_list("role", flat=True))
    assert roles == {"input", "attribute"}
    # Re-sending the span stores nothing new and keeps one set of refs.
    send(ingest, [json_span(T1, S1, "chat", attributes={"input.value": prompt})])
    assert PayloadBlob.objects.count() == 2
    assert PayloadRef.objects.filter(span=span).count() == 1


def test_spans_link_to_their_run(ingest, project):
    run = RunFactory(state="running")
    send(ingest, [json_span(T1, S1, "agent", attributes={"tracefoundry.run_id": run.id})])
    run.refresh_from_db()
    assert run.trace_id == T1
    assert Trace.objects.get(trace_id=T1).run_id == run.id


def test_one_batch_links_many_runs_and_the_first_trace_wins(ingest, project):
    """A batch naming many runs (a worker's spans, each run its own trace) links them all in one
    statement, with the rules of one link at a time: a run named by two traces of the batch gets
    the smaller trace id, a run already linked keeps its trace."""
    runs = [RunFactory(state="running") for _ in range(3)]
    linked = RunFactory(state="succeeded", trace_id="ee" * 16)
    traces = ["a1" * 16, "a2" * 16, "a3" * 16]
    spans = [json_span(t, f"{i + 1:016x}", attributes={"tracefoundry.run_id": run.id})
             for i, (t, run) in enumerate(zip(traces, runs, strict=True))]
    spans.append(json_span("a0" * 16, "00000000000000ff",
                           attributes={"tracefoundry.run_id": runs[2].id}))
    spans.append(json_span("a4" * 16, "00000000000000fe",
                           attributes={"tracefoundry.run_id": linked.id}))
    send(ingest, spans)
    assert [Run.objects.get(pk=r.id).trace_id for r in runs] == [traces[0], traces[1], "a0" * 16]
    assert Run.objects.get(pk=linked.id).trace_id == "ee" * 16
    assert Trace.objects.get(trace_id=traces[1]).run_id == runs[1].id


def test_a_run_of_another_project_is_not_linked(make_key, other_project, project):
    run = RunFactory(state="running")
    _, raw = make_key("ingest", project_obj=other_project)
    send(client_for(raw_key=raw), [json_span(T1, S1, attributes={"tracefoundry.run_id": run.id})])
    assert Run.objects.get(pk=run.id).trace_id == ""


def test_strict_project_keeps_only_allowlisted_attributes(ingest, project):
    project.redaction_policy = "strict"
    project.save()
    send(ingest, [json_span(T1, S1, "chat", attributes={
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10,
        "user.email": "ada@example.com", "app.customer_note": "call me at +1 415 555 0100",
        "http.route": "/v1/chat",
    })])
    span = Span.objects.get()
    assert set(span.attributes) == {"gen_ai.request.model", "gen_ai.usage.input_tokens",
                                    "http.route"}
    assert span.model == "gpt-4o" and span.input_tokens == 10


SECRETS = {
    "aws_access_key": "AKIA" + "QWERTYUIOPASDFGH",
    "openai_key": "sk-proj-" + "Ab3" * 16,
    "anthropic_key": "sk-ant-api03-" + "Xy9" * 14,
    "github_token": "ghp_" + "Gh7k" * 9,
    "gitlab_token": "glpat-" + "Gl4b" * 5,
    "slack_token": "xoxb-" + "123456789012-" + "Sl4ck" * 4,
    "jwt": "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".c2lnbmF0dXJlLXZhbHVlLWhlcmU",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\n"
                   "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
                   "-----END RSA PRIVATE KEY-----",
    "url_password": "hunter2-Sup3rSecret",
    "password_value": "correct-horse-9-battery",
}


def test_no_raw_secret_survives_anywhere(ingest, engineer_client, payload_dir):
    url_with_password = f"postgres://app:{SECRETS['url_password']}@db.internal:5432/app"
    # Bare passwords are only recognisable in context (a URL, a password field), so the mixed
    # text carries every other class; the URL and the field carry the passwords.
    everything = " ".join(v for k, v in SECRETS.items()
                          if k not in ("password_value", "url_password"))
    everything += f" https://bot:{SECRETS['url_password']}@git.example.com/repo.git"
    attrs = {f"secret.{k}": f"value {v} end" for k, v in SECRETS.items()
             if k not in ("url_password", "password_value")}
    attrs |= {"db.connection_string": url_with_password, "password": SECRETS["password_value"],
              "http.request.header.authorization": f"Bearer {SECRETS['github_token']}",
              "input.value": ("padding " * 2000) + everything}
    span = json_span(T1, S1, f"call with {SECRETS['openai_key']}", attributes=attrs, status=2,
                     events=[{"name": "exception", "timeUnixNano": "1", "attributes": [
                         {"key": "exception.message",
                          "value": {"stringValue": f"auth failed for {SECRETS['jwt']}"}},
                         {"key": "exception.stacktrace",
                          "value": {"stringValue": ("frame\n" * 3000) + everything}},
                     ]}])
    span["status"]["message"] = f"token {SECRETS['slack_token']} rejected"
    send(ingest, [span, json_span(T1, S2, "child", parent=S1)],
         service=f"svc {SECRETS['aws_access_key']}")
    run = RunFactory(state="running")
    resp = engineer_client.post(f"/api/v1/runs/{run.id}/events", [
        {"type": "tool_call", "payload": {"cmd": everything, "long": ("x " * 6000) + everything}},
    ], format="json")
    assert resp.status_code == 201
    assert PayloadBlob.objects.count() >= 3

    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            dump = repr(cursor.fetchall())
            for name, secret in SECRETS.items():
                assert secret not in dump, f"{name} found in table {table}"
    for path in payload_dir.rglob("*.zst"):
        text = zstandard.ZstdDecompressor().decompress(path.read_bytes()).decode()
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} found in blob {path.name}"
    assert "[REDACTED:" in json.dumps(Span.objects.get(span_id=S1).attributes)


def test_blob_refs_of_new_and_re_sent_spans_in_one_batch(ingest):
    T2 = "d" * 31 + "2"
    big = "tool output line\n" * 1000
    send(ingest, [json_span(T1, S1, "tool", attributes={"output.value": big})])
    first = Span.objects.get(trace__trace_id=T1)
    assert PayloadRef.objects.filter(span=first).count() == 1
    # One batch: the stored span again with another big value, and a new trace with a blob.
    send(ingest, [
        json_span(T1, S1, "tool", attributes={"input.value": big + "again",
                                              "output.value": big}),
        json_span(T2, S2, "tool", attributes={"output.value": big}),
    ])
    assert PayloadBlob.objects.count() == 2
    assert set(PayloadRef.objects.filter(span=first).values_list("role", flat=True)) == {
        "input", "output"}
    second = Span.objects.get(trace__trace_id=T2)
    refs = PayloadRef.objects.filter(span=second)
    assert [r.role for r in refs] == ["output"]
    assert second.attributes["tracefoundry.payload.output_ref"] == f"sha256:{refs[0].blob_id}"
    assert PayloadRef.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["name", "status"])
def test_a_secret_at_the_column_limit_is_redacted_before_the_cut(make_key, field):
    """A span name (512) or status message (4096) whose secret straddles the column's limit:
    cut before redaction, the tail of the token would be stored unrecognised."""
    from tests.conftest import client_for
    from tests.traces.otlp_builders import json_request, json_span
    from traces.models import Span

    token = "ghp_" + "Qw7" * 12
    limit = 512 if field == "name" else 4096
    text = "x" * (limit - 7) + token
    span = json_span("ab" * 16, "cd" * 8, text if field == "name" else "op")
    if field == "status":
        span["status"] = {"code": 2, "message": text}
    client = client_for(raw_key=make_key("ingest")[1])
    resp = client.generic("POST", "/otlp/v1/traces", json_request([span]),
                          content_type="application/json")
    assert resp.status_code == 200, resp.content
    stored = Span.objects.get()
    value = stored.name if field == "name" else stored.status_message
    assert token[:7] not in value and len(value) <= limit
