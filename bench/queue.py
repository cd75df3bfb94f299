#!/usr/bin/env python
"""Queue throughput and enqueue→start latency on PostgreSQL (PRODUCT.md §14, "Queue").

In a fresh PostgreSQL database (``tracefoundry_bench_queue``, created with ``manage.py migrate``
and dropped at the end) this measures:

1. raw      a minimal psycopg loop on the same ``runs_run`` table, in 1, 2 and 4 processes:
            ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING id``,
            then one ``UPDATE … SET state = 'succeeded', output = input`` per run. No events,
            no projection, no redaction.
2. worker   ``manage.py worker --concurrency C --kinds system.noop`` in 1, 2 and 4 processes,
            idle on LISTEN when ``--runs`` queued ``system.noop`` runs are committed at once:
            claim (with the ``run.started`` events), the job (``system.noop`` echoes its input),
            and ``run_succeed_batch`` (the output kept on the run, ``run.succeeded`` event), with
            the live broadcasts. Timed from the commit to the last ``finished_at``.
3. latency  ``--latency`` runs enqueued one at a time through ``runs.services.run_enqueue``
            (``--gap-ms`` apart) while 4 workers wait on LISTEN/NOTIFY: ``run.started`` minus
            ``run.created``, p50/p95/max (and how long the ``run_enqueue`` calls took).
            ``--only latency`` runs this phase alone.

Every run has a distinct input (a task id, a ticket, a few hundred bytes of prose, as real jobs
have), so every output differs: nothing is spared by deduplication.

Checks: 4 workers >= 1,000 runs/s and >= 1/2 of the raw loop with 4 processes; latency p95 <=
10 ms; every run claimed exactly once (one ``run.started`` per run, attempt 1) and succeeded.
Exit status 0 / 1 (a budget failed) / 2. Run it with ``--redis on`` and ``--redis off``: the
channel layer's per-run broadcasts are part of the worker's cost.

    .venv/bin/python bench/queue.py [--runs 4000] [--concurrency 16] [--latency 200]
        [--only latency]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the standard library's ``queue`` (which psycopg and threading
# code import): its folder goes to the end of sys.path, so ``import queue`` finds the library's
# and ``import common`` still finds bench/common.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import json
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from common import (
    REPO,
    add_run_options,
    bench_db,
    db_title,
    percentile,
    print_checks,
    print_machine,
    run_bench,
    run_phase,
    setup_django,
)

PG_BENCH_DB = "tracefoundry_bench_queue"
BUDGET_RUNS_PER_S = 1000
BUDGET_LATENCY_P95_MS = 10.0  # issue #12 (PRODUCT.md §14 allows 50)
BUDGET_RAW_RATIO = 0.5
PROCESS_COUNTS = (1, 2, 4)
LATENCY_WORKERS = 4


# --- loading runs exactly as run_enqueue stores them (a Run row and its run.created event) ------

_WORDS = ("refund", "invoice", "customer", "timeout", "retry", "shipment", "address", "parser",
          "migration", "index", "summary", "ticket", "priority", "escalate", "draft", "reply")


def job_input(rng: random.Random, i: int) -> str:
    """A distinct job input as JSON: an id, a ticket and a few hundred bytes of text."""
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(30, 90)))
    return json.dumps({"task": i, "ticket": f"T-{rng.randrange(10**8):08d}",
                       "priority": rng.choice(("low", "normal", "high")), "text": words})


def load_runs(conn: psycopg.Connection, *, kind: str, name: str, n: int, notify: bool) -> datetime:
    """Insert ``n`` queued runs (distinct inputs) with their ``run.created`` events in one
    transaction (COPY); returns the commit time."""
    from ulid import ULID

    rng = random.Random(f"{name}-{n}")

    project_id = conn.execute("SELECT id FROM runs_project WHERE slug = 'default'").fetchone()[0]
    now = datetime.now(UTC)
    payload = json.dumps({"kind": kind, "name": name, "max_attempts": 1, "run_after": None})
    run_cols = ("id, project_id, kind, name, input, state, request_fingerprint, attempt, "
                "max_attempts, claimed_by, created_at, updated_at, output_ref, error, "
                "correlation_id, trace_id, steps_total, steps_completed, event_count, "
                "error_count, dropped_event_count, latest_event_at, imported_from")
    event_cols = ("event_id, run_id, seq, type, level, source, created_at, correlation_id, "
                  "causation_id, payload, payload_bytes, truncated, late")
    with conn.transaction(), conn.cursor() as cur:
        runs, events = [], []
        for i in range(n):
            at = now + timedelta(microseconds=i)
            run_id, corr = f"run_{ULID()}", uuid.uuid4().hex
            runs.append((run_id, project_id, kind, name, job_input(rng, i), "queued", "", 0, 1, "",
                         at, at, "",
                         "", corr, "", 0, 0, 1, 0, 0, at, ""))
            events.append((uuid.uuid4(), run_id, 1, "run.created", "info", "server", at, corr, "",
                           payload, len(payload), False, False))
        with cur.copy(f"COPY runs_run ({run_cols}) FROM STDIN") as copy:
            for row in runs:
                copy.write_row(row)
        with cur.copy(f"COPY runs_runevent ({event_cols}) FROM STDIN") as copy:
            for row in events:
                copy.write_row(row)
        if notify:
            cur.execute("SELECT pg_notify('tracefoundry_runs', %s)", [kind])
    return datetime.now(UTC)


# --- CPU accounting (Linux /proc; 0 elsewhere) -----------------------------------------------

def proc_cpu(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0


def backend_pids(conn: psycopg.Connection) -> list[int]:
    """The PostgreSQL server processes of the other sessions on this database."""
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()").fetchall()]


# --- the raw loop ---------------------------------------------------------------------------

RAW_CLAIM = (
    "UPDATE runs_run SET state = 'running', attempt = attempt + 1, claimed_by = %s, "
    "claimed_at = now() WHERE id IN (SELECT id FROM runs_run WHERE state = 'queued' "
    "AND kind = %s AND (run_after IS NULL OR run_after <= now()) ORDER BY created_at, id "
    "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
)
RAW_COMPLETE = ("UPDATE runs_run SET state = 'succeeded', finished_at = now(), output = input "
                "WHERE id = %s")


def phase_raw(args) -> None:
    """One raw claimer process: claim batches and complete each run, until the queue is empty."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        time.sleep(max(0.0, args.go - time.time()))
        cpu = time.process_time() + proc_cpu([backend])
        started, done = time.time(), 0
        while True:
            ids = [r[0] for r in conn.execute(RAW_CLAIM, [args.worker_id, "bench.raw",
                                                          args.concurrency]).fetchall()]
            if not ids:
                break
            for run_id in ids:
                conn.execute(RAW_COMPLETE, [run_id])
            done += len(ids)
        ended = time.time()
        cpu = time.process_time() + proc_cpu([backend]) - cpu
    Path(args.out).write_text(json.dumps({"started": started, "ended": ended, "done": done,
                                          "cpu": cpu}))


@dataclass
class Row:
    label: str
    procs: int
    runs: int
    seconds: float
    cpu: float = 0.0  # CPU seconds of the processes doing the work and of their DB sessions

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def bench_raw(db_url: str, env: dict, tmp: Path, args, procs: int) -> Row:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM runs_runevent WHERE run_id IN "
                     "(SELECT id FROM runs_run WHERE kind = 'bench.raw')")
        conn.execute("DELETE FROM runs_run WHERE kind = 'bench.raw'")
        load_runs(conn, kind="bench.raw", name=f"raw-{procs}", n=args.runs, notify=False)
        conn.execute("VACUUM ANALYZE runs_run")
    go = time.time() + 1.5
    children = []
    for i in range(procs):
        out = tmp / f"raw-{procs}-{i}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_phase", "raw", "--_out",
               str(out), "--_go", str(go), "--_worker-id", f"raw-{procs}-{i}",
               "--concurrency", str(args.concurrency)]
        children.append((subprocess.Popen(cmd, cwd=REPO, env=env), out))
    results = []
    for child, out in children:
        if child.wait(600) != 0:
            raise RuntimeError(f"raw phase exited with {child.returncode}")
        results.append(json.loads(out.read_text()))
    done = sum(r["done"] for r in results)
    if done != args.runs:
        raise RuntimeError(f"raw loop completed {done} of {args.runs} runs")
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return Row("raw psycopg SKIP LOCKED loop", procs, done, seconds,
               sum(r["cpu"] for r in results))


# --- manage.py worker -------------------------------------------------------------------------

def start_workers(env: dict, tmp: Path, db_url: str, n: int, args, tag: str) -> list:
    before = listeners(db_url)
    workers = []
    for i in range(n):
        log = (tmp / f"worker-{tag}-{i}.log").open("wb")
        cmd = [sys.executable, "manage.py", "worker", "--concurrency", str(args.concurrency),
               "--kinds", "system.noop", "--worker-id", f"bench-{tag}-{i}"]
        workers.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                        stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    # Every worker is idle and ready: on LISTEN, or waiting for its turn to listen (one idle
    # worker of a set of kinds listens at a time; runs/wakeup.py).
    while listeners(db_url) < before + n:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            stop_workers(workers)
            raise RuntimeError(f"workers did not start; see {tmp}/worker-{tag}-*.log")
        time.sleep(0.1)
    return workers


def listeners(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE '%tracefoundry_runs%'").fetchone()[0]


def stop_workers(workers: list) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(10)


def bench_workers(db_url: str, env: dict, tmp: Path, args, procs: int) -> tuple[Row, dict]:
    name = f"worker-{procs}"
    workers = start_workers(env, tmp, db_url, procs, args, tag=str(procs))
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            pids = [w.pid for w in workers] + backend_pids(conn)
            cpu = proc_cpu(pids)
            committed = load_runs(conn, kind="system.noop", name=name, n=args.runs, notify=True)
            deadline = time.monotonic() + 600
            while True:
                left = conn.execute("SELECT count(*) FROM runs_run WHERE name = %s AND state <> "
                                    "'succeeded'", [name]).fetchone()[0]
                if not left:
                    break
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"{left} runs not done; see {tmp}/worker-{procs}-*.log")
                time.sleep(0.05)
            cpu = proc_cpu(pids) - cpu
            last = conn.execute("SELECT max(finished_at) FROM runs_run WHERE name = %s",
                                [name]).fetchone()[0]
            check = audit(conn, name)
    finally:
        stop_workers(workers)
    return Row("manage.py worker, system.noop", procs, args.runs,
               (last - committed).total_seconds(), cpu), check


def audit(conn: psycopg.Connection, name: str) -> dict:
    """Exactly-once: per run one run.started and one run.succeeded, attempt 1."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE r.attempt = 1 AND r.event_count = 3), "
        "(SELECT count(*) FROM runs_runevent e JOIN runs_run r2 ON r2.id = e.run_id "
        " WHERE r2.name = %s AND e.type = 'run.started'), "
        "(SELECT count(*) FROM runs_runevent e JOIN runs_run r2 ON r2.id = e.run_id "
        " WHERE r2.name = %s AND e.type = 'run.succeeded') "
        "FROM runs_run r WHERE r.name = %s", [name, name, name]).fetchone()
    return {"runs": row[0], "clean": row[1], "started": row[2], "succeeded": row[3]}


# --- latency: run_enqueue one at a time, workers on LISTEN ------------------------------------

def phase_enqueue(args) -> None:
    setup_django()
    from runs import services
    from runs.models import Project

    project = Project.objects.get(slug="default")
    ids, call_ms = [], []
    for _ in range(args.latency):
        started = time.perf_counter()
        run, _ = services.run_enqueue(project=project, kind="system.noop", name="latency")
        call_ms.append((time.perf_counter() - started) * 1000)
        ids.append(run.id)
        time.sleep(args.gap_ms / 1000)
    Path(args.out).write_text(json.dumps({"ids": ids, "call_ms": call_ms}))


@dataclass
class Latency:
    start_ms: list[float]  # run.started minus run.created, per run
    call_ms: list[float]  # how long each run_enqueue call took (the enqueuer's side)


def bench_latency(db_url: str, env: dict, tmp: Path, args) -> Latency:
    workers = start_workers(env, tmp, db_url, LATENCY_WORKERS, args, tag="latency")
    try:
        phase = run_phase(__file__, "enqueue", tmp / "latency.json",
                          ["--latency", str(args.latency), "--gap-ms", str(args.gap_ms)], env,
                          profile=False, timeout=600)
        ids = phase["ids"]
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM runs_run WHERE name = 'latency' AND state "
                               "<> 'succeeded'").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("latency runs did not finish")
                time.sleep(0.05)
            rows = conn.execute(
                "SELECT extract(epoch FROM s.created_at - c.created_at) * 1000 "
                "FROM runs_runevent c JOIN runs_runevent s ON s.run_id = c.run_id "
                "AND s.type = 'run.started' WHERE c.type = 'run.created' AND c.run_id = ANY(%s)",
                [ids]).fetchall()
    finally:
        stop_workers(workers)
    return Latency([float(r[0]) for r in rows], phase["call_ms"])


# --- orchestration ----------------------------------------------------------------------------

def bench_postgres(tmp: Path, redis_url: str | None, args) -> list[tuple[str, bool]]:
    with bench_db("postgres", tmp, redis_url, pg_db=args.pg_db, sqlite_name="",
                  scopes="worker") as (db_url, env, _key):
        env = {**env, "TRACEFOUNDRY_WORKER_POLL_MS": "1000"}
        rows: list[Row] = []
        audits: list[tuple[int, dict]] = []
        for procs in PROCESS_COUNTS if args.only == "all" else ():
            print(f"[postgres] raw loop, {procs} process(es) ...", file=sys.stderr, flush=True)
            rows.append(bench_raw(db_url, env, tmp, args, procs))
        for procs in PROCESS_COUNTS if args.only == "all" else ():
            print(f"[postgres] workers, {procs} process(es) ...", file=sys.stderr, flush=True)
            row, check = bench_workers(db_url, env, tmp, args, procs)
            rows.append(row)
            audits.append((procs, check))
        print("[postgres] latency ...", file=sys.stderr, flush=True)
        latency = bench_latency(db_url, env, tmp, args)
    return print_report(rows, audits, latency, args)


def print_report(rows: list[Row], audits: list, latency: Latency, args) -> list:
    print(f"== {db_title('postgres', args.pg_db)} ==")
    p95 = percentile(latency.start_ms, 95)
    latency_check = (f"enqueue->start p95 {p95:.1f} ms <= {BUDGET_LATENCY_P95_MS:g} ms",
                     p95 <= BUDGET_LATENCY_P95_MS)
    if not rows:  # --only latency
        print_latency(latency, args)
        return print_checks("postgres", [latency_check])
    raw = {r.procs: r for r in rows if r.label.startswith("raw")}
    head = (f"  {'path':<34}{'procs':>6}{'runs':>7}{'seconds':>9}{'runs/s':>9}{'vs raw':>8}"
            f"{'cpu ms/run':>12}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in rows:
        ratio = r.rate / raw[r.procs].rate if raw[r.procs].rate else float("nan")
        print(f"  {r.label:<34}{r.procs:>6}{r.runs:>7}{r.seconds:>9.2f}{r.rate:>9,.0f}"
              f"{ratio:>7.2f}x{1000 * r.cpu / r.runs:>12.2f}")
    print_latency(latency, args)
    print(f"  (worker --concurrency {args.concurrency}; the raw loop claims batches of the same "
          "size; vs raw = rate / raw rate with as many processes; cpu ms/run = CPU time of the "
          "claiming processes and of their PostgreSQL sessions per run, on "
          f"{os.cpu_count()} CPUs)")
    four = next(r for r in rows if r.label.startswith("manage.py") and r.procs == 4)
    ratio = four.rate / raw[4].rate if raw[4].rate else 0.0
    checks = [
        (f"4 workers: {four.rate:,.0f} runs/s >= {BUDGET_RUNS_PER_S:,}",
         four.rate >= BUDGET_RUNS_PER_S),
        (f"4 workers / raw loop (4 processes): {ratio:.2f} >= {BUDGET_RAW_RATIO}",
         ratio >= BUDGET_RAW_RATIO),
        latency_check,
    ]
    for procs, a in audits:
        ok = a["runs"] == a["clean"] == a["started"] == a["succeeded"] == args.runs
        checks.append((f"{procs} worker(s): {a['runs']} runs, {a['started']} run.started, "
                       f"{a['succeeded']} run.succeeded, all attempt 1 (exactly once)", ok))
    return print_checks("postgres", checks)


def print_latency(latency: Latency, args) -> None:
    ms = latency.start_ms
    print(f"  enqueue->start latency, {len(ms)} run_enqueue calls {args.gap_ms} ms apart, "
          f"{LATENCY_WORKERS} idle workers on LISTEN/NOTIFY: p50 {percentile(ms, 50):.1f} ms  "
          f"p95 {percentile(ms, 95):.1f} ms  max {max(ms):.1f} ms")
    calls = latency.call_ms
    print(f"  (the run_enqueue calls themselves: p50 {percentile(calls, 50):.1f} ms  "
          f"p95 {percentile(calls, 95):.1f} ms)")


def print_header(args, redis_url: str | None) -> None:
    print_machine("queue", "postgres", load_average=True)
    layer = f"Redis ({redis_url})" if redis_url else "in-memory"
    print(f"  workers     manage.py worker (DEBUG=0, LOG_LEVEL=WARNING), --concurrency "
          f"{args.concurrency}, channel layer {layer}")
    throughput = ("" if args.only == "latency" else f"{args.runs} system.noop runs per phase "
                  "(distinct inputs, echoed as outputs), ")
    print(f"  workload    {throughput}{args.latency} latency runs")
    print(flush=True)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--runs", type=int, default=4000, help="runs per throughput phase")
    p.add_argument("--concurrency", type=int, default=16, help="worker --concurrency (and the "
                   "raw loop's batch size)")
    p.add_argument("--latency", type=int, default=200, help="runs of the latency phase")
    p.add_argument("--gap-ms", type=int, default=20, help="pause between latency enqueues")
    p.add_argument("--pg-db", default=PG_BENCH_DB, help="name of the throwaway database")
    p.add_argument("--only", choices=("all", "latency"), default="all",
                   help="latency: only the enqueue->start phase")
    add_run_options(p, redis_help="channel layer on Redis", seed=0, profile_help="(unused)")
    p.add_argument("--_go", dest="go", type=float, help=argparse.SUPPRESS)
    p.add_argument("--_worker-id", dest="worker_id", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.db = "postgres"
    if args.runs < 1 or args.latency < 1 or args.concurrency < 1:
        p.error("--runs, --latency and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "raw":
        phase_raw(args)
        return 0
    if args.phase == "enqueue":
        phase_enqueue(args)
        return 0

    def bench_one(kind: str, tmp: Path, redis_url: str | None) -> list[tuple[str, bool]]:
        return bench_postgres(tmp, redis_url, args)

    return run_bench(args, tmp_prefix="tf-bench-queue-", order=("postgres", "postgres"),
                     header=print_header, bench_one=bench_one)


if __name__ == "__main__":
    sys.exit(main())

