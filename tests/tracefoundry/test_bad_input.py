"""Bad input anywhere in the REST API is a 4xx JSON error and stores nothing (PRODUCT.md §5).

One table of requests that each used to be a 500 (or were accepted against the OpenAPI
schema), sent with real auth through the API client. The rules live where the input enters:
the JSON parser (surrogates, depth, non-finite numbers), tracefoundry.api.inputs (bounds, UTC
offsets, JSON types, empty filters), the pagination (limit, cursors).
"""

from __future__ import annotations

import base64

import pytest

from runs.models import Run, RunEvent, Step
from tests.runs.factories import RunFactory
from tests.tracefoundry.test_errors import assert_error
from tracefoundry.api.parsers import MAX_JSON_DEPTH
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db


def nested(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def cursor(**tokens: str) -> str:
    return base64.b64encode("&".join(f"{k}={v}" for k, v in tokens.items()).encode()).decode()


@pytest.fixture
def client(key_client):
    """A key that may call every endpoint of the table (claim needs the `worker` scope)."""
    return key_client("runs:read,runs:write,worker")


@pytest.fixture
def target(client):
    """A running run with a step."""
    run = RunFactory(state="running")
    step = client.post(f"/api/v1/runs/{run.id}/steps", {"name": "s"}, format="json")
    assert step.status_code == 201, step.content
    return {"run": run.id, "step": step.json()["id"]}


def stored() -> dict[str, object]:
    return {
        "runs": list(Run.objects.values_list("id", "state", "event_count", "updated_at")),
        "steps": list(Step.objects.values_list("id", "state", "position")),
        "events": RunEvent.objects.count(),
        "traces": Trace.objects.count(),
        "spans": Span.objects.count(),
    }


HUGE = "123456789012345678901234567890"
TZ_AHEAD = "2026-01-01T00%3A00%3A00%2B16%3A00"  # +16:00, beyond PostgreSQL's ±15:59
TZ_BEHIND = "2026-01-01T00%3A00%3A00-23%3A59"

# (method, path, raw JSON body or None, extra headers, status)
CASES = {
    # timezone offsets beyond ±15:59 in since/before, and in a body
    "runs since +16:00": ("GET", f"/api/v1/runs?since={TZ_AHEAD}", None, {}, 400),
    "runs before -23:59": ("GET", f"/api/v1/runs?before={TZ_BEHIND}", None, {}, 400),
    "traces since +16:00": ("GET", f"/api/v1/traces?since={TZ_AHEAD}", None, {}, 400),
    "traces before -23:59": ("GET", f"/api/v1/traces?before={TZ_BEHIND}", None, {}, 400),
    "runs since year 1 +15:00": (
        "GET", "/api/v1/runs?since=0001-01-01T00%3A00%3A00%2B15%3A00", None, {}, 400),
    "run_after +16:00": ("POST", "/api/v1/runs",
                         '{"kind": "k", "run_after": "2026-01-01T00:00:00+16:00"}', {}, 400),
    # empty since/before: not a filter silently dropped
    "runs since empty": ("GET", "/api/v1/runs?since=", None, {}, 400),
    "traces before empty": ("GET", "/api/v1/traces?before=", None, {}, 400),
    "traces min_tokens empty": ("GET", "/api/v1/traces?min_tokens=", None, {}, 400),
    "traces has_error null": ("GET", "/api/v1/traces?has_error=null", None, {}, 400),
    # integers beyond their columns
    "step position 2**31": ("POST", "/api/v1/runs/{run}/steps",
                            '{"name": "s", "position": 2147483648}', {}, 400),
    "events after_id 2**63": ("GET", f"/api/v1/runs/{{run}}/events?after_id={2**63}",
                              None, {}, 400),
    "stream after_id 2**63": ("GET", f"/api/v1/runs/{{run}}/events/stream?after_id={2**63}",
                              None, {}, 400),
    "traces min_tokens 10**20": ("GET", f"/api/v1/traces?min_tokens={10**20}", None, {}, 400),
    "traces min_cost 1e30": ("GET", "/api/v1/traces?min_cost=1e30", None, {}, 400),
    # JSON the parser refuses for every endpoint
    "run input 1,000 deep": ("POST", "/api/v1/runs",
                             f'{{"kind": "k", "input": {nested(999)}}}', {}, 400),
    "event payload 1,000 deep": ("POST", "/api/v1/runs/{run}/events",
                                 f'{{"type": "x", "payload": {nested(999)}}}', {}, 400),
    f"event payload {MAX_JSON_DEPTH + 1} deep": (
        "POST", "/api/v1/runs/{run}/events",
        f'{{"type": "x", "payload": {nested(MAX_JSON_DEPTH)}}}', {}, 400),
    "lone surrogate": ("POST", "/api/v1/runs", '{"kind": "k", "input": "\\ud800"}', {}, 400),
    "lone surrogate in a key": ("POST", "/api/v1/runs/{run}/events",
                                '{"type": "x", "payload": {"\\udfff": 1}}', {}, 400),
    "1e400 with a big integer": ("POST", "/api/v1/runs/{run}/events",
                                 f'{{"type": "x", "payload": {{"a": 1e400, "b": {HUGE}}}}}',
                                 {}, 400),
    "-1e400 in run input": ("POST", "/api/v1/runs", '{"kind": "k", "input": [-1e400]}', {}, 400),
    "NaN": ("POST", "/api/v1/runs/{run}/fail", '{"error": NaN}', {}, 400),
    # Idempotency-Key over 255 characters
    "Idempotency-Key 256": ("POST", "/api/v1/runs", '{"kind": "k"}',
                            {"HTTP_IDEMPOTENCY_KEY": "k" * 256}, 400),
    # forged cursors
    "runs cursor garbage position": (
        "GET", "/api/v1/runs?cursor=" + cursor(p="not-a-date"), None, {}, 400),
    "runs cursor offset +20:00": (
        "GET", "/api/v1/runs?cursor=" + cursor(p="2026-01-01 00:00:00+20:00"), None, {}, 400),
    "runs cursor huge count": (
        "GET", "/api/v1/runs?ordering=event_count&cursor=" + cursor(p=HUGE), None, {}, 400),
    "runs cursor not base64": ("GET", "/api/v1/runs?cursor=%FF%FE", None, {}, 400),
    "traces cursor not base64": ("GET", "/api/v1/traces?cursor=%C3%B8", None, {}, 400),
    "span trace_id not hex": ("GET", "/api/v1/spans/eee19b7ec3c1b174?trace_id=xyz", None, {}, 400),
    "traces cursor huge id": (
        "GET", "/api/v1/traces?cursor=" + cursor(s="-start_time", v="2026-01-01T00:00:00+00:00",
                                                  i=HUGE), None, {}, 400),
    "traces cursor offset +20:00": (
        "GET", "/api/v1/traces?cursor=" + cursor(s="-start_time",
                                                  v="2026-01-01T00:00:00+20:00", i="1"),
        None, {}, 400),
    "traces cursor huge tokens": (
        "GET", "/api/v1/traces?sort=most_tokens&cursor=" + cursor(s="-total_tokens", v=HUGE,
                                                                   i="1"), None, {}, 400),
    # limit=0, force: 0, [] bodies, values of the wrong JSON type
    "runs limit 0": ("GET", "/api/v1/runs?limit=0", None, {}, 400),
    "traces limit -1": ("GET", "/api/v1/traces?limit=-1", None, {}, 400),
    "runs limit x": ("GET", "/api/v1/runs?limit=x", None, {}, 400),
    "events limit 0": ("GET", "/api/v1/runs/{run}/events?limit=0", None, {}, 400),
    "events level unknown": ("GET", "/api/v1/runs/{run}/events?level=info,loud", None, {}, 400),
    "stream query after_id beyond Last-Event-ID": (
        "GET", f"/api/v1/runs/{{run}}/events/stream?after_id={2**63}", None,
        {"HTTP_LAST_EVENT_ID": "0"}, 400),
    "cancel force 0": ("POST", "/api/v1/runs/{run}/cancel", '{"force": 0}', {}, 400),
    "fail retryable 'true'": ("POST", "/api/v1/runs/{run}/fail", '{"retryable": "true"}', {}, 400),
    "step start []": ("POST", "/api/v1/runs/{run}/steps/{step}/start", "[]", {}, 400),
    "step fail []": ("POST", "/api/v1/runs/{run}/steps/{step}/fail", "[]", {}, 400),
    "events []": ("POST", "/api/v1/runs/{run}/events", "[]", {}, 400),
    "enqueue []": ("POST", "/api/v1/runs", "[]", {}, 400),
    "cancel []": ("POST", "/api/v1/runs/{run}/cancel", "[]", {}, 400),
    "kind 5": ("POST", "/api/v1/runs", '{"kind": 5}', {}, 400),
    "kind with NUL": ("POST", "/api/v1/runs", '{"kind": "a\\u0000"}', {}, 400),
    "event correlation_id with NUL": ("POST", "/api/v1/runs/{run}/events",
                                      '{"type": "x", "correlation_id": "a\\u0000"}', {}, 400),
    "event level {}": ("POST", "/api/v1/runs/{run}/events", '[{"type": "x", "level": {}}]', {},
                       400),
    "runs ordering unknown": ("GET", "/api/v1/runs?ordering=-created_at,name", None, {}, 400),
    "runs ordering empty": ("GET", "/api/v1/runs?ordering=", None, {}, 400),
    "traces sort empty": ("GET", "/api/v1/traces?sort=", None, {}, 400),
    "traces min_latency_ms beyond bound": (
        "GET", "/api/v1/traces?min_latency_ms=-2e16", None, {}, 400),
    "max_attempts '3'": ("POST", "/api/v1/runs", '{"kind": "k", "max_attempts": "3"}', {}, 400),
    "claim kinds [0]": ("POST", "/api/v1/runs/claim", '{"worker_id": "w", "kinds": [0]}', {},
                        400),
    "claim limit true": ("POST", "/api/v1/runs/claim", '{"worker_id": "w", "limit": true}', {},
                         400),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_a_4xx_json_error_and_stores_nothing(client, target, case):
    method, path, body, headers, status = CASES[case]
    before = stored()
    resp = client.generic(
        method, path.format(**target), body.encode() if body is not None else "",
        content_type="application/json", **headers)
    assert_error(resp, status)
    assert stored() == before


def test_deepest_json_allowed_is_stored_and_served(client, target):
    body = f'{{"type": "x", "payload": {{"deep": {nested(MAX_JSON_DEPTH - 2)}}}}}'
    resp = client.generic("POST", f"/api/v1/runs/{target['run']}/events", body.encode(),
                          content_type="application/json")
    assert resp.status_code == 201, resp.content
    page = client.get(f"/api/v1/runs/{target['run']}/events?types=x")
    assert page.status_code == 200
    assert page.json()["events"][0]["payload"]["deep"][0][0]  # redaction caps what is kept


def test_null_input_output_and_error_mean_none(engineer_client):
    run = engineer_client.post("/api/v1/runs", {"kind": "k", "input": None}, format="json")
    assert run.status_code == 201, run.content
    assert run.json()["input"] == {}
    run_id = run.json()["id"]
    started = engineer_client.post(f"/api/v1/runs/{run_id}/start", {}, format="json")
    assert started.status_code == 200, started.content
    step = engineer_client.post(f"/api/v1/runs/{run_id}/steps", {"name": "s"}, format="json")
    failed = engineer_client.post(f"/api/v1/runs/{run_id}/steps/{step.json()['id']}/fail",
                                  {"error": None}, format="json")
    assert failed.status_code == 200 and failed.json()["state"] == "failed", failed.content
    done = engineer_client.post(f"/api/v1/runs/{run_id}/succeed", {"output": None}, format="json")
    assert done.status_code == 200 and done.json()["output_ref"] == "", done.content
    other = engineer_client.post("/api/v1/runs", {"kind": "k"}, format="json").json()["id"]
    engineer_client.post(f"/api/v1/runs/{other}/start", {}, format="json")
    failed = engineer_client.post(f"/api/v1/runs/{other}/fail", {"error": None}, format="json")
    assert failed.status_code == 200 and failed.json()["state"] == "failed", failed.content


def test_a_key_up_to_255_characters_in_the_header_is_used(engineer_client):
    key = "k" * 255
    first = engineer_client.post("/api/v1/runs", {"kind": "k"}, format="json",
                                 HTTP_IDEMPOTENCY_KEY=key)
    again = engineer_client.post("/api/v1/runs", {"kind": "k"}, format="json",
                                 HTTP_IDEMPOTENCY_KEY=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
