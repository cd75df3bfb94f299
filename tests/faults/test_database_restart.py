"""PostgreSQL stops and restarts under a real deployment (daphne on a cluster of the test's own):
every request is answered 503 with ``Retry-After`` while it is down, never 500; the first request
after it is back succeeds (pooled connections are checked); ``/readyz`` answers while it is down;
and a retrying OTLP exporter loses no acknowledged span and stores none twice."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.faults.servers import PostgresCluster
from tests.livestack import LiveStack
from tests.traces.otlp_builders import json_request, json_span

pytestmark = pytest.mark.postgres  # CI's PostgreSQL pass; the cluster is the test's own


@pytest.fixture
def cluster():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.remove()


@pytest.fixture
def stack(cluster, tmp_path):
    stack = LiveStack.create(tmp_path, database_url=cluster.create_database("tf"),
                             env={"DB_POOL_MAX_SIZE": "4", "DB_POOL_TIMEOUT": "2"})
    yield stack
    stack.close()


def raw_request(url: str, *, method="GET", body: bytes | None = None, key: str | None = None,
                content_type="application/json") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        # The timeout only keeps a broken server from hanging the suite (no timing asserts).
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def statuses_in(log: str) -> list[int]:
    return [int(code) for code in re.findall(r'" (\d{3}) ', log)]


def test_requests_are_503_while_the_database_is_down_and_succeed_once_it_is_back(
        cluster, stack):
    key = stack.api_key("ingest,runs:read,runs:write")
    web = stack.server()
    ingest = f"{web.url}/otlp/v1/traces"

    def span(n: int) -> bytes:
        return json_request([json_span(f"{n:032x}", f"{n:016x}", f"op {n}")])

    assert raw_request(ingest, method="POST", body=span(1), key=key)[0] == 200
    assert raw_request(f"{web.url}/api/v1/runs", key=key)[0] == 200

    cluster.stop("fast")
    down = {
        "ingest": raw_request(ingest, method="POST", body=span(2), key=key),
        "enqueue": raw_request(f"{web.url}/api/v1/runs", method="POST",
                               body=b'{"kind": "system.noop"}', key=key),
        "list": raw_request(f"{web.url}/api/v1/runs", key=key),
        "readyz": raw_request(f"{web.url}/readyz"),
    }
    for name, (status, headers, body) in down.items():
        assert status == 503, (name, status, body)
        if name != "readyz":
            assert int(headers["Retry-After"]) > 0, name
            assert b'"code":"unavailable"' in body.replace(b" ", b""), (name, body)
    assert b'"database":{"ok":false' in down["readyz"][2].replace(b" ", b"")

    cluster.start()
    # The first request after the restart succeeds: the pool checks connections it hands out.
    assert raw_request(ingest, method="POST", body=span(3), key=key)[0] == 200
    assert [raw_request(f"{web.url}/api/v1/runs", key=key)[0] for _ in range(6)] == [200] * 6
    assert raw_request(f"{web.url}/readyz")[0] == 200
    assert 500 not in statuses_in(web.log()), web.log()[-3000:]


def test_a_retrying_exporter_loses_no_acknowledged_span_across_a_restart(cluster, stack):
    key = stack.api_key("ingest")
    web = stack.server()
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fault-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("faults")
    for n in range(600):  # one trace per span: distinct ids, names and attributes
        with tracer.start_as_current_span(f"step {n}") as s:
            s.set_attribute("input.value", f"question number {n} about topic {n * 7919 % 1000}")
    spans = list(recorder.get_finished_spans())
    batches = [spans[i:i + 20] for i in range(0, len(spans), 20)]
    exporter = OTLPSpanExporter(endpoint=f"{web.url}/otlp/v1/traces", timeout=60,
                                headers={"Authorization": f"Bearer {key}"})
    acknowledged: set[str] = set()
    sent = threading.Event()

    def export_all() -> None:
        for i, batch in enumerate(batches):
            if exporter.export(batch) is SpanExportResult.SUCCESS:
                acknowledged.update(format(s.context.trace_id, "032x") for s in batch)
            if i == 4:
                sent.set()
            time.sleep(0.02)
        sent.set()

    worker = threading.Thread(target=export_all)
    worker.start()
    assert sent.wait(120)
    cluster.stop("fast")
    time.sleep(2)  # an outage of a few seconds; the exporter keeps trying meanwhile
    cluster.start()
    worker.join(300)
    assert not worker.is_alive()
    exporter.shutdown()

    with psycopg.connect(stack.database_url) as conn:
        stored = [row[0] for row in conn.execute("SELECT trace_id FROM traces_trace")]
        span_rows = conn.execute("SELECT count(*), count(DISTINCT span_id) FROM traces_span")
        total, distinct = span_rows.fetchone()
    statuses = statuses_in(web.log())
    assert 500 not in statuses
    assert 503 in statuses, "the outage was never seen: the test proved nothing"
    assert acknowledged <= set(stored), sorted(acknowledged - set(stored))[:5]
    assert len(stored) == len(set(stored)) and total == distinct
    assert len(acknowledged) == len(spans), "the exporter gave up on a batch it should retry"
