"""Appending and reading run events through the HTTP API."""

from __future__ import annotations

import hashlib
import json

import pytest
import zstandard
from django.db import connection

from runs.models import RunEvent
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def url(run, suffix="events"):
    return f"/api/v1/runs/{run.id}/{suffix}"


@pytest.fixture
def run(project):
    return RunFactory(state="running")


def test_append_single_event_returns_it(engineer_client, run):
    resp = engineer_client.post(url(run), {"type": "note", "payload": {"text": "hello"}},
                                format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["type"] == "note"
    assert body["payload"] == {"text": "hello"}
    assert body["seq"] == run.event_count + 1
    assert body["run_id"] == run.id
    assert body["level"] == "info"
    run.refresh_from_db()
    assert run.event_count == body["seq"]
    assert run.latest_event_at is not None


def test_append_batch_assigns_consecutive_seq_and_counts_errors(engineer_client, run):
    events = [{"type": "log", "payload": {"stream": "stdout", "text": f"line {i}"}}
              for i in range(250)]
    events.append({"type": "error", "payload": {"message": "kaboom"}})
    before = run.event_count
    resp = engineer_client.post(url(run), events, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["accepted"] == 251 and body["dropped"] == 0
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == list(range(before + 1, before + 252))
    run.refresh_from_db()
    assert run.event_count == before + 251
    assert run.error_count == 1


def test_batch_over_limit_is_rejected(engineer_client, run):
    events = [{"type": "note"} for _ in range(1001)]
    resp = engineer_client.post(url(run), events, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["limit"] == 1000


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "Bad Type"}, "type"),
        ({"type": "run.succeeded"}, "type"),
        ({"type": "note", "level": "fatal"}, "level"),
        ({"type": "note", "source": "Not Valid!"}, "source"),
        ({"type": "note", "surprise": 1}, "surprise"),
        ({"type": "log", "payload": {"stream": "stdin", "text": "x"}}, "payload.stream"),
        ({"type": "log", "payload": {"stream": "stdout"}}, "payload.text"),
        ({"type": "progress", "payload": {"completed": -1}}, "payload.completed"),
        ({"payload": {}}, "type"),
    ],
)
def test_invalid_event_is_400_and_changes_nothing(engineer_client, run, body, field):
    count = RunEvent.objects.count()
    resp = engineer_client.post(url(run), [{"type": "note"}, body], format="json")
    assert resp.status_code == 400, resp.content
    err = resp.json()["error"]
    assert err["code"] == "invalid"
    assert {"index": 1, "field": field} in [
        {"index": e["index"], "field": e["field"]} for e in err["details"]["errors"]
    ]
    assert RunEvent.objects.count() == count


def test_unknown_step_is_400(engineer_client, run):
    resp = engineer_client.post(url(run), {"type": "note", "step_id": "step_nope"}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["step_ids"] == ["step_nope"]


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        (b'{"type": "note", ', "application/json", 400),
        (b"[]", "application/json", 400),
        (b'"just a string"', "application/json", 400),
        (b"type=note", "application/x-www-form-urlencoded", 415),
        (b"<xml/>", "application/xml", 415),
        (b'{"type": "note", "payload": {"x": NaN}}', "application/json", 400),
    ],
)
def test_malformed_bodies(engineer_client, run, raw, content_type, status):
    count = RunEvent.objects.count()
    resp = engineer_client.generic("POST", url(run), raw, content_type=content_type)
    assert resp.status_code == status, resp.content
    assert set(resp.json()["error"]) == {"code", "message", "details"}
    assert RunEvent.objects.count() == count


def test_oversized_body_is_413(engineer_client, run, settings):
    settings.TRACEFOUNDRY_MAX_REQUEST_BYTES = 10_000
    body = json.dumps({"type": "note", "payload": {"text": "x" * 20_000}})
    resp = engineer_client.generic("POST", url(run), body, content_type="application/json")
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_unknown_run_is_404(engineer_client):
    resp = engineer_client.post("/api/v1/runs/run_01JUNKJUNKJUNKJUNKJUNKJUNK/events",
                                {"type": "note"}, format="json")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_finished_run_rejects_events_with_409(engineer_client, project):
    run = RunFactory(state="succeeded")
    resp = engineer_client.post(url(run), {"type": "note"}, format="json")
    assert resp.status_code == 409
    assert resp.json()["error"]["details"]["state"] == "succeeded"


def test_late_events_from_the_runs_worker_are_kept_and_flagged(engineer_client, project):
    run = RunFactory(state="succeeded")  # started by worker w-1
    resp = engineer_client.post(url(run), {"type": "log", "worker_id": "w-1",
                                           "payload": {"text": "bye", "stream": "stdout"}},
                                format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["late"] is True
    other = engineer_client.post(url(run), {"type": "note", "worker_id": "w-2"}, format="json")
    assert other.status_code == 409


def test_late_events_after_grace_are_rejected(engineer_client, project, settings):
    settings.TRACEFOUNDRY_LATE_EVENT_GRACE_SECONDS = 0
    run = RunFactory(state="succeeded")
    resp = engineer_client.post(url(run), {"type": "note", "worker_id": "w-1"}, format="json")
    assert resp.status_code == 409


def test_json_safety_of_service_payloads(run):
    import datetime
    import decimal

    from runs.services import event_append

    event = event_append(run_id=run.id, type="note", payload={
        "when": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), "nan": float("nan"),
        "money": decimal.Decimal("1.5"), "raw": b"\xff\xfe", "nul": "a\x00b", 3: "int key",
        "obj": object(),
    })
    event = RunEvent.objects.get(pk=event.pk)
    p = event.payload
    assert p["when"] == "2026-01-02T00:00:00+00:00"
    assert p["nan"] == "nan"
    assert p["money"] == 1.5
    assert p["raw"] == {"base64": "//4="}
    assert p["nul"] == "a\ufffdb"
    assert p["3"] == "int key"
    assert p["obj"].startswith("<object object")


def test_best_effort_append_never_raises(run):
    from runs import services

    before = services.best_effort_failures
    assert services.event_append_safe(run_id="run_missing", type="note") is None
    assert services.event_append_safe(run_id=run.id, type="Not A Type") is None
    assert services.best_effort_failures == before + 2
    assert services.event_append_safe(run_id=run.id, type="note") is not None


def test_long_strings_become_preview_and_blob(engineer_client, run, payload_dir):
    big = "diff line\n" * 2000  # ~20 KB
    resp = engineer_client.post(url(run), {"type": "patch_proposed", "payload": {"diff": big,
                                                                                 "file": "a.py"}},
                                format="json")
    assert resp.status_code == 201
    body = resp.json()
    assert body["truncated"] is True
    diff = body["payload"]["diff"]
    assert diff["truncated"] is True and diff["size_bytes"] == len(big)
    assert diff["preview"] == big[:512]
    assert diff["payload_ref"].startswith("sha256:")
    assert body["payload"]["file"] == "a.py"
    from payloads.models import PayloadBlob, PayloadRef
    from payloads.store import payload_read

    blob = PayloadBlob.objects.get(sha256=diff["payload_ref"].removeprefix("sha256:"))
    assert payload_read(blob).decode() == big
    assert blob.stored_bytes < blob.size_bytes
    ref = PayloadRef.objects.get(blob=blob)
    assert ref.role == "diff" and ref.run_event_id == body["id"] and ref.json_path == "/diff"
    # The same content again is stored once.
    engineer_client.post(url(run), {"type": "patch_proposed", "payload": {"diff": big}},
                         format="json")
    assert PayloadBlob.objects.count() == 1
    assert len(list(payload_dir.rglob("*.zst"))) == 1


def test_a_batch_of_events_stores_its_blobs_together(engineer_client, run, payload_dir):
    """Each distinct long string once, with as many queries for 21 blobs as for one."""
    from django.test.utils import CaptureQueriesContext

    from payloads.models import PayloadBlob, PayloadRef

    def diffs(tag: str, n: int) -> list[dict]:
        return [{"type": "patch_proposed", "payload": {"diff": f"{tag} {i}\n" + "line\n" * 2000}}
                for i in range(n)]

    def post(events: list[dict]) -> int:
        with CaptureQueriesContext(connection) as ctx:
            resp = engineer_client.post(url(run), events, format="json")
        assert resp.status_code == 201, resp.content
        return len(ctx.captured_queries)

    post(diffs("warm", 1))
    one = post(diffs("one", 1) + [{"type": "note"}] * 21)
    shared = diffs("shared", 1)
    many = post(diffs("many", 20) + shared * 2)

    assert many == one
    assert PayloadBlob.objects.count() == 1 + 1 + 20 + 1
    assert len(list(payload_dir.rglob("*.zst"))) == PayloadBlob.objects.count()
    shared_sha = hashlib.sha256(shared[0]["payload"]["diff"].encode()).hexdigest()
    assert PayloadRef.objects.filter(blob_id=shared_sha).count() == 2
    refs = RunEvent.objects.filter(run=run, type="patch_proposed").values_list(
        "payload__diff__payload_ref", flat=True)
    assert PayloadRef.objects.count() == len(refs) == 1 + 1 + 22


def test_payload_over_64kb_is_capped(engineer_client, run):
    payload = {f"k{i}": "v" * 1000 for i in range(100)}  # ~100 KB of small strings
    resp = engineer_client.post(url(run), {"type": "note", "payload": payload}, format="json")
    assert resp.status_code == 201
    body = resp.json()
    assert body["truncated"] is True
    assert body["payload"]["payload_ref"].startswith("sha256:")
    assert body["payload_bytes"] <= 64 * 1024


def test_run_event_limit_drops_and_says_so_once(engineer_client, project, settings):
    settings.TRACEFOUNDRY_RUN_EVENT_LIMIT = 20
    run = RunFactory(state="running")  # 2 lifecycle events
    resp = engineer_client.post(url(run), [{"type": "note"}] * 25, format="json")
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 18 and body["dropped"] == 7
    resp = engineer_client.post(url(run), [{"type": "note"}] * 3, format="json")
    assert resp.json() == {"accepted": 0, "dropped": 3, "events": []}
    run.refresh_from_db()
    assert run.dropped_event_count == 10
    errors = RunEvent.objects.filter(run=run, type="error", source="server")
    assert errors.count() == 1
    assert "limit of 20 events" in errors.get().payload["message"]


def test_secret_in_payload_is_redacted_before_storage(engineer_client, run, payload_dir):
    token = "ghp_" + "R8x2" * 9
    resp = engineer_client.post(url(run), {"type": "tool_call", "payload": {
        "command": f"git clone https://x-access-token:{token}@github.com/acme/repo",
        "headers": {"Authorization": f"Bearer {token}"},
        "note": f"token is {token}",
        "long": ("padding " * 1500) + token,
    }}, format="json")
    assert resp.status_code == 201
    assert token not in resp.content.decode()
    assert "[REDACTED:" in resp.content.decode()
    _assert_absent_from_database(token)
    blobs = list(payload_dir.rglob("*.zst"))
    assert blobs, "the long string went to the payload store"
    for path in blobs:
        text = zstandard.ZstdDecompressor().decompress(path.read_bytes()).decode()
        assert token not in text and "[REDACTED:" in text


def _assert_absent_from_database(secret: str) -> None:
    """Scan every text column of every table for the raw secret."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert secret not in repr(row), f"raw secret found in table {table}"


def test_read_events_pages_in_id_order(viewer_client, engineer_client, run):
    engineer_client.post(url(run), [{"type": "note", "payload": {"i": i}} for i in range(25)],
                         format="json")
    seen, after = [], 0
    while True:
        resp = viewer_client.get(url(run), {"after_id": after, "limit": 10})
        assert resp.status_code == 200
        body = resp.json()
        if not body["events"]:
            assert body["next_after_id"] == after
            break
        seen += body["events"]
        after = body["next_after_id"]
        assert after == body["events"][-1]["id"]
    ids = [e["id"] for e in seen]
    run.refresh_from_db()
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == run.event_count


def test_read_events_filters(viewer_client, engineer_client, run):
    engineer_client.post(url(run), [
        {"type": "log", "payload": {"stream": "stdout", "text": "a"}},
        {"type": "log", "level": "warn", "payload": {"stream": "stderr", "text": "b"}},
        {"type": "note", "level": "error"},
    ], format="json")
    by_type = viewer_client.get(url(run), {"types": "log"}).json()["events"]
    assert [e["payload"]["text"] for e in by_type] == ["a", "b"]
    by_level = viewer_client.get(url(run), {"level": "warn,error"}).json()["events"]
    assert [e["level"] for e in by_level] == ["warn", "error"]
    assert viewer_client.get(url(run), {"limit": 1}).json()["events"][0]["type"] == "run.created"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"after_id": -1},
                                   {"after_id": "abc"}, {"level": "loud"}])
def test_read_events_bad_query_is_400(viewer_client, run, query):
    resp = viewer_client.get(url(run), query)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid"


def test_default_and_max_page_size(viewer_client, engineer_client, run):
    for _ in range(2):
        engineer_client.post(url(run), [{"type": "note"}] * 1000, format="json")
    assert len(viewer_client.get(url(run)).json()["events"]) == 100
    assert len(viewer_client.get(url(run), {"limit": 1000}).json()["events"]) == 1000


def test_nul_characters_from_json_bodies_are_stored_safely(engineer_client, run):
    body = '{"type": "log", "payload": {"stream": "stdout", "text": "a\\u0000b"}}'
    resp = engineer_client.generic("POST", url(run), body, content_type="application/json")
    assert resp.status_code == 201, resp.content
    assert RunEvent.objects.get(pk=resp.json()["id"]).payload["text"] == "a\ufffdb"


def test_a_strict_project_redacts_its_run_events_strictly(engineer_client, project):
    from runs.selectors import project_policy_overrides_forget

    project.redaction_policy = "strict"
    project.save()
    project_policy_overrides_forget()
    run = RunFactory(state="running", input={"contact": "ada@example.com"})
    assert "ada@example.com" not in json.dumps(run.input)
    resp = engineer_client.post(url(run), {"type": "note", "payload": {"to": "ada@example.com"}},
                                format="json")
    assert resp.status_code == 201
    assert resp.json()["payload"]["to"] == "[REDACTED:email]"
