#!/usr/bin/env python
"""Trace list latency with a million spans (PRODUCT.md §14, "Trace list").

Loads a fresh database (PostgreSQL ``tracefoundry_bench_trace_list`` by default, or a temp SQLite
file) with ``--spans`` spans (default 1,000,000) in traces of about 20 spans,
written directly as ``traces_trace`` summary rows and ``traces_span`` rows (psycopg COPY; sqlite3
``executemany``), never through HTTP. Then, against a real daphne server (DEBUG=0) on one
keep-alive connection with a ``runs:read`` key, it measures p50/p95 of ``GET /api/v1/traces``:

- unfiltered, with every sort (newest, oldest, slowest, most_expensive, most_tokens);
- with each filter (project, service, environment, status, model, tool, min/max_latency_ms,
  min_tokens, min_cost, since/before, q), on common and on rare values;
- following the ``next`` cursor for several pages.

Budget: p95 <= 50 ms unfiltered, <= 200 ms filtered. For every case over budget the script prints
the SQL's plan (PostgreSQL: EXPLAIN (ANALYZE, BUFFERS); SQLite: EXPLAIN QUERY PLAN) and an index
that would serve it. Exit status: 0 all budgets pass, 1 a budget failed, 2 the bench failed.

    .venv/bin/python bench/trace_list.py [--db postgres|sqlite|both] [--spans N] [--requests 50]
        [--pages 10] [--walks 5] [--explain failed|all|none] [--profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` (psycopg, concurrent.futures) would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import contextlib
import cProfile
import http.client
import json
import math
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
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
from psycopg import sql

PG_BENCH_DB = "tracefoundry_bench_trace_list"
SQLITE_NAME = "bench-trace-list.sqlite3"
DEFAULT_SPANS = {"postgres": 1_000_000, "sqlite": 1_000_000}
SPANS_PER_TRACE = 20  # on average: 4..36 a trace
OTHER_PROJECT_SHARE = 0.10  # traces of a second project, which the key must not see
DAYS = 7
PAGE_SIZE = 50
WARMUP_REQUESTS = 5
BUDGET_UNFILTERED_P95_MS = 50.0
BUDGET_FILTERED_P95_MS = 200.0
LIST_PATH = "/api/v1/traces"

SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name",
    "start_time_unix_nano", "end_time_unix_nano", "duration_ms", "status_code", "status_message",
    "attributes", "events", "links", "resource", "scope", "span_type", "model", "input_tokens",
    "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout", "run_id", "received_at",
)
TRACE_COLUMNS = (
    "id", "trace_id", "project_id", "root_span_name", "service_name", "environment", "status",
    "start_time", "end_time", "duration_ms", "span_count", "error_count", "input_tokens",
    "output_tokens", "cost_usd", "tools", "has_retry", "has_timeout", "run_id", "source",
    "created_at", "updated_at", "models",
)

# --- what the traces look like ----------------------------------------------------------------

# (service, weight, agent name)
SERVICES = (
    ("support-agent", 40, "support_triage"), ("coding-agent", 25, "code_fixer"),
    ("research-agent", 15, "web_researcher"), ("billing-copilot", 10, "billing_assistant"),
    ("eval-runner", 6, "eval_judge"), ("docs-indexer", 4, "docs_indexer"),
)
ENVIRONMENTS = (("production", 70), ("staging", 20), ("dev", 10))
# (model, weight, USD per 1M input tokens, per 1M output tokens)
MODELS = (
    ("claude-sonnet-4-5", 35, Decimal(3), Decimal(15)),
    ("gpt-4.1-mini", 30, Decimal("0.4"), Decimal("1.6")),
    ("gpt-4o", 15, Decimal("2.5"), Decimal(10)),
    ("claude-3-5-haiku-latest", 12, Decimal("0.8"), Decimal(4)),
    ("gemini-2.5-flash", 6, Decimal("0.3"), Decimal("2.5")),
    ("llama-3.1-70b-instruct", 2, Decimal("0.9"), Decimal("0.9")),
)
TOOLS = ("read_file", "grep", "run_tests", "apply_patch", "web_search", "http_get", "sql_query",
         "lookup_order", "send_email_draft", "shell", "list_dir", "vector_search")
ROOT_NAMES = ("invoke_agent {agent}", "invoke_agent {agent}", "invoke_agent {agent}",
              "POST /v1/agents/{agent}/runs", "workflow {agent}.nightly", "chat session {agent}")
_PROSE = ("the agent reads the failing test and checks the fixture before it patches the model "
          "because the migration adds a nullable column customer order invoice refund shipping "
          "address ticket priority escalation policy knowledge base article")
_WORDS = tuple(_PROSE.split())


def _weighted(rng: random.Random, table: tuple) -> Any:
    return rng.choices(table, weights=[row[1] for row in table])[0]


@dataclass(slots=True)
class TraceRow:
    pk: int
    trace_id: str
    project_id: int
    service: int
    environment: str
    root_name: str
    status: str
    start: datetime
    duration_ms: float
    n_spans: int
    error_spans: frozenset[int]
    models: list[str]
    tools: list[str]
    retry: bool
    timeout: bool
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)


class DataGen:
    """Deterministic traces and spans: trace summaries first (kept in memory), spans streamed."""

    def __init__(self, seed: int, n_spans: int, now: datetime, projects: tuple[int, int]) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.projects = projects
        self.n_spans = n_spans
        self.attr_pool = {kind: [self._attributes(kind, i) for i in range(200)]
                          for kind in ("agent", "chain", "llm", "tool")}
        self.resources = [json.dumps({
            "service.name": name, "service.version": f"1.{i}.0", "service.namespace": "agents",
            "deployment.environment.name": "production", "host.name": f"{name}-7d9f8c6b5-x2k4q",
            "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
            "telemetry.sdk.version": "1.38.0"}) for i, (name, _w, _a) in enumerate(SERVICES)]
        self.traces = self._traces()

    def _text(self, lo: int, hi: int) -> str:
        out, size = [], 0
        target = self.rng.randint(lo, hi)
        while size < target:
            word = self.rng.choice(_WORDS)
            out.append(word)
            size += len(word) + 1
        return " ".join(out)

    def _attributes(self, kind: str, i: int) -> str:
        """A span's attributes JSON (300-900 bytes; the 4 KB prompts of real spans are left out:
        the list never reads spans, and loading stays fast)."""
        rng = self.rng
        attrs: dict[str, Any] = {"session.id": f"sess_{rng.getrandbits(64):016x}",
                                 "app.tenant_id": f"tenant_{rng.randint(1, 400):04d}"}
        if kind == "llm":
            model = _weighted(rng, MODELS)[0]
            attrs.update({
                "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                "gen_ai.response.model": model, "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 4096, "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": rng.randint(400, 9000),
                "gen_ai.usage.output_tokens": rng.randint(40, 900), "server.port": 443,
                "gen_ai.completion": self._text(150, 450)})
        elif kind == "tool":
            attrs.update({
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": rng.choice(TOOLS),
                "gen_ai.tool.call.id": f"toolu_{rng.getrandbits(64):016x}",
                "gen_ai.tool.call.arguments": json.dumps({"query": self._text(20, 60)}),
                "gen_ai.tool.call.result": self._text(100, 400), "process.exit_code": 0})
        elif kind == "agent":
            attrs.update({
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "agent",
                "http.request.method": "POST", "http.response.status_code": 200,
                "input.value": self._text(80, 200), "output.value": self._text(100, 300)})
        else:
            attrs.update({"openinference.span.kind": "CHAIN", "app.step.index": i % 8,
                          "input.value": self._text(60, 200)})
        return json.dumps(attrs)

    def _span_counts(self) -> list[int]:
        rng = self.rng
        counts = [rng.randint(4, 36) for _ in range(max(1, round(self.n_spans / SPANS_PER_TRACE)))]
        diff = self.n_spans - sum(counts)
        while diff:
            i = rng.randrange(len(counts))
            step = 1 if diff > 0 else -1
            if 2 <= counts[i] + step <= 60:
                counts[i] += step
                diff -= step
        return counts

    def _traces(self) -> list[TraceRow]:
        rng = self.rng
        rows = []
        span_seconds = DAYS * 86400
        for pk, n in enumerate(self._span_counts(), start=1):
            service = SERVICES.index(_weighted(rng, SERVICES))
            roll = rng.random()
            errors = min(rng.choice((1, 1, 1, 2, 3)), n - 1) if roll < 0.05 else 0
            status = "error" if errors else ("unset" if roll > 0.95 else "ok")
            models = sorted({_weighted(rng, MODELS)[0] for _ in range(rng.choice((1, 1, 2)))})
            tools = sorted(rng.sample(TOOLS, rng.randint(1, 5)))
            rows.append(TraceRow(
                pk=pk, trace_id=f"{rng.getrandbits(128):032x}",
                project_id=self.projects[1] if rng.random() < OTHER_PROJECT_SHARE
                else self.projects[0],
                service=service, environment=_weighted(rng, ENVIRONMENTS)[0],
                root_name=rng.choice(ROOT_NAMES).format(agent=SERVICES[service][2]),
                status=status,
                start=self.now - timedelta(seconds=rng.random() * span_seconds),
                duration_ms=round(min(rng.lognormvariate(math.log(8000), 1.0), 600_000), 3),
                n_spans=n, error_spans=frozenset(rng.sample(range(1, n), errors)),
                models=models, tools=tools, retry=rng.random() < 0.03,
                timeout=rng.random() < 0.01,
            ))
        return rows

    def spans(self, trace: TraceRow) -> list[tuple]:
        """The spans of one trace; fills in the trace's token and cost totals."""
        rng = self.rng
        start_ns = int(trace.start.timestamp() * 1e9)
        slot = int(trace.duration_ms * 1e6) // trace.n_spans
        span_ids = [f"{rng.getrandbits(64) | 1:016x}" for _ in range(trace.n_spans)]
        service = SERVICES[trace.service][0]
        resource = self.resources[trace.service]
        rows = []
        chain = 0
        tool_i = 0
        for i in range(trace.n_spans):
            kind = "agent" if i == 0 else ("chain", "llm", "tool", "tool")[(i - 1) % 4]
            parent = "" if i == 0 else span_ids[0 if kind == "chain" else chain]
            if kind == "chain":
                chain = i
            begin = start_ns if i == 0 else start_ns + i * slot
            end = start_ns + int(trace.duration_ms * 1e6) if i == 0 else begin + slot
            model, tokens_in, tokens_out, cost, tool = "", None, None, None, ""
            if kind == "llm":
                model = rng.choice(trace.models)
                _m, _w, price_in, price_out = next(m for m in MODELS if m[0] == model)
                tokens_in = int(rng.lognormvariate(math.log(3000), 0.8))
                tokens_out = int(rng.lognormvariate(math.log(350), 0.8))
                cost = ((tokens_in * price_in + tokens_out * price_out) / 1_000_000).quantize(
                    Decimal("0.00000001"))
                trace.input_tokens += tokens_in
                trace.output_tokens += tokens_out
                trace.cost += cost
                name = f"chat {model}"
            elif kind == "tool":
                tool = trace.tools[tool_i % len(trace.tools)]
                tool_i += 1
                name = f"execute_tool {tool}"
            elif kind == "chain":
                name = f"agent.step {i // 4}"
            else:
                name = trace.root_name
            if i in trace.error_spans:
                status, message = "error", "tool failed: exit status 1"
            else:
                status, message = ("unset", "") if trace.status == "unset" else ("ok", "")
            rows.append((
                trace.pk, span_ids[i], parent, name,
                "server" if i == 0 else ("client" if kind == "llm" else "internal"), service,
                begin, end, (end - begin) / 1e6, status, message,
                rng.choice(self.attr_pool[kind]), "[]", "[]", resource,
                '{"name": "openinference.instrumentation", "version": "0.1.43"}',
                kind, model, tokens_in, tokens_out, cost, tool,
                trace.retry and kind == "llm" and i == 2, trace.timeout and i == 3, "",
                trace.start,
            ))
        return rows

    def trace_tuple(self, t: TraceRow) -> tuple:
        end = t.start + timedelta(milliseconds=t.duration_ms)
        return (t.pk, t.trace_id, t.project_id, t.root_name, SERVICES[t.service][0],
                t.environment, t.status, t.start, end, t.duration_ms, t.n_spans,
                len(t.error_spans), t.input_tokens, t.output_tokens, t.cost,
                json.dumps(t.tools), t.retry, t.timeout, "", "otlp", t.start, end,
                json.dumps(t.models))


# --- loading ----------------------------------------------------------------------------------


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One field in COPY's text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES) if "\\" in value else value  # JSON has no raw \t
    return str(value)


def _check_columns(conn: psycopg.Connection) -> None:
    """Fail clearly if a migration added a required column this loader does not write."""
    known = {"traces_trace": set(TRACE_COLUMNS), "traces_span": {"id", *SPAN_COLUMNS}}
    for table, columns in known.items():
        missing = [name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            (table,)).fetchall() if name not in columns]
        if missing:
            raise RuntimeError(f"{table} has required columns the loader does not fill: "
                               f"{', '.join(missing)}; update bench/trace_list.py")


def load_postgres(url: str, gen: DataGen) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        _check_columns(conn)
        superuser = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        with conn.transaction(), conn.cursor() as cur:
            # Spans go first because generating them yields the trace totals (tokens, cost).
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so that is legal; as a
            # superuser the loader also skips the million deferred checks (the rows are
            # consistent by construction).
            if superuser:
                cur.execute("SET LOCAL session_replication_role = replica")
            with cur.copy(f"COPY traces_span ({', '.join(SPAN_COLUMNS)}) FROM STDIN") as cp:
                lines: list[str] = []
                for trace in gen.traces:
                    lines += ["\t".join(map(_copy_text, row)) for row in gen.spans(trace)]
                    if len(lines) >= 5000:
                        cp.write("\n".join(lines) + "\n")
                        lines.clear()
                if lines:
                    cp.write("\n".join(lines) + "\n")
            with cur.copy(f"COPY traces_trace ({', '.join(TRACE_COLUMNS)}) FROM STDIN") as cp:
                for trace in gen.traces:
                    cp.write("\t".join(map(_copy_text, gen.trace_tuple(trace))) + "\n")
            for table in ("traces_trace", "traces_span"):
                cur.execute(sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({t}, 'id'), "
                    "(SELECT max(id) FROM {ident}))").format(
                    t=sql.Literal(table), ident=sql.Identifier(table)))
        conn.execute("VACUUM ANALYZE traces_trace")
        conn.execute("VACUUM ANALYZE traces_span")


def load_sqlite(path: Path, gen: DataGen) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a throwaway file: durability is not measured

        def lite(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
            if isinstance(value, Decimal):
                return str(value)
            return value

        conn.execute("BEGIN")
        span_sql = (f"INSERT INTO traces_span ({', '.join(SPAN_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(SPAN_COLUMNS))})")
        chunk: list[tuple] = []
        for trace in gen.traces:
            chunk += [tuple(map(lite, row)) for row in gen.spans(trace)]
            if len(chunk) >= 20_000:
                conn.executemany(span_sql, chunk)
                chunk.clear()
        conn.executemany(span_sql, chunk)
        conn.executemany(
            f"INSERT INTO traces_trace ({', '.join(TRACE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(TRACE_COLUMNS))})",
            [tuple(map(lite, gen.trace_tuple(t))) for t in gen.traces])
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA synchronous=NORMAL")
    finally:
        conn.close()


# --- the requests -----------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    params: dict[str, str]
    filtered: bool | None  # None: a reference figure without a budget
    suggestion: str = ""  # an index that would serve it, printed when it is over budget


@dataclass
class Timing:
    case: Case
    ms: list[float] = field(default_factory=list)
    rows: int = 0
    more: bool = False
    kind: str = "query"  # or "cursor"

    @property
    def budget(self) -> float:
        if self.case.filtered is None:
            return math.inf
        return BUDGET_FILTERED_P95_MS if self.case.filtered else BUDGET_UNFILTERED_P95_MS

    @property
    def p95(self) -> float:
        return percentile(self.ms, 95)

    @property
    def ok(self) -> bool:
        return self.p95 <= self.budget


def _quantile(values: list, q: float) -> Any:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def build_cases(gen: DataGen) -> list[Case]:
    """Filter values drawn from the loaded data: common ones, and rare ones (the hard case for a
    newest-first index scan that has to skip most rows)."""
    visible = [t for t in gen.traces if t.project_id == gen.projects[0]]
    p90 = {
        "latency": _quantile([t.duration_ms for t in visible], 0.90),
        "latency_p99": _quantile([t.duration_ms for t in visible], 0.99),
        "latency_p10": _quantile([t.duration_ms for t in visible], 0.10),
        "cost": _quantile([t.cost for t in visible], 0.90),
        "tokens": _quantile([t.input_tokens + t.output_tokens for t in visible], 0.90),
    }
    window_end = gen.now - timedelta(days=2)
    window = {"since": (window_end - timedelta(hours=6)).isoformat(),
              "before": window_end.isoformat()}
    sample = visible[len(visible) // 3]
    trgm = ("CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX trace_root_name_trgm ON "
            "traces_trace USING gin (upper(root_span_name::text) gin_trgm_ops)")
    tokens = ("CREATE INDEX ON traces_trace (project_id, (input_tokens + output_tokens) DESC, "
              "id DESC)")
    models_gin = ("CREATE INDEX trace_models_gin ON traces_trace USING gin "
                  "(models jsonb_path_ops)  -- serves models @> '[\"m\"]'")
    tools = ("trace_tools_trgm_idx, GIN ((tools::text) gin_trgm_ops) from migration traces "
             "0004, should serve it through the tools::text ILIKE '%<tool>%' prefilter that "
             "traces.api.filters adds (3+ characters, no quote or backslash) next to the exact "
             "EXISTS test")
    return [
        Case("unfiltered, sort=newest (default)", {}, False),
        Case("unfiltered, sort=oldest", {"sort": "oldest"}, False),
        Case("unfiltered, sort=slowest", {"sort": "slowest"}, False,
             "CREATE INDEX ON traces_trace (project_id, duration_ms DESC, id DESC)"),
        Case("unfiltered, sort=most_expensive", {"sort": "most_expensive"}, False,
             "CREATE INDEX ON traces_trace (project_id, cost_usd DESC, id DESC)"),
        Case("unfiltered, sort=most_tokens", {"sort": "most_tokens"}, False, tokens),
        Case("project=default", {"project": "default"}, True),
        Case("service (40% of traces)", {"service": SERVICES[0][0]}, True),
        Case("service (4%)", {"service": SERVICES[-1][0]}, True,
             "trace_service_start_idx (service_name, -start_time) should serve it"),
        Case("environment=staging", {"environment": "staging"}, True,
             "CREATE INDEX ON traces_trace (environment, start_time DESC)"),
        Case("status=error (5%)", {"status": "error"}, True),
        Case("model (common)", {"model": MODELS[0][0]}, True, models_gin),
        Case("model (rare, ~3%)", {"model": MODELS[-1][0]}, True, models_gin),
        Case("tool (substring)", {"tool": "search"}, True, tools),
        Case("tool (no match)", {"tool": "no_such_tool"}, True, tools),
        Case("min_latency_ms (p90)", {"min_latency_ms": f"{p90['latency']:.0f}"}, True,
             "CREATE INDEX ON traces_trace (project_id, duration_ms DESC)"),
        Case("min_latency_ms (p99)", {"min_latency_ms": f"{p90['latency_p99']:.0f}"}, True,
             "CREATE INDEX ON traces_trace (project_id, duration_ms DESC)"),
        Case("max_latency_ms (p10)", {"max_latency_ms": f"{p90['latency_p10']:.0f}"}, True),
        Case("min_tokens (p90)", {"min_tokens": str(p90["tokens"])}, True, tokens),
        Case("min_cost (p90)", {"min_cost": str(p90["cost"])}, True,
             "CREATE INDEX ON traces_trace (project_id, cost_usd DESC)"),
        Case("since/before (6 h window)", window, True),
        Case("q (root span name part)", {"q": "billing"}, True, trgm),
        Case("q (no match)", {"q": "no-such-span"}, True, trgm),
        Case("q (trace id prefix)", {"q": sample.trace_id[:8]}, True,
             "CREATE INDEX ON traces_trace (trace_id varchar_pattern_ops)  -- prefix LIKE under "
             "a non-C collation"),
        Case("status=error, sort=slowest", {"status": "error", "sort": "slowest"}, True),
        Case("service + 6 h window, sort=most_expensive",
             {"service": SERVICES[1][0], **window, "sort": "most_expensive"}, True),
        Case("model + min_latency_ms, sort=most_tokens",
             {"model": MODELS[2][0], "min_latency_ms": f"{p90['latency']:.0f}",
              "sort": "most_tokens"}, True),
    ]


CURSOR_CASES = ("unfiltered, sort=newest (default)", "unfiltered, sort=slowest",
                "unfiltered, sort=most_expensive", "status=error (5%)")


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


def _path(params: dict[str, str]) -> str:
    query = urlencode({**params, "limit": str(PAGE_SIZE)})
    return f"{LIST_PATH}?{query}"


def _next_path(body: bytes) -> tuple[int, str | None]:
    data = json.loads(body)
    nxt = data.get("next")
    if not nxt:
        return len(data["results"]), None
    parts = urlsplit(nxt)
    return len(data["results"]), f"{parts.path}?{parts.query}"


def run_floor(api: Api, requests: int) -> list[Timing]:
    """Reference round trips: no auth and no DB; and a one-row page (auth, one tiny query)."""
    out = []
    for case, path in ((Case("GET /healthz (reference)", {}, None), "/healthz"),
                       (Case("limit=1 (reference)", {}, None), f"{LIST_PATH}?limit=1")):
        timing = Timing(case, kind="floor")
        for i in range(WARMUP_REQUESTS + requests):
            ms = api.get(path)[0]
            if i >= WARMUP_REQUESTS:
                timing.ms.append(ms)
        out.append(timing)
    return out


def run_queries(api: Api, cases: list[Case], requests: int) -> list[Timing]:
    out = []
    for case in cases:
        path = _path(case.params)
        timing = Timing(case)
        for _ in range(WARMUP_REQUESTS):
            _, body = api.get(path)
        timing.rows, nxt = _next_path(body)
        timing.more = nxt is not None
        for _ in range(requests):
            timing.ms.append(api.get(path)[0])
        out.append(timing)
    return out


def run_cursors(api: Api, cases: list[Case], pages: int, walks: int) -> list[Timing]:
    """Follow ``next`` from the first page for ``pages`` pages, ``walks`` times per case."""
    out = []
    for case in (c for c in cases if c.label in CURSOR_CASES):
        timing = Timing(Case(f"{case.label}: pages 2..{pages + 1}", case.params, case.filtered,
                             case.suggestion), kind="cursor")
        for walk in range(walks + 1):  # the first walk warms up
            _, body = api.get(_path(case.params))
            for _ in range(pages):
                n, nxt = _next_path(body)
                if nxt is None:
                    break
                ms, body = api.get(nxt)
                if walk:
                    timing.ms.append(ms)
                    timing.rows += n
        out.append(timing)
    return out


# --- where the time goes: a subprocess with Django set up -----------------------------------


def phase_explain(args) -> None:
    """For each query: the SQL of its traces_trace page query, that SQL's own time (executed
    and fetched 5 times in-process, median) and its plan; optionally a cProfile of a request."""
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['BENCH_API_KEY']}")
    out: dict[str, Any] = {"cases": {}}
    for label, path in json.loads(Path(args.queries).read_text()).items():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        if response.status_code != 200:
            out["cases"][label] = {"error": f"GET {path} -> {response.status_code}"}
            continue
        statements = [q["sql"] for q in captured.captured_queries
                      if '"traces_trace"' in q["sql"] and "LIMIT" in q["sql"]]
        if not statements:
            out["cases"][label] = {"error": "no traces_trace query captured"}
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
        path = _path({})
        for _ in range(3):
            client.get(path)  # warm
        prof = cProfile.Profile()
        response = prof.runcall(client.get, path)
        assert response.status_code == 200, response.content[:300]
        out["profile"] = profile_text(prof, f"GET {path} in-process (django.test.Client, no "
                                            f"daphne, {connection.vendor})")
    Path(args.out).write_text(json.dumps(out))


# --- orchestration ----------------------------------------------------------------------------


def projects(kind: str, db_url: str, tmp: Path) -> tuple[int, int]:
    """(the default project, a second one created here)."""
    now = datetime.now(UTC)
    insert = ("INSERT INTO runs_project (slug, name, redaction_policy, created_at) "
              "VALUES ('bench-other', 'Another project', '', {ph})")
    query = "SELECT id FROM runs_project WHERE slug = {ph}"
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp / SQLITE_NAME)) as conn, conn:
            conn.execute(insert.format(ph="?"), (now.replace(tzinfo=None).isoformat(" "),))
            return tuple(conn.execute(query.format(ph="?"), (slug,)).fetchone()[0]
                         for slug in ("default", "bench-other"))
    with psycopg.connect(db_url) as conn:
        conn.execute(insert.format(ph="%s"), (now,))
        return tuple(conn.execute(query.format(ph="%s"), (slug,)).fetchone()[0]
                     for slug in ("default", "bench-other"))


def table_sizes(kind: str, db_url: str, tmp: Path) -> str:
    if kind == "sqlite":
        size = (tmp / SQLITE_NAME).stat().st_size
        return f"database file {size / 2**20:,.0f} MB"
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(oid), reltuples::bigint FROM pg_class "
            "WHERE relname IN ('traces_trace', 'traces_span') ORDER BY relname DESC").fetchall()
    return ", ".join(f"{name} {size / 2**20:,.0f} MB (~{n:,} rows)" for name, size, n in rows)


@dataclass
class DbReport:
    kind: str
    title: str
    load: str
    timings: list[Timing]
    analysis: dict[str, Any]  # {"cases": {label: {sql, plan, db_ms, queries}}, "profile": ...}


def bench_database(kind: str, args, tmp: Path, redis_url: str | None) -> DbReport:
    n_spans = args.spans or DEFAULT_SPANS[kind]
    step = f"[{kind}]"
    with bench_db(kind, tmp, redis_url, pg_db=PG_BENCH_DB, sqlite_name=SQLITE_NAME,
                  scopes="runs:read") as (db_url, env, key):
        t0 = time.perf_counter()
        gen = DataGen(args.seed, n_spans, datetime.now(UTC), projects(kind, db_url, tmp))
        print(f"{step} loading {n_spans:,} spans in {len(gen.traces):,} traces ...",
              file=sys.stderr, flush=True)
        if kind == "postgres":
            load_postgres(db_url, gen)
        else:
            load_sqlite(tmp / SQLITE_NAME, gen)
        load = (f"{n_spans:,} spans in {len(gen.traces):,} traces "
                f"({sum(t.project_id == gen.projects[0] for t in gen.traces):,} visible to the "
                f"key's project) loaded in {time.perf_counter() - t0:.1f} s (COPY/executemany, "
                f"then ANALYZE); {table_sizes(kind, db_url, tmp)}")
        cases = build_cases(gen)
        del gen
        with daphne_server(env, tmp / f"daphne-{kind}.log") as base:
            api = Api(base, key)
            try:
                print(f"{step} {len(cases)} queries x {args.requests} requests ...",
                      file=sys.stderr, flush=True)
                timings = run_floor(api, args.requests)
                timings += run_queries(api, cases, args.requests)
                print(f"{step} cursor walks ...", file=sys.stderr, flush=True)
                timings += run_cursors(api, cases, args.pages, args.walks)
            finally:
                api.close()
        analysis: dict[str, Any] = {"cases": {}}
        if args.explain != "none":
            print(f"{step} SQL time and plans (subprocess) ...", file=sys.stderr, flush=True)
            queries = tmp / f"explain-{kind}.json"
            queries.write_text(json.dumps(
                {t.case.label: _path(t.case.params) for t in timings if t.kind == "query"}))
            analysis = run_phase(__file__, "explain", tmp / f"plans-{kind}.json",
                                 ["--_queries", str(queries)], env, profile=args.profile,
                                 timeout=600)
    title = db_title(kind, PG_BENCH_DB, sqlite_note="temp file, WAL")
    return DbReport(kind, title, load, timings, analysis)


def print_header(args, redis_url: str | None) -> None:
    print_machine("trace list", args.db, load_average=True)
    layer = f"Redis ({redis_url})" if redis_url else "in-memory"
    print(f"  server      daphne, DEBUG=0, cache {layer}; client http.client, one keep-alive "
          f"connection, key with runs:read")
    print(f"  workload    GET {LIST_PATH}?limit={PAGE_SIZE}: {args.requests} timed requests per "
          f"query after {WARMUP_REQUESTS} warm-up ones; cursor: {args.walks} walks of "
          f"{args.pages} next pages; start times over {DAYS} days, ~5% error traces, "
          f"{OTHER_PROJECT_SHARE:.0%} of traces in another project")
    print(flush=True)


def print_report(report: DbReport, args) -> list[tuple[str, bool]]:
    print(f"== {report.title} ==")
    print(f"  data: {report.load}")
    cases = report.analysis.get("cases", {})
    head = (f"  {'query':<46}{'rows':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'SQL ms':>8}"
            f"{'budget':>8}  result")
    print(head)
    print("  " + "-" * (len(head) - 2))
    # A cursor walk on a small data set can end before its first timed page: nothing to judge.
    empty = [t for t in report.timings if not t.ms]
    report.timings = [t for t in report.timings if t.ms]
    for t in empty:
        print(f"  {t.case.label:<46} (no pages to time: the data ends first)")
    for t in report.timings:
        rows = f"{t.rows}{'+' if t.more else ''}" if t.kind == "query" else (
            f"{t.rows}" if t.kind == "cursor" else "")
        db_ms = cases.get(t.case.label, {}).get("db_ms")
        db = f"{db_ms:>8.1f}" if db_ms is not None else f"{'':>8}"
        budget, result = ((f"{'-':>8}", "info") if t.case.filtered is None
                          else (f"{t.budget:>8.0f}", "PASS" if t.ok else "FAIL"))
        print(f"  {t.case.label:<46}{rows:>5}{percentile(t.ms, 50):>9.1f}{t.p95:>9.1f}"
              f"{max(t.ms):>9.1f}{db}{budget}  {result}")
    print("  (rows: results on the first page, + when there is a next page; cursor rows: results "
          "over all walks. SQL ms: the page's traces_trace query alone, executed and fetched "
          "in-process, median of 5)")
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
            where = ("the SQL is a large part: an index would help"
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
    for filtered, name in ((False, "unfiltered (sorts, cursor pages)"),
                           (True, "filtered (filters, sorts, cursor pages)")):
        group = [t for t in report.timings if t.case.filtered is filtered]
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


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    p.add_argument("--spans", type=int, default=0,
                   help="spans to load (default 1,000,000)")
    p.add_argument("--requests", type=int, default=50, help="timed requests per query")
    p.add_argument("--pages", type=int, default=10, help="next pages per cursor walk")
    p.add_argument("--walks", type=int, default=5, help="cursor walks per sort")
    p.add_argument("--explain", choices=("failed", "all", "none"), default="failed",
                   help="print query plans of the cases over budget (or all; none: also skip "
                        "the SQL ms column)")
    p.add_argument("--profile", action="store_true",
                   help="also print a cProfile of one unfiltered request, in-process")
    p.add_argument("--redis", choices=("auto", "on", "off"), default="auto",
                   help=f"cache on Redis ({REDIS_URL}; auto: if reachable)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daphne logs)")
    p.add_argument("--_phase", dest="phase", help=argparse.SUPPRESS)
    p.add_argument("--_queries", dest="queries", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.spans < 0 or args.requests < 1 or args.pages < 1 or args.walks < 1:
        p.error("--spans must be >= 0 (0: default); --requests, --pages and --walks >= 1")
    if args.spans and args.spans < 1000:
        p.error("--spans must be at least 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "explain":
        phase_explain(args)
        return 0
    return run_bench(
        args, tmp_prefix="tf-bench-trace-list-", order=("postgres", "sqlite"), header=print_header,
        bench_one=lambda kind, tmp, redis_url: print_report(
            bench_database(kind, args, tmp, redis_url), args))


if __name__ == "__main__":
    sys.exit(main())
