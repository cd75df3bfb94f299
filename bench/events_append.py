#!/usr/bin/env python
"""Event append throughput and latency (PRODUCT.md §14, "Event append").

For each database (a fresh SQLite file and/or a fresh PostgreSQL database ``tracefoundry_bench``)
this measures, with the same realistic agent events:

1. raw      plain SQL into ``runs_runevent`` for a real run: sqlite3 ``executemany`` (one
            transaction per batch); on PostgreSQL psycopg ``executemany`` and ``COPY``.
2. service  ``runs.services.event_append_batch`` in-process (a subprocess of this script that sets
            Django up against the same database), plus ``prepare_events`` alone (no database).
3. API      ``POST /api/v1/runs/{id}/events`` with batches, against a real daphne server
            (DEBUG=0), one keep-alive client and N concurrent clients (one run each).
4. single   p50/p95/p99 of sequential single-event POSTs on a keep-alive connection.

and checks the budget: API (1 client) >= 1/3 of the fastest raw rate; single p50 < 10 ms.
Exit status: 0 all budgets pass, 1 a budget failed, 2 the bench itself failed.

    .venv/bin/python bench/events_append.py [--db sqlite|postgres|both] [--events N]
        [--batch 1000] [--single N] [--clients 2] [--min-seconds 3] [--profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` (psycopg, concurrent.futures) would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import cProfile
import http.client
import json
import math
import os
import random
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

try:
    import httpx
except ImportError:  # pragma: no cover - a dev dependency
    sys.exit("bench/events_append.py needs httpx: .venv/bin/pip install -e '.[dev]'")

from common import (  # bench/ is not a package: this folder is on sys.path
    add_run_options,
    bench_db,
    daphne_server,
    db_title,
    percentile,
    print_checks,
    print_machine,
    profile_text,
    prose,
    run_bench,
    run_phase,
    setup_django,
)

PG_BENCH_DB = "tracefoundry_bench"
SQLITE_NAME = "bench.sqlite3"
PER_RUN_CAP = 90_000  # events per run and phase, below TRACEFOUNDRY_RUN_EVENT_LIMIT (100,000)
WARMUP_BATCHES = 2
SINGLE_WARMUP = 30
BUDGET_API_RATIO = 1 / 3
BUDGET_SINGLE_P50_MS = 10.0

COLUMNS = (
    "event_id", "run_id", "step_id", "seq", "type", "level", "source", "created_at",
    "correlation_id", "causation_id", "payload", "payload_bytes", "truncated", "late",
)


# --- realistic agent events --------------------------------------------------------------------

_PROSE = (
    "the agent reads the failing test and checks the fixture before it patches the model "
    "because the migration adds a nullable column with a default value so the query planner "
    "uses the index on project and created while the worker retries the request after a "
    "timeout from the upstream service then it compares the diff with the expected output "
    "and writes a short summary of the change for the reviewer including tokens used latency "
    "cache hit ratio and the number of files touched in this step of the plan"
)
WORDS = tuple(_PROSE.split())
MODULES = ("agent.loop", "tools.shell", "tools.fs", "llm.client", "planner", "sandbox", "git")
FILES = (
    "src/app/models.py", "src/app/views.py", "src/app/services/billing.py", "tests/test_api.py",
    "tests/conftest.py", "README.md", "pyproject.toml", "src/app/migrations/0007_invoice.py",
)
TOOLS = ("read_file", "grep", "run_tests", "apply_patch", "list_dir", "http_get", "shell")
HOSTS = ("https://api.example.com/v1/items", "https://pypi.org/simple/httpx/",
         "http://localhost:8000/healthz", "https://github.com/acme/shop/pull/412")
MODELS = ("claude-sonnet-4-5", "gpt-4.1-mini", "llama-3.1-70b-instruct")


class EventFactory:
    """Deterministic stream of the events an agent emits while it works."""

    KINDS = ("log", "tool_call", "tool_result", "llm_request", "llm_response", "progress")
    WEIGHTS = (46, 13, 13, 7, 7, 14)

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0
        self.open_calls: list[tuple[str, str]] = []

    def text(self, lo: int, hi: int, prefix: str = "") -> str:
        return prose(self.rng, WORDS, lo, hi, prefix)

    def log(self) -> dict:
        rng = self.rng
        style = rng.random()
        if style < 0.4:
            head = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} "
            head += f"INFO {rng.choice(MODULES)} -"
        elif style < 0.7:
            head = (f"tests/test_{rng.choice(WORDS)}.py::test_{rng.choice(WORDS)}_"
                    f"{rng.choice(WORDS)} PASSED [{rng.randint(1, 100):3d}%]")
        else:
            head = f"GET {rng.choice(HOSTS)} -> 200 in {rng.randint(3, 900)} ms"
        stream = "stderr" if rng.random() < 0.15 else "stdout"
        return {"type": "log", "level": "warn" if stream == "stderr" else "info",
                "payload": {"stream": stream, "text": self.text(100, 200, head)}}

    def tool_call(self) -> dict:
        rng = self.rng
        tool, call_id = rng.choice(TOOLS), f"call_{self.n:08x}"
        self.open_calls.append((tool, call_id))
        args: dict[str, Any] = {"path": rng.choice(FILES)}
        if tool in ("grep", "shell", "run_tests"):
            args.update(pattern=rng.choice(WORDS), flags=["-n", "--hidden"], max_results=50)
        elif tool == "read_file":
            args.update(start=rng.randint(1, 200), end=rng.randint(201, 600))
        return {"type": "tool_call", "correlation_id": call_id,
                "payload": {"tool": tool, "args": args}}

    def tool_result(self) -> dict:
        rng = self.rng
        tool, call_id = (self.open_calls.pop(0) if self.open_calls
                         else (rng.choice(TOOLS), f"call_{self.n:08x}"))
        ok = rng.random() > 0.1
        return {"type": "tool_result", "correlation_id": call_id, "level": "info" if ok else "warn",
                "payload": {"tool": tool, "ok": ok, "exit_code": 0 if ok else 1,
                            "duration_ms": rng.randint(2, 4000),
                            "output": self.text(150, 400, rng.choice(FILES) + ":")}}

    def llm_request(self) -> dict:
        return {"type": "llm_request", "payload": {
            "model": self.rng.choice(MODELS), "max_tokens": 4096, "temperature": 0.2,
            "messages": [
                {"role": "system", "content": self.text(150, 250, "You are a coding agent.")},
                {"role": "user", "content": self.text(700, 900)},
            ],
        }}

    def llm_response(self) -> dict:
        rng = self.rng
        return {"type": "llm_response", "payload": {
            "model": rng.choice(MODELS), "text": self.text(900, 1100), "stop_reason": "end_turn",
            "usage": {"input_tokens": rng.randint(500, 9000), "output_tokens": rng.randint(50, 900),
                      "cache_read_input_tokens": rng.randint(0, 4000)},
            "latency_ms": rng.randint(300, 9000),
        }}

    def progress(self) -> dict:
        total = self.rng.randint(5, 40)
        done = self.rng.randint(0, total)
        return {"type": "progress", "payload": {
            "completed": done, "total": total, "message": f"running step {done}/{total}"}}

    def event(self) -> dict:
        self.n += 1
        kind = self.rng.choices(self.KINDS, self.WEIGHTS)[0]
        return getattr(self, kind)()

    def batches(self, n_events: int, size: int) -> list[list[dict]]:
        out = []
        while n_events > 0:
            out.append([self.event() for _ in range(min(size, n_events))])
            n_events -= size
        return out


def make_batches(seed: int, n_events: int, size: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """(warm-up batches, measured batches), the same for every path."""
    factory = EventFactory(seed)
    return factory.batches(WARMUP_BATCHES * size, size), factory.batches(n_events, size)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    events: int = 0
    seconds: float = 0.0
    batch_ms: list[float] = field(default_factory=list, repr=False)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        data = asdict(self)
        data["batch_ms"] = [round(x, 3) for x in self.batch_ms]
        return data


def measure(label: str, step: Callable[[list[dict]], Any], batches: list[list[dict]], *,
            min_seconds: float, max_events: int) -> Result:
    """Run every batch once, then keep cycling until ``min_seconds`` (or ``max_events``)."""
    result = Result(label)
    start = time.perf_counter()
    i = 0
    while True:
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        step(batch)
        result.batch_ms.append((time.perf_counter() - t0) * 1000)
        result.events += len(batch)
        i += 1
        if i >= len(batches) and (
            time.perf_counter() - start >= min_seconds
            or result.events + len(batches[i % len(batches)]) > max_events
        ):
            break
    result.seconds = time.perf_counter() - start
    return result


# --- raw SQL ----------------------------------------------------------------------------------


class RawRows:
    """Turns envelopes into ``runs_runevent`` rows the way the service stores them (no Django)."""

    def __init__(self, run: tuple[str, str, int], *, sqlite: bool) -> None:
        self.run_id, self.correlation_id, self.seq = run  # seq continues the run's stream
        self.sqlite = sqlite

    def rows(self, batch: list[dict]) -> list[tuple]:
        now = datetime.now(UTC)
        created = now.replace(tzinfo=None).isoformat(" ") if self.sqlite else now
        false = 0 if self.sqlite else False
        out = []
        for event in batch:
            self.seq += 1
            text = json.dumps(event.get("payload", {}))
            out.append((
                uuid.uuid4().hex if self.sqlite else uuid.uuid4(), self.run_id, None, self.seq,
                event["type"], event.get("level", "info"), "agent", created,
                event.get("correlation_id") or self.correlation_id, "", text,
                len(text.encode("utf-8")), false, false,
            ))
        return out


def raw_sqlite(path: Path, run_id: str, warmup: list, batches: list, args) -> list[Result]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        # What Django's connection sets: settings.py init_command, plus foreign keys on.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        run = conn.execute("SELECT id, correlation_id, event_count FROM runs_run WHERE id = ?",
                           (run_id,)).fetchone()
        rows = RawRows(run, sqlite=True)
        insert = (f"INSERT INTO runs_runevent ({', '.join(COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(COLUMNS))})")

        def step(batch: list[dict]) -> None:
            data = rows.rows(batch)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, data)
            conn.execute("COMMIT")

        for batch in warmup:
            step(batch)
        return [measure("raw executemany (sqlite3)", step, batches,
                        min_seconds=args.min_seconds, max_events=10 * args.events)]
    finally:
        conn.close()


def raw_postgres(url: str, run_ids: tuple[str, str], warmup: list, batches: list,
                 args) -> list[Result]:
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        insert = sql.SQL("INSERT INTO runs_runevent ({}) VALUES ({})").format(
            cols, sql.SQL(", ").join(
                sql.SQL("%s::jsonb") if c == "payload" else sql.SQL("%s") for c in COLUMNS))
        copy_sql = sql.SQL("COPY runs_runevent ({}) FROM STDIN").format(cols)

        def executemany(rows: RawRows) -> Callable[[list[dict]], None]:
            def step(batch: list[dict]) -> None:
                data = rows.rows(batch)
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(insert, data)  # psycopg 3 pipelines this
            return step

        def copy(rows: RawRows) -> Callable[[list[dict]], None]:
            def step(batch: list[dict]) -> None:
                data = rows.rows(batch)
                with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as cp:
                    for row in data:
                        cp.write_row(row)
            return step

        for label, make, run_id in (("raw executemany (psycopg)", executemany, run_ids[0]),
                                    ("raw COPY (psycopg)", copy, run_ids[1])):
            run = conn.execute(
                "SELECT id, correlation_id, event_count FROM runs_run WHERE id = %s", (run_id,)
            ).fetchone()
            step = make(RawRows(run, sqlite=False))
            for batch in warmup:
                step(batch)
            results.append(measure(label, step, batches, min_seconds=args.min_seconds,
                                   max_events=10 * args.events))
    return results


# --- HTTP API against daphne -----------------------------------------------------------------


def api_client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=120,
                        headers={"Authorization": f"Bearer {key}",
                                 "Content-Type": "application/json"})


def create_run(client: httpx.Client, name: str) -> str:
    r = client.post("/api/v1/runs", json={"kind": "bench.events_append", "name": name})
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/v1/runs -> {r.status_code}: {r.text[:500]}")
    run_id = r.json()["id"]
    r = client.post(f"/api/v1/runs/{run_id}/start", json={})
    if r.status_code != 200:
        raise RuntimeError(f"POST /api/v1/runs/{run_id}/start -> {r.status_code}: {r.text[:500]}")
    return run_id


def post_step(client: httpx.Client, run_id: str) -> Callable[[bytes], None]:
    url = f"/api/v1/runs/{run_id}/events"

    def step(body: bytes) -> None:
        r = client.post(url, content=body)
        if r.status_code != 201:
            raise RuntimeError(f"POST {url} -> {r.status_code}: {r.text[:500]}")
    return step


class Encoded(list):
    """A pre-encoded request body that still reports how many events it holds."""

    def __init__(self, body: bytes, n: int) -> None:
        super().__init__([None] * n)
        self.body = body


def api_batches(base: str, key: str, run_ids: list[str], warmup: list, batches: list,
                args) -> Result:
    """Batches of events over HTTP; with several run ids, one client thread per run."""
    encoded = [Encoded(json.dumps(b).encode(), len(b)) for b in batches]
    warm = [json.dumps(b).encode() for b in warmup]
    clients = [api_client(base, key) for _ in run_ids]
    results: list[Result | BaseException | None] = [None] * len(run_ids)
    barrier = threading.Barrier(len(run_ids))

    def worker(i: int) -> None:
        try:
            send = post_step(clients[i], run_ids[i])
            for body in warm:
                send(body)
            barrier.wait()
            results[i] = measure("", lambda b: send(b.body), encoded,
                                 min_seconds=args.min_seconds, max_events=PER_RUN_CAP)
        except BaseException as exc:
            barrier.abort()
            results[i] = exc

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(run_ids))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    n = len(run_ids)
    label = "API POST batches, 1 client" if n == 1 else f"API POST batches, {n} clients"
    total = Result(label, note=f"{n} runs" if n > 1 else "")
    for r in results:
        assert isinstance(r, Result), r
        total.events += r.events
        total.seconds = max(total.seconds, r.seconds)
        total.batch_ms += r.batch_ms
    return total


def api_single(base: str, key: str, run_id: str, n: int, seed: int) -> list[float]:
    factory = EventFactory(seed + 1)
    bodies = [json.dumps(factory.event()).encode() for _ in range(n + SINGLE_WARMUP)]
    latencies = []
    # The standard library's client: the lightest one, so the figure is the server's round trip
    # rather than the client library's own overhead (httpx adds about a millisecond here).
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    path = f"/api/v1/runs/{run_id}/events"
    try:
        for i, body in enumerate(bodies):
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp_body = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"single POST failed: {resp.status} {resp_body[:300]!r}")
            if i >= SINGLE_WARMUP:
                latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return latencies


# --- the service phase: a subprocess with Django set up ---------------------------------------


def phase_service(args) -> None:
    setup_django()
    from runs import services
    from runs.envelope import prepare_events
    from runs.models import Project

    warmup, batches = make_batches(args.seed, args.events, args.batch)
    run_id = args.run_id

    def append(batch: list[dict]) -> None:
        result = services.event_append_batch(run_id=run_id, events=batch)
        if result.accepted != len(batch):
            raise RuntimeError(f"accepted {result.accepted} of {len(batch)}")

    for batch in warmup:
        append(batch)
    out: dict[str, Any] = {"results": []}
    res = measure("service event_append_batch", append, batches, min_seconds=args.min_seconds,
                  max_events=PER_RUN_CAP)
    out["results"].append(res.summary())
    prep = measure("prepare_events only (no DB)",
                   lambda b: prepare_events(b, default_source="agent"), batches,
                   min_seconds=0, max_events=args.events)
    out["results"].append(prep.summary())

    if args.profile:
        texts = []
        project = Project.objects.get(slug="default")
        run, _ = services.run_enqueue(project=project, kind="bench.profile")
        services.run_start(run_id=run.id)
        batch = batches[0]
        prof = cProfile.Profile()
        prof.runcall(services.event_append_batch, run_id=run.id, events=batch)
        texts.append(profile_text(prof, f"service event_append_batch, one {len(batch)}-event batch",
                                  own=12))

        from django.test import Client

        client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['BENCH_API_KEY']}")
        body = json.dumps(batch).encode()
        url = f"/api/v1/runs/{run.id}/events"
        for _ in range(2):  # warm: URL resolver, DRF settings, auth caches
            assert client.post(url, body, content_type="application/json").status_code == 201
        prof = cProfile.Profile()
        response = prof.runcall(client.post, url, body, content_type="application/json")
        assert response.status_code == 201, response.content[:500]
        texts.append(profile_text(
            prof, f"API view in-process (django.test.Client, no daphne), one {len(batch)}-event "
                  f"batch", own=12))
        out["profile"] = "\n\n".join(texts)
    Path(args.out).write_text(json.dumps(out))


# --- orchestration ---------------------------------------------------------------------------


@dataclass
class DbReport:
    kind: str
    title: str
    results: list[Result]
    single_ms: list[float]
    profile: str = ""
    extra: dict = field(default_factory=dict)


def bench_database(kind: str, args, tmp: Path, redis_url: str | None) -> DbReport:
    warmup, batches = make_batches(args.seed, args.events, args.batch)
    step = f"[{kind}]"
    with bench_db(kind, tmp, redis_url, pg_db=PG_BENCH_DB, sqlite_name=SQLITE_NAME,
                  scopes="runs:read,runs:write") as (db_url, env, key):
        with daphne_server(env, tmp / f"daphne-{kind}.log") as base:
            with api_client(base, key) as client:
                names = ["raw-1", "raw-2", "service", "api-1", "single"]
                names += [f"api-{args.clients}-{i}" for i in range(args.clients)]
                runs = {name: create_run(client, name) for name in names}
            results: list[Result] = []
            print(f"{step} raw SQL ...", file=sys.stderr, flush=True)
            if kind == "postgres":
                results += raw_postgres(db_url, (runs["raw-1"], runs["raw-2"]), warmup, batches,
                                        args)
            else:
                results += raw_sqlite(tmp / SQLITE_NAME, runs["raw-1"], warmup, batches, args)
            print(f"{step} service (subprocess) ...", file=sys.stderr, flush=True)
            service = run_phase(
                __file__, "service", tmp / f"service-{kind}.json",
                ["--_run-id", runs["service"], "--events", str(args.events),
                 "--batch", str(args.batch), "--min-seconds", str(args.min_seconds),
                 "--seed", str(args.seed)], env, profile=args.profile, timeout=900)
            results += [Result(**r) for r in service["results"]]
            print(f"{step} API, 1 client ...", file=sys.stderr, flush=True)
            results.append(api_batches(base, key, [runs["api-1"]], warmup, batches, args))
            if args.clients > 1:
                print(f"{step} API, {args.clients} clients ...", file=sys.stderr, flush=True)
                ids = [runs[f"api-{args.clients}-{i}"] for i in range(args.clients)]
                results.append(api_batches(base, key, ids, warmup, batches, args))
            print(f"{step} API, {args.single} single-event POSTs ...", file=sys.stderr,
                  flush=True)
            single = api_single(base, key, runs["single"], args.single, args.seed)
        return DbReport(kind, db_title(kind, PG_BENCH_DB), results, single,
                        service.get("profile", ""))


def print_header(args, redis_url: str | None) -> None:
    print_machine("event append", args.db, load_average=False,
                  versions=f", httpx {httpx.__version__}")
    layer = f"Redis ({redis_url})" if redis_url else "in-memory"
    print(f"  server      daphne, DEBUG=0, channel layer {layer}, redaction policy standard")
    print(f"  workload    {args.events} events per phase (cycled to >= {args.min_seconds:g} s), "
          f"batches of {args.batch}, {WARMUP_BATCHES} warm-up batches; mix log 46%, "
          f"tool_call/result 13%+13%, llm_request/response 7%+7% (~1 KB), progress 14%")
    print(flush=True)


def print_report(report: DbReport, args) -> list[tuple[str, bool]]:
    raws = [r for r in report.results if r.label.startswith("raw")]
    best_raw = max(raws, key=lambda r: r.rate)
    print(f"== {report.title} ==")
    head = (f"  {'path':<34}{'events':>8}{'seconds':>9}{'events/s':>11}{'vs raw':>8}"
            f"{'batch p50':>11}{'batch p95':>11}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in report.results:
        ratio = r.rate / best_raw.rate if best_raw.rate else math.nan
        print(f"  {r.label:<34}{r.events:>8}{r.seconds:>9.2f}{r.rate:>11,.0f}{ratio:>7.2f}x"
              f"{percentile(r.batch_ms, 50):>9.1f}ms{percentile(r.batch_ms, 95):>9.1f}ms"
              + (f"  ({r.note})" if r.note else ""))
    s = report.single_ms
    p50, p95, p99 = (percentile(s, q) for q in (50, 95, 99))
    print(f"  single-event POST round-trip, n={len(s)} sequential, keep-alive (http.client): "
          f"p50 {p50:.2f} ms  p95 {p95:.2f} ms  p99 {p99:.2f} ms  max {max(s):.2f} ms  "
          f"({len(s) / (sum(s) / 1000):,.0f} req/s)")
    print("  (vs raw = rate / fastest raw rate; raw includes building the rows: uuid4, "
          "json.dumps)")
    api = next(r for r in report.results if r.label == "API POST batches, 1 client")
    service = next(r for r in report.results if r.label == "service event_append_batch")
    api_ratio, service_ratio = api.rate / best_raw.rate, service.rate / best_raw.rate
    checks = [
        (f"API/raw = {api.rate:,.0f} / {best_raw.rate:,.0f} ({best_raw.label}) = "
         f"{api_ratio:.2f} >= {BUDGET_API_RATIO:.2f}", api_ratio >= BUDGET_API_RATIO),
        (f"single round-trip p50 {p50:.2f} ms < {BUDGET_SINGLE_P50_MS:g} ms",
         p50 < BUDGET_SINGLE_P50_MS),
    ]
    print(f"  service/raw = {service_ratio:.2f}   API/raw = {api_ratio:.2f}   "
          f"API/service = {api.rate / service.rate:.2f}")
    return print_checks(report.kind, checks)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--events", type=int, default=20_000, help="events per measured phase")
    p.add_argument("--batch", type=int, default=1000, help="events per batch (max 1000)")
    p.add_argument("--single", type=int, default=500, help="sequential single-event POSTs")
    p.add_argument("--clients", type=int, default=2, help="concurrent API clients (1: skip)")
    p.add_argument("--min-seconds", type=float, default=3.0,
                   help="cycle each batch phase until it has run this long")
    add_run_options(p, redis_help="channel layer on Redis", seed=7,
                    profile_help=("also print cProfile of one batch: service and in-process "
                                 "API view"))
    p.add_argument("--_run-id", dest="run_id", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        p.error("--batch must be between 1 and 1000 (the API's batch limit)")
    if args.events < args.batch or args.single < 1 or args.clients < 1:
        p.error("--events must be >= --batch; --single and --clients >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "service":
        phase_service(args)
        return 0

    def bench_one(kind: str, tmp: Path, redis_url: str | None) -> list[tuple[str, bool]]:
        report = bench_database(kind, args, tmp, redis_url)
        checks = print_report(report, args)
        if report.profile:
            print(report.profile, end="\n\n", flush=True)
        return checks

    return run_bench(args, tmp_prefix="tf-bench-events-", order=("sqlite", "postgres"),
                     header=print_header, bench_one=bench_one)


if __name__ == "__main__":
    sys.exit(main())
