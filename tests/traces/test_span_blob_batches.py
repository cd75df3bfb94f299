"""The blobs of an OTLP batch are stored together (issue #12): every distinct value once, with
a number of queries that does not depend on how many values the batch moves to blobs, each one
readable through the payload API and pointed at by a ref of the span that carried it."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payloads.models import PayloadBlob, PayloadRef
from tests.conftest import client_for
from tests.pg_locks import wait_until_blocked
from tests.traces.otlp_builders import json_request, json_span, pb_request
from traces.models import Span
from traces.otlp_decode import decode_request
from traces.services import spans_ingest

pytestmark = pytest.mark.django_db
URL = "/otlp/v1/traces"
REF = "tracefoundry.payload.prompt_ref"


@pytest.fixture
def ingest(make_key):
    _, raw = make_key("ingest")
    return client_for(raw_key=raw)


def prompt(tag: str) -> str:
    """A distinct value well over the 8 KB inline limit."""
    return f"System: you are agent {tag}.\n" + "Read the failing test, then patch it.\n" * 300


def sha_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trace_id(n: int) -> str:
    return f"{n:032x}"


def spans_with(trace: int, values: list[str | None]) -> list[dict]:
    """One span of trace ``trace`` per value, carrying it as ``gen_ai.prompt`` (None: none)."""
    return [json_span(trace_id(trace), f"{i + 1:016x}", "chat",
                      attributes={"gen_ai.prompt": v} if v is not None else {})
            for i, v in enumerate(values)]


def send(client, spans: list[dict]) -> None:
    resp = client.generic("POST", URL, json_request(spans), content_type="application/json")
    assert resp.status_code == 200, resp.content


def test_a_batch_with_many_blobs_stores_each_once(ingest, engineer_client, payload_dir):
    shared = prompt("shared")
    values = {1: [prompt(f"a{i}") for i in range(15)],
              2: [prompt(f"b{i}") for i in range(15)] + [shared, shared, None]}
    chain = json_span(trace_id(3), "f" * 16, "chain", attributes={
        "input.value": shared, "output.value": prompt("out")})

    send(ingest, [*spans_with(1, values[1]), *spans_with(2, values[2]), chain])

    assert PayloadBlob.objects.count() == 32  # 30 distinct, the shared one, the output
    assert len(list(payload_dir.rglob("*.zst"))) == 32
    assert PayloadRef.objects.count() == 34  # one per value carried
    for trace, carried in values.items():
        for i, value in enumerate(carried):
            span = Span.objects.get(trace__trace_id=trace_id(trace), span_id=f"{i + 1:016x}")
            refs = list(span.payload_refs.values_list("blob_id", "role", "json_path"))
            if value is None:
                assert REF not in span.attributes and refs == []
                continue
            assert span.attributes[REF] == f"sha256:{sha_of(value)}"
            assert refs == [(sha_of(value), "prompt", "attributes/gen_ai.prompt")]
            resp = engineer_client.get(f"/api/v1/payloads/{span.attributes[REF]}")
            assert resp.status_code == 200 and resp.content == value.encode()
    chain = Span.objects.get(span_id="f" * 16)
    assert set(chain.payload_refs.values_list("blob_id", "role")) == {
        (sha_of(shared), "input"), (sha_of(prompt("out")), "output")}


def test_identical_values_share_one_blob_across_batches(ingest, payload_dir):
    shared = prompt("shared")
    send(ingest, spans_with(1, [shared, shared]))
    first = PayloadBlob.objects.get()

    send(ingest, spans_with(2, [shared, prompt("new")]))

    assert PayloadBlob.objects.count() == 2 and len(list(payload_dir.rglob("*.zst"))) == 2
    assert PayloadRef.objects.filter(blob=first).count() == 3
    # A young blob is reused as it is: no write to its row.
    assert PayloadBlob.objects.get(pk=first.pk).created_at == first.created_at


def test_a_batch_reusing_an_old_blob_moves_its_retention_clock(ingest):
    old = prompt("old")
    send(ingest, spans_with(1, [old]))
    long_ago = timezone.now() - timedelta(hours=2)
    PayloadBlob.objects.filter(sha256=sha_of(old)).update(created_at=long_ago)

    send(ingest, spans_with(2, [prompt("young"), old]))

    refreshed = PayloadBlob.objects.get(sha256=sha_of(old)).created_at
    assert refreshed > timezone.now() - timedelta(minutes=1)
    assert PayloadBlob.objects.count() == 2 and PayloadRef.objects.count() == 3


def test_a_blob_whose_row_is_gone_gets_its_file_written_again(ingest, payload_dir):
    """A file without a row (its writer rolled back, or retention is deleting it) is not
    trusted: the next writer of the bytes writes it again."""
    value = prompt("orphan")
    send(ingest, spans_with(1, [value]))
    path = next(payload_dir.rglob("*.zst"))
    PayloadBlob.objects.all().delete()
    path.write_bytes(b"not zstd")

    send(ingest, spans_with(2, [value]))

    blob = PayloadBlob.objects.get()
    assert blob.sha256 == sha_of(value) and path.read_bytes() != b"not zstd"


def test_the_file_of_a_blob_that_exists_is_not_written_again(ingest, payload_dir):
    """A reader may be streaming it: only the files of blobs without a row are written."""
    value = prompt("read meanwhile")
    send(ingest, spans_with(1, [value]))
    path = next(payload_dir.rglob("*.zst"))
    path.write_bytes(b"marker")

    send(ingest, spans_with(2, [value, prompt("other")]))

    assert path.read_bytes() == b"marker"
    assert PayloadRef.objects.filter(blob_id=sha_of(value)).count() == 2


def _queries(client, spans: list[dict]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        send(client, spans)
    return len(ctx.captured_queries)


def test_the_queries_of_a_batch_do_not_grow_with_its_blobs(ingest):
    send(ingest, spans_with(1, [prompt("warm"), None]))  # warm: the key, the project

    few = _queries(ingest, spans_with(2, [prompt("few")] + [None] * 39))
    many = _queries(ingest, spans_with(3, [prompt(f"many{i}") for i in range(40)]))
    assert many == few
    # Spans of traces that exist (re-sent: upserted, their old refs replaced) alike.
    resent = _queries(ingest, spans_with(3, [prompt(f"again{i}") for i in range(40)]))
    assert resent == _queries(ingest, spans_with(2, [prompt("again")] + [None] * 39))
    assert PayloadRef.objects.filter(span__trace__trace_id=trace_id(3)).count() == 40
    assert PayloadBlob.objects.count() == 1 + 1 + 40 + 40 + 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_writers_of_the_same_new_blob_at_once(project, make_key, payload_dir):
    """The second writer finds no row (the first has not committed), writes the file and
    inserts the row, which waits for the first writer's; once that commits, it skips its own
    row and both spans point at the one blob."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers racing on one blob row: PostgreSQL")
    _, raw = make_key("ingest")
    value = prompt("raced")
    stored, may_commit = threading.Event(), threading.Event()
    outcome: dict = {}

    def first() -> None:
        try:
            with transaction.atomic():
                body = pb_request(spans_with(1, [value]))
                spans_ingest(project=project, records=decode_request(
                    body, "application/x-protobuf").spans)
                stored.set()
                may_commit.wait(30)
        except Exception as exc:  # reported below, not lost in the thread
            outcome["first_error"] = exc
        finally:
            stored.set()
            connections.close_all()

    def second() -> None:
        try:
            resp = client_for(raw_key=raw).generic(
                "POST", URL, json_request(spans_with(2, [value])),
                content_type="application/json")
            outcome["status"] = resp.status_code
        except Exception as exc:
            outcome["second_error"] = exc
        finally:
            connections.close_all()

    writing = threading.Thread(target=first)
    writing.start()
    assert stored.wait(30)
    racing = threading.Thread(target=second)
    racing.start()
    outcome["blocked"] = wait_until_blocked(racing)
    may_commit.set()
    writing.join(30)
    racing.join(30)

    assert "first_error" not in outcome and "second_error" not in outcome, outcome
    assert outcome["blocked"], "the second writer never waited for the first's blob row"
    assert outcome["status"] == 200
    assert PayloadBlob.objects.get().sha256 == sha_of(value)
    assert PayloadRef.objects.filter(blob_id=sha_of(value)).count() == 2
    assert len(list(payload_dir.rglob("*.zst"))) == 1
    connection.check_constraints()
