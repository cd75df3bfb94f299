"""Faults under load: PostgreSQL restarted and Redis stopped while spans are ingested and a
WebSocket client follows a run. Prints, per fault: requests answered 200 / 503 / 500, spans
acknowledged to the exporter vs stored, events appended vs received on the socket (and any gap),
and the time from the dependency's return to the first successful request.

The dependencies are the script's own (tests/faults/servers.py: a PostgreSQL cluster made with
``initdb``/``pg_ctl`` and a ``redis-server``, on free ports); the machine's services are never
touched. The client is the stock OpenTelemetry OTLP/HTTP exporter, which retries 503s.

    .venv/bin/python bench/faults.py                      # both faults (about 1 min)
    .venv/bin/python bench/faults.py --seconds 20 --outage 5
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep it behind the standard library's `queue` on the path.
_BENCH = str(Path(__file__).resolve().parent)
_REPO = str(Path(__file__).resolve().parent.parent)
sys.path[:] = [p for p in sys.path if p not in ("", _BENCH)] + [_BENCH, _REPO]

import argparse
import json
import re
import tempfile
import threading
import time
from collections import Counter

import httpx
import psycopg
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.sync.client import connect as ws_connect

from tests.faults.servers import PostgresCluster, RedisServer
from tests.livestack import LiveStack

BATCH = 50
WORDS = ("plan", "search", "read_file", "patch", "test", "retry", "summarise", "answer")


def make_batches(count: int) -> list[list]:
    """``count`` batches of distinct spans: one trace per span, distinct names and inputs."""
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fault-bench"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("bench.faults")
    for n in range(count * BATCH):
        with tracer.start_as_current_span(f"{WORDS[n % len(WORDS)]} {n}") as span:
            span.set_attribute("input.value", f"step {n}: {WORDS[(n * 7) % len(WORDS)]} item "
                                              f"{n * 7919 % 100_003}")
    spans = list(recorder.get_finished_spans())
    return [spans[i:i + BATCH] for i in range(0, len(spans), BATCH)]


class Load:
    """Exports batches for ``seconds``, and appends one event a 50 ms to a run that a WebSocket
    client follows."""

    def __init__(self, stack: LiveStack, url: str, seconds: float) -> None:
        self.stack, self.url, self.seconds = stack, url, seconds
        self.ingest_key = stack.api_key("ingest")
        self.key = stack.api_key("runs:read,runs:write")
        self.acked: set[str] = set()
        self.gave_up = 0
        self.appended: list[int] = []
        self.append_failures = Counter()
        self.received: list[int] = []
        self.stop = threading.Event()
        self.batches = make_batches(int(seconds * 40) + 40)

    def export(self) -> None:
        exporter = OTLPSpanExporter(endpoint=f"{self.url}/otlp/v1/traces", timeout=60,
                                    headers={"Authorization": f"Bearer {self.ingest_key}"})
        deadline = time.monotonic() + self.seconds
        for batch in self.batches:
            if time.monotonic() > deadline:
                break
            if exporter.export(batch) is SpanExportResult.SUCCESS:
                self.acked.update(format(s.context.trace_id, "032x") for s in batch)
            else:
                self.gave_up += len(batch)
        exporter.shutdown()

    def events(self, run_id: str) -> None:
        with httpx.Client(base_url=self.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.key}"}) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = http.post(f"/api/v1/runs/{run_id}/events",
                                  json={"type": "note", "payload": {"n": n, "text": f"note {n}"}})
                except httpx.HTTPError as exc:
                    self.append_failures[type(exc).__name__] += 1
                else:
                    if r.status_code == 201:
                        body = r.json()
                        self.appended.extend(e["id"] for e in body.get("events", [body]))
                    else:
                        self.append_failures[r.status_code] += 1
                time.sleep(0.05)

    def follow(self, run_id: str) -> None:
        ws_url = self.url.replace("http", "ws")
        with ws_connect(f"{ws_url}/ws/runs/{run_id}/",
                        additional_headers={"Authorization": f"Bearer {self.key}"}) as ws:
            while True:
                try:
                    message = json.loads(ws.recv(timeout=5))
                except TimeoutError:
                    if self.stop.is_set():
                        return
                    continue
                if message["type"] == "event" and message["event"]["type"] == "note":
                    self.received.append(message["event"]["id"])
                    ws.send(json.dumps({"type": "ack", "last_id": message["event"]["id"]}))


def first_success(url: str, key: str, started: float) -> float:
    """Seconds from ``started`` until an API request succeeds again."""
    while True:
        try:
            if httpx.get(f"{url}/api/v1/runs?limit=1", timeout=5,
                         headers={"Authorization": f"Bearer {key}"}).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)


def run_fault(name: str, stack: LiveStack, down, up, args) -> None:
    web = stack.server()
    load = Load(stack, web.url, args.seconds)
    _status, run = stack.request("POST", f"{web.url}/api/v1/runs", key=load.key,
                                body={"kind": "bench.faults"})
    stack.request("POST", f"{web.url}/api/v1/runs/{run['id']}/start", key=load.key,
                  body={"worker_id": "bench"})
    threads = [threading.Thread(target=load.export),
               threading.Thread(target=load.events, args=(run["id"],)),
               threading.Thread(target=load.follow, args=(run["id"],))]
    for t in threads:
        t.start()
    time.sleep(args.seconds / 4)
    down()
    time.sleep(args.outage)
    up()
    recovered = first_success(web.url, load.key, time.monotonic())
    threads[0].join()
    load.stop.set()
    for t in threads[1:]:
        t.join(60)
    time.sleep(1)
    with psycopg.connect(stack.database_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT trace_id FROM traces_trace")}
    statuses = Counter(int(c) for c in re.findall(r'" (\d{3}) ', web.log()))
    missing = sorted(set(load.appended) - set(load.received))
    print(f"== {name} ({args.outage:g} s outage under load)")
    print(f"  requests answered        {dict(sorted(statuses.items()))}")
    print(f"  spans acknowledged       {len(load.acked) :>6}   stored {len(stored):>6}   "
          f"acknowledged but not stored {len(load.acked - stored)}   "
          f"given up by the exporter {load.gave_up}")
    print(f"  events appended          {len(load.appended):>6}   received on the socket "
          f"{len(load.received)}   missing {len(missing)}   duplicates "
          f"{len(load.received) - len(set(load.received))}   append failures "
          f"{dict(load.append_failures)}")
    print(f"  first API success after the dependency came back: {recovered * 1000:.0f} ms\n",
          flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=12.0, help="length of the load")
    p.add_argument("--outage", type=float, default=3.0, help="seconds the dependency is down")
    p.add_argument("--fault", choices=("postgres", "redis", "both"), default="both")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-faults-"))
    for sub in ("pg", "redis"):
        (tmp / sub).mkdir()
    cluster = PostgresCluster().start()
    try:
        if args.fault in ("postgres", "both"):
            stack = LiveStack.create(tmp / "pg", database_url=cluster.create_database("pgfault"),
                                     env={"REDIS_URL": "", "DB_POOL_TIMEOUT": "2"})
            try:
                run_fault("PostgreSQL restart", stack, lambda: cluster.stop("fast"),
                          cluster.start, args)
            finally:
                stack.close()
        if args.fault in ("redis", "both"):
            redis = RedisServer(tmp).start()
            stack = LiveStack.create(tmp / "redis",
                                     database_url=cluster.create_database("redisfault"),
                                     env={"REDIS_URL": redis.url,
                                          "CHANNEL_LAYER_PREFIX": "bench-faults"})
            try:
                run_fault("Redis stop", stack, redis.stop, redis.start, args)
            finally:
                stack.close()
                redis.stop()
    finally:
        cluster.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
