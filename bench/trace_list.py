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

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import list_latency  # bench/ is not a package: this folder is on sys.path
import psycopg
from list_latency import PAGE_SIZE, WARMUP_REQUESTS, Case, copy_text, weighted
from psycopg import sql

PG_BENCH_DB = "tracefoundry_bench_trace_list"
SQLITE_NAME = "bench-trace-list.sqlite3"
DEFAULT_SPANS = {"postgres": 1_000_000, "sqlite": 1_000_000}
SPANS_PER_TRACE = 20  # on average: 4..36 a trace
OTHER_PROJECT_SHARE = 0.10  # traces of a second project, which the key must not see
DAYS = 7
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
            model = weighted(rng, MODELS)[0]
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
            service = SERVICES.index(weighted(rng, SERVICES))
            roll = rng.random()
            errors = min(rng.choice((1, 1, 1, 2, 3)), n - 1) if roll < 0.05 else 0
            status = "error" if errors else ("unset" if roll > 0.95 else "ok")
            models = sorted({weighted(rng, MODELS)[0] for _ in range(rng.choice((1, 1, 2)))})
            tools = sorted(rng.sample(TOOLS, rng.randint(1, 5)))
            rows.append(TraceRow(
                pk=pk, trace_id=f"{rng.getrandbits(128):032x}",
                project_id=self.projects[1] if rng.random() < OTHER_PROJECT_SHARE
                else self.projects[0],
                service=service, environment=weighted(rng, ENVIRONMENTS)[0],
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


def load_postgres(url: str, gen: DataGen) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        list_latency.check_columns(conn, {"traces_trace": set(TRACE_COLUMNS),
                                          "traces_span": {"id", *SPAN_COLUMNS}}, "trace_list.py")
        with list_latency.load_transaction(conn) as cur:
            # Spans go first because generating them yields the trace totals (tokens, cost).
            list_latency.copy_lines(cur, "traces_span", SPAN_COLUMNS, (
                "\t".join(map(copy_text, row)) for trace in gen.traces for row in gen.spans(trace)))
            list_latency.copy_lines(cur, "traces_trace", TRACE_COLUMNS, (
                "\t".join(map(copy_text, gen.trace_tuple(trace))) for trace in gen.traces))
            for table in ("traces_trace", "traces_span"):
                cur.execute(sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({t}, 'id'), "
                    "(SELECT max(id) FROM {ident}))").format(
                    t=sql.Literal(table), ident=sql.Identifier(table)))
        conn.execute("VACUUM ANALYZE traces_trace")
        conn.execute("VACUUM ANALYZE traces_span")


def _lite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, Decimal):
        return str(value)
    return value


def load_sqlite(path: Path, gen: DataGen) -> None:
    with list_latency.sqlite_load(path) as conn:
        list_latency.insert_rows(conn, "traces_span", SPAN_COLUMNS, (
            tuple(map(_lite, row)) for trace in gen.traces for row in gen.spans(trace)))
        list_latency.insert_rows(conn, "traces_trace", TRACE_COLUMNS, (
            tuple(map(_lite, gen.trace_tuple(trace))) for trace in gen.traces))


# --- the requests -----------------------------------------------------------------------------


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

    def unfiltered(label: str, params: dict[str, str], suggestion: str = "") -> Case:
        return Case(label, LIST_PATH, params, "unfiltered", suggestion)

    def filtered(label: str, params: dict[str, str], suggestion: str = "") -> Case:
        return Case(label, LIST_PATH, params, "filtered", suggestion)

    return [
        unfiltered("unfiltered, sort=newest (default)", {}),
        unfiltered("unfiltered, sort=oldest", {"sort": "oldest"}),
        unfiltered("unfiltered, sort=slowest", {"sort": "slowest"},
                   "CREATE INDEX ON traces_trace (project_id, duration_ms DESC, id DESC)"),
        unfiltered("unfiltered, sort=most_expensive", {"sort": "most_expensive"},
                   "CREATE INDEX ON traces_trace (project_id, cost_usd DESC, id DESC)"),
        unfiltered("unfiltered, sort=most_tokens", {"sort": "most_tokens"}, tokens),
        filtered("project=default", {"project": "default"}),
        filtered("service (40% of traces)", {"service": SERVICES[0][0]}),
        filtered("service (4%)", {"service": SERVICES[-1][0]},
                 "trace_service_start_idx (service_name, -start_time) should serve it"),
        filtered("environment=staging", {"environment": "staging"},
                 "CREATE INDEX ON traces_trace (environment, start_time DESC)"),
        filtered("status=error (5%)", {"status": "error"}),
        filtered("model (common)", {"model": MODELS[0][0]}, models_gin),
        filtered("model (rare, ~3%)", {"model": MODELS[-1][0]}, models_gin),
        filtered("tool (substring)", {"tool": "search"}, tools),
        filtered("tool (no match)", {"tool": "no_such_tool"}, tools),
        filtered("min_latency_ms (p90)", {"min_latency_ms": f"{p90['latency']:.0f}"},
                 "CREATE INDEX ON traces_trace (project_id, duration_ms DESC)"),
        filtered("min_latency_ms (p99)", {"min_latency_ms": f"{p90['latency_p99']:.0f}"},
                 "CREATE INDEX ON traces_trace (project_id, duration_ms DESC)"),
        filtered("max_latency_ms (p10)", {"max_latency_ms": f"{p90['latency_p10']:.0f}"}),
        filtered("min_tokens (p90)", {"min_tokens": str(p90["tokens"])}, tokens),
        filtered("min_cost (p90)", {"min_cost": str(p90["cost"])},
                 "CREATE INDEX ON traces_trace (project_id, cost_usd DESC)"),
        filtered("since/before (6 h window)", window),
        filtered("q (root span name part)", {"q": "billing"}, trgm),
        filtered("q (no match)", {"q": "no-such-span"}, trgm),
        filtered("q (trace id prefix)", {"q": sample.trace_id[:8]},
                 "CREATE INDEX ON traces_trace (trace_id varchar_pattern_ops)  -- prefix LIKE "
                 "under a non-C collation"),
        filtered("status=error, sort=slowest", {"status": "error", "sort": "slowest"}),
        filtered("service + 6 h window, sort=most_expensive",
                 {"service": SERVICES[1][0], **window, "sort": "most_expensive"}),
        filtered("model + min_latency_ms, sort=most_tokens",
                 {"model": MODELS[2][0], "min_latency_ms": f"{p90['latency']:.0f}",
                  "sort": "most_tokens"}),
    ]


CURSOR_CASES = ("unfiltered, sort=newest (default)", "unfiltered, sort=slowest",
                "unfiltered, sort=most_expensive", "status=error (5%)")

def _workload(args) -> str:
    """The header's workload line."""
    return (f"GET {LIST_PATH}?limit={PAGE_SIZE}: {args.requests} timed requests per query after "
            f"{WARMUP_REQUESTS} warm-up ones; cursor: {args.walks} walks of {args.pages} next "
            f"pages; start times over {DAYS} days, ~5% error traces, "
            f"{OTHER_PROJECT_SHARE:.0%} of traces in another project")


BENCH = list_latency.ListBench(
    script=__file__, title="trace list", pg_db=PG_BENCH_DB, sqlite_name=SQLITE_NAME,
    tmp_prefix="tf-bench-trace-list-", list_path=LIST_PATH, workload=_workload,
    budgets={"unfiltered": BUDGET_UNFILTERED_P95_MS, "filtered": BUDGET_FILTERED_P95_MS},
    groups=(("unfiltered", "unfiltered (sorts, cursor pages)"),
            ("filtered", "filtered (filters, sorts, cursor pages)")),
    next_page=lambda case, body: list_latency.next_link(json.loads(body)),
    walk_label=lambda case: case.label if case.label in CURSOR_CASES else None,
    table=lambda case: "traces_trace", tables_note="traces_trace",
    page_query='"{table}"')


# --- orchestration ----------------------------------------------------------------------------


def load(kind: str, args, db_url: str, sqlite_path: Path) -> tuple[str, list[Case]]:
    """Fill the fresh database: what was loaded, and the cases drawn from it."""
    n_spans = args.spans or DEFAULT_SPANS[kind]
    t0 = time.perf_counter()
    gen = DataGen(args.seed, n_spans, datetime.now(UTC),
                  list_latency.projects(kind, db_url, sqlite_path))
    print(f"[{kind}] loading {n_spans:,} spans in {len(gen.traces):,} traces ...",
          file=sys.stderr, flush=True)
    if kind == "postgres":
        load_postgres(db_url, gen)
    else:
        load_sqlite(sqlite_path, gen)
    sizes = list_latency.table_sizes(kind, db_url, sqlite_path, ("traces_trace", "traces_span"))
    loaded = (f"{n_spans:,} spans in {len(gen.traces):,} traces "
              f"({sum(t.project_id == gen.projects[0] for t in gen.traces):,} visible to the "
              f"key's project) loaded in {time.perf_counter() - t0:.1f} s (COPY/executemany, "
              f"then ANALYZE); {sizes}")
    return loaded, build_cases(gen)


def parse_args(argv: list[str] | None = None):
    p = list_latency.parser(__doc__)
    p.add_argument("--spans", type=int, default=0,
                   help="spans to load (default 1,000,000)")
    list_latency.add_options(p, walks_help="cursor walks per sort", seed=5,
                             profile_help="also print a cProfile of one unfiltered request, "
                                          "in-process")
    args = p.parse_args(argv)
    if args.spans < 0 or args.requests < 1 or args.pages < 1 or args.walks < 1:
        p.error("--spans must be >= 0 (0: default); --requests, --pages and --walks >= 1")
    if args.spans and args.spans < 1000:
        p.error("--spans must be at least 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    return list_latency.main(parse_args(argv), BENCH, load)


if __name__ == "__main__":
    sys.exit(main())
