"""What the list-latency benchmarks share (``trace_list.py``, ``run_list.py``; not a benchmark).

Both fill a fresh database directly, with their own data generators and loaders and the helpers
here (weighted draws, COPY's text format and batches, one loading transaction, SQLite
``executemany`` batches, a check of the required columns); then they time ``GET`` requests of a
list endpoint against a real daphne server on one keep-alive ``http.client`` connection: a floor
of reference round trips, every case's first page, and cursor walks over the next pages. A
subprocess of the script with Django set up then times each case's page query alone and takes its
plan (``phase_explain``). ``print_report`` prints the table, the plans of the cases over budget and
the PASS/FAIL lines of each group of cases.

What differs between the scripts (the endpoint, the budgets, how the next page is read from a
response body, which cases are walked, the header's workload line, ...) is a ``ListBench``, made
once by each script; ``main`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import http.client
import json
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from common import (  # bench/ is not a package: this folder is on sys.path
    REDIS_URL,
    bench_db,
    daphne_server,
    db_title,
    percentile,
    print_machine,
    profile_text,
    run_bench,
    run_phase,
    setup_django,
)

PAGE_SIZE = 50
WARMUP_REQUESTS = 5


# --- data generation and loading -----------------------------------------------------------------


def weighted(rng: random.Random, table: tuple) -> Any:
    """A row of ``table`` drawn by the weight in its second column."""
    return rng.choices(table, weights=[row[1] for row in table])[0]


COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_NULL = "\\N"


def copy_text(value: Any) -> str:
    """One field in COPY's text format."""
    if value is None:
        return COPY_NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, str):
        return value.translate(COPY_ESCAPES) if ("\\" in value or "\n" in value) else value
    return str(value)


@contextlib.contextmanager
def load_transaction(conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
    """One transaction (and its cursor) for loading tables in any order: Django's foreign keys
    are DEFERRABLE INITIALLY DEFERRED; as a superuser the loader also skips the million deferred
    checks (the rows are consistent by construction)."""
    superuser = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    with conn.transaction(), conn.cursor() as cur:
        if superuser:
            cur.execute("SET LOCAL session_replication_role = replica")
        yield cur


def copy_lines(cur: psycopg.Cursor, table: str, columns: tuple[str, ...],
               lines: Iterable[str]) -> None:
    """``COPY table (columns) FROM STDIN`` of ``lines`` (COPY text rows, without their newline),
    written 5,000 at a time."""
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 5000:
                cp.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            cp.write("\n".join(batch) + "\n")


@contextlib.contextmanager
def sqlite_load(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite file in one transaction, committed and analysed at the end."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a throwaway file: durability is not measured
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA synchronous=NORMAL")
    finally:
        conn.close()


def insert_rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...],
                rows: Iterable[tuple]) -> None:
    """``INSERT INTO table (columns)`` of ``rows``, 20,000 to an ``executemany``."""
    statement = (f"INSERT INTO {table} ({', '.join(columns)}) "
                 f"VALUES ({', '.join('?' * len(columns))})")
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= 20_000:
            conn.executemany(statement, chunk)
            chunk.clear()
    conn.executemany(statement, chunk)


def check_columns(conn: psycopg.Connection, known: dict[str, set[str]], script: str) -> None:
    """Fail clearly if a migration added a required column the loader of ``script`` does not
    write (``known``: {table: the columns it writes})."""
    for table, columns in known.items():
        missing = [name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            (table,)).fetchall() if name not in columns]
        if missing:
            raise RuntimeError(f"{table} has required columns the loader does not fill: "
                               f"{', '.join(missing)}; update bench/{script}")


def projects(kind: str, db_url: str, sqlite_path: Path) -> tuple[int, int]:
    """(the default project, a second one created here)."""
    now = datetime.now(UTC)
    insert = ("INSERT INTO runs_project (slug, name, redaction_policy, created_at) "
              "VALUES ('bench-other', 'Another project', '', {ph})")
    query = "SELECT id FROM runs_project WHERE slug = {ph}"
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(sqlite_path)) as conn, conn:
            conn.execute(insert.format(ph="?"), (now.replace(tzinfo=None).isoformat(" "),))
            return tuple(conn.execute(query.format(ph="?"), (slug,)).fetchone()[0]
                         for slug in ("default", "bench-other"))
    with psycopg.connect(db_url) as conn:
        conn.execute(insert.format(ph="%s"), (now,))
        return tuple(conn.execute(query.format(ph="%s"), (slug,)).fetchone()[0]
                     for slug in ("default", "bench-other"))


def table_sizes(kind: str, db_url: str, sqlite_path: Path, tables: tuple[str, ...]) -> str:
    """The database file's size (SQLite), or each of ``tables`` with its size and rows."""
    if kind == "sqlite":
        size = sqlite_path.stat().st_size
        return f"database file {size / 2**20:,.0f} MB"
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(oid), reltuples::bigint FROM pg_class "
            "WHERE relname = ANY(%s)", (list(tables),)).fetchall()
    rows.sort(key=lambda row: tables.index(row[0]))
    return ", ".join(f"{name} {size / 2**20:,.0f} MB (~{n:,} rows)" for name, size, n in rows)


# --- the requests --------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    base: str  # the path without its query
    params: dict[str, str]
    group: str | None  # which budget and PASS/FAIL line; None: a reference without a budget
    suggestion: str = ""  # an index that would serve it, printed when it is over budget

    @property
    def limit(self) -> int:
        return PAGE_SIZE

    @property
    def path(self) -> str:
        return f"{self.base}?{urlencode({**self.params, 'limit': str(self.limit)})}"


@dataclass
class Timing:
    case: Case
    budget: float = math.inf  # p95, ms
    ms: list[float] = field(default_factory=list)
    rows: int = 0
    more: bool = False
    kind: str = "query"  # or "cursor", "floor"

    @property
    def p95(self) -> float:
        return percentile(self.ms, 95)

    @property
    def ok(self) -> bool:
        return self.p95 <= self.budget


def next_link(data: dict[str, Any]) -> tuple[int, str | None]:
    """A DRF page's row count and the path of its ``next`` link (None: the last page)."""
    nxt = data.get("next")
    if not nxt:
        return len(data["results"]), None
    parts = urlsplit(nxt)
    return len(data["results"]), f"{parts.path}?{parts.query}"


def _large_sql(statement: str) -> str:
    return "an index would help"


@dataclass(frozen=True)
class ListBench:
    """What one list-latency script measures its own way."""

    script: str  # the script's __file__: its explain phase runs in a subprocess of it
    title: str  # of the header, e.g. "trace list"
    pg_db: str  # the PostgreSQL database it creates (and drops again)
    sqlite_name: str  # its SQLite file in the temp dir
    tmp_prefix: str  # of the temp dir
    list_path: str  # the list endpoint, for the limit=1 reference
    budgets: dict[str, float]  # p95 budget (ms) of each group of cases
    groups: tuple[tuple[str, str], ...]  # (group, name) of each PASS/FAIL line, in this order
    # A page's row count and the path of the next page (None: the last page).
    next_page: Callable[[Case, bytes], tuple[int, str | None]]
    # The label of a case's cursor walk (": pages 2..N" is appended); None: no walk.
    walk_label: Callable[[Case], str | None]
    table: Callable[[Case], str]  # the table of the case's page query
    tables_note: str  # the page query's tables, as the report's footnote names them
    workload: Callable[[Any], str]  # the header's workload line, from the arguments
    page_query: str = 'FROM "{table}"'  # what marks a captured statement as the page query
    width: int = 46  # of the report's query column
    # Why a page query over budget spends its time in the SQL (after "the SQL is a large part: ").
    large_sql: Callable[[str], str] = _large_sql

    def budget(self, case: Case) -> float:
        return math.inf if case.group is None else self.budgets[case.group]


class Api:
    """One keep-alive connection of the standard library's client (the lightest client, so the
    figures are the server's round trip)."""

    def __init__(self, base: str, key: str) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"GET {path} -> {resp.status}: {body[:500]!r}")
        return elapsed, body

    def close(self) -> None:
        self.conn.close()


def run_floor(api: Api, requests: int, bench: ListBench) -> list[Timing]:
    """Reference round trips: no auth and no DB; and a one-row page (auth, one tiny query)."""
    out = []
    for case, path in (
            (Case("GET /healthz (reference)", "/healthz", {}, None), "/healthz"),
            (Case("limit=1 (reference)", bench.list_path, {}, None), f"{bench.list_path}?limit=1")):
        timing = Timing(case, kind="floor")
        for i in range(WARMUP_REQUESTS + requests):
            ms = api.get(path)[0]
            if i >= WARMUP_REQUESTS:
                timing.ms.append(ms)
        out.append(timing)
    return out


def run_queries(api: Api, cases: list[Case], requests: int, bench: ListBench) -> list[Timing]:
    out = []
    for case in cases:
        path = case.path
        timing = Timing(case, bench.budget(case))
        for _ in range(WARMUP_REQUESTS):
            _, body = api.get(path)
        timing.rows, nxt = bench.next_page(case, body)
        timing.more = nxt is not None
        for _ in range(requests):
            timing.ms.append(api.get(path)[0])
        out.append(timing)
    return out


def run_cursors(api: Api, cases: list[Case], pages: int, walks: int,
                bench: ListBench) -> list[Timing]:
    """Follow the next page from the first page for ``pages`` pages, ``walks`` times per case
    that ``bench.walk_label`` names."""
    out = []
    for case in cases:
        label = bench.walk_label(case)
        if label is None:
            continue
        walk_case = dataclasses.replace(case, label=f"{label}: pages 2..{pages + 1}")
        timing = Timing(walk_case, bench.budget(walk_case), kind="cursor")
        for walk in range(walks + 1):  # the first walk warms up
            _, body = api.get(case.path)
            seen: set[bytes] = set()
            for _ in range(pages):
                n, nxt = bench.next_page(case, body)
                if nxt is None:
                    break
                ms, body = api.get(nxt)
                if body in seen:
                    raise RuntimeError(f"{case.label}: the cursor walk repeats a page ({nxt})")
                seen.add(body)
                if walk:
                    timing.ms.append(ms)
                    timing.rows += n
        out.append(timing)
    return out


@dataclass
class DbReport:
    kind: str
    title: str
    load: str
    timings: list[Timing]
    analysis: dict[str, Any]  # {"cases": {label: {sql, plan, db_ms, queries}}, "profile": ...}


# (kind, args, the database's URL, the SQLite file) -> (what was loaded, the cases)
Load = Callable[[str, Any, str, Path], tuple[str, list[Case]]]


def bench_database(kind: str, args, tmp: Path, redis_url: str | None, bench: ListBench,
                   load: Load) -> DbReport:
    """A fresh database of ``kind`` filled by ``load``; its cases timed against a daphne server
    and, unless ``--explain none``, their page queries in-process."""
    with bench_db(kind, tmp, redis_url, pg_db=bench.pg_db, sqlite_name=bench.sqlite_name,
                  scopes="runs:read") as (db_url, env, key):
        loaded, cases = load(kind, args, db_url, tmp / bench.sqlite_name)
        timings, analysis = measure(kind, args, tmp, env, key, cases, bench)
    title = db_title(kind, bench.pg_db, sqlite_note="temp file, WAL")
    return DbReport(kind, title, loaded, timings, analysis)


def measure(kind: str, args, tmp: Path, env: dict[str, str], key: str, cases: list[Case],
            bench: ListBench) -> tuple[list[Timing], dict[str, Any]]:
    step = f"[{kind}]"
    with daphne_server(env, tmp / f"daphne-{kind}.log") as base:
        api = Api(base, key)
        try:
            print(f"{step} {len(cases)} queries x {args.requests} requests ...",
                  file=sys.stderr, flush=True)
            timings = run_floor(api, args.requests, bench)
            timings += run_queries(api, cases, args.requests, bench)
            print(f"{step} cursor walks ...", file=sys.stderr, flush=True)
            timings += run_cursors(api, cases, args.pages, args.walks, bench)
        finally:
            api.close()
    analysis: dict[str, Any] = {"cases": {}}
    if args.explain != "none":
        print(f"{step} SQL time and plans (subprocess) ...", file=sys.stderr, flush=True)
        queries = {t.case.label: (t.case.path, bench.table(t.case)) for t in timings
                   if t.kind == "query"}
        # the profile: the first case of each page table
        profile: dict[str, str] = {}
        for path, table in queries.values():
            profile.setdefault(table, path)
        spec = tmp / f"explain-{kind}.json"
        spec.write_text(json.dumps({"cases": queries, "profile": list(profile.values()),
                                    "page_query": bench.page_query}))
        analysis = run_phase(bench.script, "explain", tmp / f"plans-{kind}.json",
                             ["--_queries", str(spec)], env, profile=args.profile, timeout=600)
    return timings, analysis


# --- where the time goes: a subprocess with Django set up ---------------------------------------


def phase_explain(args) -> None:
    """For each query: the SQL of its page query, that SQL's own time (executed and fetched 5
    times in-process, median) and its plan; optionally a cProfile of a request of each page
    table."""
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['BENCH_API_KEY']}")
    out: dict[str, Any] = {"cases": {}}
    spec = json.loads(Path(args.queries).read_text())
    for label, (path, table) in spec["cases"].items():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        if response.status_code != 200:
            out["cases"][label] = {"error": f"GET {path} -> {response.status_code}"}
            continue
        marker = spec["page_query"].format(table=table)
        statements = [q["sql"] for q in captured.captured_queries
                      if marker in q["sql"] and "LIMIT" in q["sql"]]
        if not statements:
            out["cases"][label] = {"error": f"no {table} query captured"}
            continue
        statement = statements[-1]
        with connection.cursor() as cursor:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                cursor.execute(statement)
                cursor.fetchall()
                times.append((time.perf_counter() - t0) * 1000)
            if connection.vendor == "postgresql":
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
            else:
                cursor.execute(f"EXPLAIN QUERY PLAN {statement}")
                plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
        out["cases"][label] = {"sql": statement, "plan": plan, "db_ms": sorted(times)[2],
                               "queries": len(captured.captured_queries)}
    if args.profile:
        profiles = []
        for path in spec["profile"]:
            for _ in range(3):
                client.get(path)  # warm
            prof = cProfile.Profile()
            response = prof.runcall(client.get, path)
            assert response.status_code == 200, response.content[:300]
            profiles.append(profile_text(prof, f"GET {path} in-process (django.test.Client, no "
                                               f"daphne, {connection.vendor})"))
        out["profile"] = "\n\n".join(profiles)
    Path(args.out).write_text(json.dumps(out))


# --- the report ----------------------------------------------------------------------------------


def print_header(bench: ListBench, args, redis_url: str | None) -> None:
    print_machine(bench.title, args.db, load_average=True)
    layer = f"Redis ({redis_url})" if redis_url else "in-memory"
    print(f"  server      daphne, DEBUG=0, cache {layer}; client http.client, one keep-alive "
          f"connection, key with runs:read")
    print(f"  workload    {bench.workload(args)}")
    print(flush=True)


def print_report(report: DbReport, args, bench: ListBench) -> list[tuple[str, bool]]:
    print(f"== {report.title} ==")
    print(f"  data: {report.load}")
    cases = report.analysis.get("cases", {})
    width = bench.width
    head = (f"  {'query':<{width}}{'rows':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
            f"{'SQL ms':>8}{'budget':>8}  result")
    print(head)
    print("  " + "-" * (len(head) - 2))
    # A cursor walk on a small data set can end before its first timed page: nothing to judge.
    empty = [t for t in report.timings if not t.ms]
    report.timings = [t for t in report.timings if t.ms]
    for t in empty:
        print(f"  {t.case.label:<{width}} (no pages to time: the data ends first)")
    for t in report.timings:
        rows = f"{t.rows}{'+' if t.more else ''}" if t.kind == "query" else (
            f"{t.rows}" if t.kind == "cursor" else "")
        db_ms = cases.get(t.case.label, {}).get("db_ms")
        db = f"{db_ms:>8.1f}" if db_ms is not None else f"{'':>8}"
        budget, result = ((f"{'-':>8}", "info") if t.case.group is None
                          else (f"{t.budget:>8.0f}", "PASS" if t.ok else "FAIL"))
        print(f"  {t.case.label:<{width}}{rows:>5}{percentile(t.ms, 50):>9.1f}{t.p95:>9.1f}"
              f"{max(t.ms):>9.1f}{db}{budget}  {result}")
    print("  (rows: results on the first page, + when there is a next page; cursor rows: results "
          f"over all walks. SQL ms: the page's {bench.tables_note} query alone, executed and "
          "fetched in-process, median of 5)")
    floor = next((percentile(t.ms, 50) for t in report.timings
                  if t.case.label == "limit=1 (reference)"), math.nan)
    for t in report.timings:
        info = cases.get(t.case.label)
        if info is None or (t.ok and args.explain != "all"):
            continue
        print(f"\n  -- {'OVER BUDGET' if not t.ok else 'plan'}: {t.case.label} "
              f"(p95 {t.p95:.1f} ms) --")
        if "error" in info:
            print(f"  {info['error']}")
            continue
        if not t.ok:
            # A request without a real query costs about the limit=1 reference; what the SQL
            # adds on top of that is what an index can remove.
            where = (f"the SQL is a large part: {bench.large_sql(info['sql'])}"
                     if info["db_ms"] >= 0.25 * t.p95 else
                     "the SQL is a small part: the time goes outside the database (Python: auth, "
                     "filters, DRF serializer, JSON; or the machine's load)")
            p50 = percentile(t.ms, 50)
            print(f"  SQL {info['db_ms']:.1f} ms of p95 {t.p95:.1f} ms (p50 {p50:.1f} ms; the "
                  f"limit=1 reference p50 is {floor:.1f} ms); {where}")
            if t.case.suggestion:
                print(f"  suggestion: {t.case.suggestion}")
        print(f"  {info['queries']} queries per request; the page query:")
        print("  " + (info["sql"] + "\n" + info["plan"]).replace("\n", "\n  "))
    if report.analysis.get("profile"):
        print()
        print("  " + report.analysis["profile"].replace("\n", "\n  "))
    print(flush=True)
    checks = []
    for group_name, name in bench.groups:
        group = [t for t in report.timings if t.case.group == group_name]
        if not group:
            continue
        worst = max(group, key=lambda t: t.p95)
        failed = [t.case.label for t in group if not t.ok]
        text = (f"{report.kind}: {name}, {len(group)} queries: worst p95 {worst.p95:.1f} ms "
                f"({worst.case.label}) <= {worst.budget:.0f} ms")
        if failed:
            text += f"; over budget: {', '.join(failed)}"
        checks.append((text, not failed))
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(flush=True)
    return checks


# --- the command line and main -------------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    """The parser with ``--db``; the script adds its data sizes, then ``add_options``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0])
    p.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    return p


def add_options(p: argparse.ArgumentParser, *, walks_help: str, profile_help: str,
                seed: int) -> None:
    """The options after the data sizes, in this order in ``--help``."""
    p.add_argument("--requests", type=int, default=50, help="timed requests per query")
    p.add_argument("--pages", type=int, default=10, help="next pages per cursor walk")
    p.add_argument("--walks", type=int, default=5, help=walks_help)
    p.add_argument("--explain", choices=("failed", "all", "none"), default="failed",
                   help="print query plans of the cases over budget (or all; none: also skip "
                        "the SQL ms column)")
    p.add_argument("--profile", action="store_true", help=profile_help)
    p.add_argument("--redis", choices=("auto", "on", "off"), default="auto",
                   help=f"cache on Redis ({REDIS_URL}; auto: if reachable)")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daphne logs)")
    p.add_argument("--_phase", dest="phase", help=argparse.SUPPRESS)
    p.add_argument("--_queries", dest="queries", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)


def main(args, bench: ListBench, load: Load) -> int:
    """The explain phase (in the subprocess), or each database of ``--db`` and the summary."""
    if args.phase == "explain":
        phase_explain(args)
        return 0
    return run_bench(
        args, tmp_prefix=bench.tmp_prefix, order=("postgres", "sqlite"),
        header=lambda args, redis_url: print_header(bench, args, redis_url),
        bench_one=lambda kind, tmp, redis_url: print_report(
            bench_database(kind, args, tmp, redis_url, bench, load), args, bench))
