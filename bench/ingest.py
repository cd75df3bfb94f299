#!/usr/bin/env python
"""OTLP span ingest throughput (PRODUCT.md §14, "OTLP ingest through HTTP").

For each database (a fresh SQLite file and/or a fresh PostgreSQL database
``tracefoundry_bench_ingest``) this sends the same realistic agent spans, in OTLP protobuf batches
of 512 with new trace ids per batch, down these paths:

1. raw      the same ``traces_trace`` + ``traces_span`` rows (same columns, same JSON sizes) with
            plain SQL: psycopg ``executemany`` INSERT ... ON CONFLICT DO UPDATE (pipelined),
            COPY into a temp table + INSERT ... SELECT ... ON CONFLICT DO UPDATE, and plain COPY
            (no upsert, for reference); sqlite3 ``executemany`` with and without ON CONFLICT.
2. service  ``traces.services.spans_ingest`` in-process (a subprocess of this script that sets
            Django up against the same database), plus protobuf decoding and the CPU part of the
            service (redaction, GenAI extraction, payload externalisation) alone.
3. HTTP     ``POST /otlp/v1/traces`` (``application/x-protobuf``) against a real daphne server
            (DEBUG=0) on one keep-alive httpx connection.
4. re-send  already-stored batches again (idempotent upserts), raw and through HTTP.
5. long prompts (issue #12) the same spans twice, 5% of them with a distinct 4 KB prompt (inline
            in the span row) or a distinct 20 KB one (over the 8 KB inline limit: a payload blob
            each), the two workloads' batches alternating, in-process and through the same daphne.

and checks the budget on PostgreSQL: HTTP >= 10,000 spans/s, HTTP >= 1/2 of the fastest raw
path (plain COPY included: the service writes new traces' spans that way), and HTTP with the
20 KB prompts >= 0.8 of HTTP with the 4 KB ones; on both databases, that every acknowledged
span is stored exactly once after the re-sends, and every long prompt once as a blob (one ref,
one row, one file). Exit status: 0 all pass, 1 a budget failed, 2 the bench failed.

    .venv/bin/python bench/ingest.py [--db sqlite|postgres|both] [--batches 60] [--batch 512]
        [--resend 20] [--prompt-batches 30] [--pg-db NAME] [--profile]
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
import hashlib
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
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

try:
    import httpx
except ImportError:  # pragma: no cover - a dev dependency
    sys.exit("bench/ingest.py needs httpx: .venv/bin/pip install -e '.[dev]'")

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

PG_BENCH_DB = "tracefoundry_bench_ingest"
SQLITE_NAME = "bench-ingest.sqlite3"
WARMUP_BATCHES = 2
TRANSPORT_BATCHES = 10
RESEND_LABEL = "  re-send (stored batches)"
PROMPT_SHARE = 0.10  # spans carrying a 4 KB prompt (gen_ai.prompt / input.value)
PROMPT_CHARS = 4096  # below TRACEFOUNDRY_SPAN_INLINE_LIMIT (8 KB): stays inline in the row
# The long-prompt comparison (issue #12): the same spans, 5% of them with a distinct prompt of
# 4 KB (inline in the span row) or of 20 KB (over the inline limit: a payload blob each).
LONG_SHARE = 0.05
LONG_CHARS = 20 * 1024
BUDGET_BLOB_RATIO = 0.8
BUDGET_HTTP_SPANS_S = 10_000
BUDGET_RAW_RATIO = 1 / 2
PROTOBUF = "application/x-protobuf"

SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name",
    "start_time_unix_nano", "end_time_unix_nano", "duration_ms", "status_code", "status_message",
    "attributes", "events", "links", "resource", "scope", "span_type", "model", "input_tokens",
    "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout", "run_id", "received_at",
)
SPAN_JSON = frozenset({"attributes", "events", "links", "resource", "scope"})
TRACE_COLUMNS = (
    "trace_id", "project_id", "root_span_name", "service_name", "environment", "status",
    "start_time", "end_time", "duration_ms", "span_count", "error_count", "input_tokens",
    "output_tokens", "cost_usd", "tools", "has_retry", "has_timeout", "run_id", "source",
    "created_at", "updated_at", "models",
)
TRACE_JSON = frozenset({"tools", "models"})
# Columns an ON CONFLICT update leaves alone.
TRACE_KEEP = frozenset({"trace_id", "project_id", "source", "created_at"})


# --- realistic agent spans -----------------------------------------------------------------------

_PROSE = (
    "the agent reads the failing test and checks the fixture before it patches the model "
    "because the migration adds a nullable column with a default value so the query planner "
    "uses the index on project and created while the worker retries the request after a "
    "timeout from the upstream service then it compares the diff with the expected output "
    "and writes a short summary of the change for the reviewer including tokens used latency "
    "cache hit ratio and the number of files touched in this step of the plan customer order "
    "invoice refund shipping address ticket priority escalation policy knowledge base article"
)
WORDS = tuple(_PROSE.split())
# (service.name, deployment.environment.name, service.version, agent name)
SERVICES = (
    ("support-agent", "production", "2.14.1", "support_triage"),
    ("coding-agent", "production", "0.38.0", "code_fixer"),
    ("research-agent", "staging", "1.2.0", "web_researcher"),
    ("billing-copilot", "production", "3.0.7", "billing_assistant"),
    ("eval-runner", "dev", "0.9.12", "eval_judge"),
)
# (model, provider, server, USD per 1M input tokens, per 1M output tokens)
MODELS = (
    ("claude-sonnet-4-5", "anthropic", "api.anthropic.com", 3, 15),
    ("gpt-4.1-mini", "openai", "api.openai.com", Decimal("0.4"), Decimal("1.6")),
    ("gpt-4o", "openai", "api.openai.com", Decimal("2.5"), 10),
    ("claude-3-5-haiku-latest", "anthropic", "api.anthropic.com", Decimal("0.8"), 4),
)
TOOLS = ("read_file", "grep", "run_tests", "apply_patch", "web_search", "http_get", "sql_query",
         "lookup_order", "send_email_draft", "shell")
FILES = ("src/app/models.py", "src/app/views.py", "src/app/services/billing.py",
         "tests/test_api.py", "README.md", "pyproject.toml")
STEP_KINDS = ("plan", "act", "observe", "reflect")
ERROR_TYPES = ("httpx.ReadTimeout", "FileNotFoundError", "subprocess.CalledProcessError",
               "PermissionError", "ValueError")
SCOPE = {"name": "openinference.instrumentation.langchain", "version": "0.1.43"}
KIND_SERVER, KIND_INTERNAL, KIND_CLIENT = 2, 1, 3


def resource_of(service: int) -> dict:
    name, env, version, _agent = SERVICES[service]
    return {
        "service.name": name, "service.version": version, "service.namespace": "agents",
        "deployment.environment.name": env, "host.name": f"{name}-7d9f8c6b5-x2k4q",
        "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "1.38.0", "process.runtime.version": "3.12.7",
    }


RESOURCES = tuple(resource_of(i) for i in range(len(SERVICES)))


@dataclass(slots=True)
class SpanSpec:
    """One span, before ids are given to it (each phase draws its own random ids)."""

    span_no: int  # position in its trace, preorder, 0 = root
    parent_no: int  # -1 for the root
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict
    events: list[dict]
    # What the service extracts (span_type, model, tokens, cost, tool), for the raw rows.
    span_type: str
    model: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: Decimal | None = None
    tool_name: str = ""
    is_retry: bool = False


@dataclass(slots=True)
class TraceSpec:
    service: int
    spans: list[SpanSpec]


@dataclass(frozen=True)
class PromptMix:
    """Which share of the spans carry a prompt (``gen_ai.prompt`` / ``input.value``), and how
    many characters long."""

    share: float
    chars: int

    @property
    def label(self) -> str:
        return f"{self.share:.0%} {self.chars // 1024} KB prompts"


STANDARD = PromptMix(PROMPT_SHARE, PROMPT_CHARS)
INLINE_MIX = PromptMix(LONG_SHARE, PROMPT_CHARS)
BLOB_MIX = PromptMix(LONG_SHARE, LONG_CHARS)


class SpanFactory:
    """Deterministic agent traces: a root ``invoke_agent`` span, 3-6 ``agent.step`` chain spans,
    each with an LLM call and 1-2 tool calls (about 16 spans a trace, about 20 attributes a span);
    10% of the spans carry a 4 KB prompt (``mix``: another share and length)."""

    def __init__(self, seed: int, mix: PromptMix = STANDARD) -> None:
        self.rng = random.Random(seed)
        self.mix = mix
        self.now_ns = time.time_ns()
        self.prompts = [self._prompt(i) for i in range(64)]
        # The standard workload draws its prompts from ``rng``, as it always did; the other
        # mixes from a generator of their own, so that two mixes of one seed and share have the
        # very same spans and differ in the length of their prompts only.
        self.prompt_rng = self.rng if mix == STANDARD else random.Random(-seed - 1)

    def text(self, lo: int, hi: int, prefix: str = "") -> str:
        return prose(self.rng, WORDS, lo, hi, prefix)

    def _prompt(self, i: int) -> str:
        head = f"System: You are agent #{i}. Follow the plan and cite the files you read.\nUser: "
        return self.text(PROMPT_CHARS, PROMPT_CHARS, head)

    def prompt(self) -> str:
        # A pool keeps generation cheap; the head makes each value distinct (as real prompts
        # are), and a long prompt joins pieces of the pool drawn at random.
        rng, chars = self.prompt_rng, self.mix.chars
        body = "\n".join(rng.choice(self.prompts) for _ in range(-(-chars // PROMPT_CHARS)))
        head = f"[{rng.getrandbits(64):016x}] "
        return (head + body)[:chars]

    def common(self, ctx: dict) -> dict:
        return {"session.id": ctx["session"], "gen_ai.conversation.id": ctx["conversation"],
                "app.tenant_id": ctx["tenant"], "app.request_id": ctx["request"]}

    def root(self, ctx: dict, start: int, end: int, steps: int) -> SpanSpec:
        rng = self.rng
        _name, _env, _version, agent = SERVICES[ctx["service"]]
        attrs = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
            "gen_ai.agent.id": f"agent_{rng.getrandbits(40):010x}",
            "openinference.span.kind": "AGENT", **self.common(ctx),
            "user.id": f"user_{rng.randint(1, 50_000)}", "http.request.method": "POST",
            "http.route": "/v1/agents/{agent_id}/runs", "url.scheme": "https",
            "server.address": "agents.internal.example.com", "http.response.status_code": 200,
            "user_agent.original": "acme-sdk-python/4.2.0", "app.plan": rng.choice(
                ("free", "pro", "enterprise")), "app.feature_flags": ["planner_v3", "tool_cache"],
            "app.agent.max_steps": 12, "app.agent.steps": steps, "app.region": rng.choice(
                ("eu-west-1", "us-east-1", "ap-southeast-2")),
            "input.value": self.text(120, 240, "User asked:"),
            "output.value": self.text(200, 400, "Answer:"),
        }
        return SpanSpec(0, -1, f"invoke_agent {agent}", KIND_SERVER, start, end, 1, "", attrs,
                        [], "agent")

    def step(self, ctx: dict, no: int, parent: int, i: int, start: int, end: int) -> SpanSpec:
        rng = self.rng
        kind = STEP_KINDS[i % len(STEP_KINDS)]
        attrs = {
            "openinference.span.kind": "CHAIN", "traceloop.span.kind": "task",
            **self.common(ctx), "app.step.index": i, "app.step.kind": kind,
            "app.step.retries": 0, "app.cache.hit": rng.random() < 0.3,
            "app.latency_budget_ms": 30_000, "code.function": f"run_{kind}",
            "code.namespace": "acme_agents.loop", "code.lineno": rng.randint(40, 400),
            "thread.id": rng.randint(1, 64), "thread.name": "MainThread",
            "input.value": self.text(100, 200, f"step {i}:"),
            "output.value": self.text(100, 200, "result:"),
        }
        return SpanSpec(no, parent, f"agent.step {kind}", KIND_INTERNAL, start, end, 1, "",
                        attrs, [], "chain")

    def llm(self, ctx: dict, no: int, parent: int, start: int, end: int) -> SpanSpec:
        rng = self.rng
        model, provider, server, price_in, price_out = rng.choice(MODELS)
        tokens_in, tokens_out = rng.randint(400, 12_000), rng.randint(30, 1_500)
        cached = rng.randint(0, tokens_in // 2)
        retry = rng.random() < 0.03
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "gen_ai.response.model": model,
            "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 4096,
            "gen_ai.request.top_p": 0.95, "gen_ai.response.id": f"msg_{rng.getrandbits(96):024x}",
            "gen_ai.response.finish_reasons": [rng.choice(("end_turn", "tool_use", "stop"))],
            "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
            "gen_ai.usage.cache_read.input_tokens": cached, "server.address": server,
            "server.port": 443, "http.response.status_code": 200, "llm.is_streaming": True,
            **self.common(ctx), "app.prompt_template": "planner-v3", "app.prompt_version": 7,
            "gen_ai.completion": self.text(300, 700),
        }
        events = []
        if retry:
            attrs["retry.attempt"] = 1
            events.append({"name": "retry", "time_unix_nano": start + 1_000_000,
                           "attributes": {"retry.attempt": 1, "error.type": "overloaded_error"}})
        status, message = (2, "upstream 529 overloaded") if rng.random() < 0.02 else (1, "")
        cost = ((tokens_in * Decimal(price_in) + tokens_out * Decimal(price_out)) / 1_000_000)
        return SpanSpec(no, parent, f"chat {model}", KIND_CLIENT, start, end, status, message,
                        attrs, events, "llm", model, tokens_in, tokens_out,
                        cost.quantize(Decimal("0.00000001")), "", retry)

    def tool(self, ctx: dict, no: int, parent: int, start: int, end: int) -> SpanSpec:
        rng = self.rng
        tool = rng.choice(TOOLS)
        args = json.dumps({"path": rng.choice(FILES), "query": self.text(20, 60),
                           "max_results": 20})
        attrs = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": f"toolu_{rng.getrandbits(96):024x}",
            "gen_ai.tool.type": "function", "gen_ai.tool.description": self.text(40, 90),
            "gen_ai.tool.call.arguments": args,
            "gen_ai.tool.call.result": self.text(150, 400, rng.choice(FILES) + ":"),
            "openinference.span.kind": "TOOL", **self.common(ctx),
            "code.filepath": f"acme_agents/tools/{tool}.py", "process.exit_code": 0,
            "app.sandbox.id": f"sbx_{rng.getrandbits(48):012x}",
            "app.sandbox.image": "ghcr.io/acme/sandbox:2025.11", "app.tool.cached": False,
            "app.tool.bytes_read": rng.randint(0, 200_000), "app.tool.timeout_ms": 60_000,
        }
        events, status, message = [], 1, ""
        if rng.random() < 0.08:
            error = rng.choice(ERROR_TYPES)
            status, message = 2, f"{error}: {self.text(20, 60)}"
            attrs["process.exit_code"], attrs["error.type"] = 1, error
            events.append({"name": "exception", "time_unix_nano": end, "attributes": {
                "exception.type": error, "exception.message": message,
                "exception.stacktrace": self.text(400, 800, "Traceback (most recent call last):"),
            }})
        return SpanSpec(no, parent, f"execute_tool {tool}", KIND_INTERNAL, start, end, status,
                        message, attrs, events, "tool", tool_name=tool)

    def trace(self) -> TraceSpec:
        rng = self.rng
        service = rng.randrange(len(SERVICES))
        ctx = {"service": service, "session": f"sess_{rng.getrandbits(64):016x}",
               "conversation": f"conv_{rng.getrandbits(64):016x}",
               "tenant": f"tenant_{rng.randint(1, 400):04d}", "request": str(uuid.UUID(
                   int=rng.getrandbits(128), version=4))}
        start = self.now_ns - rng.randint(0, 3600) * 1_000_000_000
        steps = rng.randint(3, 6)
        spans: list[SpanSpec] = [None]  # type: ignore[list-item]  # the root, filled in last
        t = start + 2_000_000
        for i in range(steps):
            step_no, step_start = len(spans), t
            spans.append(None)  # type: ignore[arg-type]
            t += 500_000
            llm_end = t + rng.randint(300, 9_000) * 1_000_000
            spans.append(self.llm(ctx, len(spans), step_no, t, llm_end))
            t = llm_end
            for _ in range(rng.choice((1, 1, 2))):
                tool_end = t + rng.randint(2, 4_000) * 1_000_000
                spans.append(self.tool(ctx, len(spans), step_no, t, tool_end))
                t = tool_end
            spans[step_no] = self.step(ctx, step_no, 0, i, step_start, t)
            t += 200_000
        spans[0] = self.root(ctx, start, t + 1_000_000, steps)
        if any(s.status == 2 for s in spans[1:]) and rng.random() < 0.5:
            spans[0].status, spans[0].status_message = 2, "agent run failed"
        for s in spans:
            if rng.random() < self.mix.share:
                s.attributes["gen_ai.prompt" if s.span_type == "llm" else "input.value"] = (
                    self.prompt())
        return TraceSpec(service, spans)

    def batch(self, size: int) -> list[TraceSpec]:
        """Whole traces up to ``size`` spans (the last one cut short, as exporters cut them)."""
        traces, n = [], 0
        while n < size:
            trace = self.trace()
            trace.spans = trace.spans[: size - n]  # preorder: a kept span keeps its parent
            traces.append(trace)
            n += len(trace.spans)
        return traces


def make_batches(seed: int, n: int, size: int,
                 mix: PromptMix = STANDARD) -> list[list[TraceSpec]]:
    factory = SpanFactory(seed, mix)
    return [factory.batch(size) for _ in range(n)]


def batch_spans(batch: list[TraceSpec]) -> int:
    return sum(len(t.spans) for t in batch)


class Ids:
    """Random-looking (hash-derived) trace and span ids, distinct for every phase of a run."""

    def __init__(self, nonce: str, phase: str) -> None:
        self.prefix = f"{nonce}|{phase}|".encode()

    def trace(self, batch_no: int, trace_no: int) -> str:
        return hashlib.blake2b(self.prefix + f"{batch_no}|{trace_no}".encode(),
                               digest_size=16).hexdigest()

    @staticmethod
    def spans(trace_id: str, n: int) -> list[str]:
        seed = trace_id.encode()
        return [hashlib.blake2b(seed + str(i).encode(), digest_size=8).hexdigest()
                for i in range(n)]


# --- OTLP protobuf --------------------------------------------------------------------------------

def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def key_values(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def encode_batch(batch: list[TraceSpec], batch_no: int, ids: Ids) -> bytes:
    """An ExportTraceServiceRequest as an OpenTelemetry SDK sends it: one ResourceSpans per
    service, one scope each."""
    by_service: dict[int, list[PbSpan]] = {}
    for trace_no, trace in enumerate(batch):
        trace_hex = ids.trace(batch_no, trace_no)
        trace_id = bytes.fromhex(trace_hex)
        span_ids = [bytes.fromhex(x) for x in Ids.spans(trace_hex, len(trace.spans))]
        out = by_service.setdefault(trace.service, [])
        for s in trace.spans:
            out.append(PbSpan(
                trace_id=trace_id, span_id=span_ids[s.span_no],
                parent_span_id=span_ids[s.parent_no] if s.parent_no >= 0 else b"",
                name=s.name, kind=s.kind, start_time_unix_nano=s.start_ns,
                end_time_unix_nano=s.end_ns, attributes=key_values(s.attributes),
                events=[PbSpan.Event(name=e["name"], time_unix_nano=e["time_unix_nano"],
                                     attributes=key_values(e["attributes"]))
                        for e in s.events],
                status=Status(code=s.status, message=s.status_message),
            ))
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=Resource(attributes=key_values(RESOURCES[service])),
                      scope_spans=[ScopeSpans(scope=InstrumentationScope(**SCOPE), spans=spans)])
        for service, spans in sorted(by_service.items())
    ]).SerializeToString()


def trace_ids_of(batches: list[list[TraceSpec]], ids: Ids) -> list[str]:
    return [ids.trace(b, t) for b, batch in enumerate(batches) for t in range(len(batch))]


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    spans: int = 0
    seconds: float = 0.0
    batch_ms: list[float] = field(default_factory=list, repr=False)
    note: str = ""
    upsert: bool = True  # has the idempotent (ON CONFLICT) semantics of the service

    @property
    def rate(self) -> float:
        return self.spans / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        data = asdict(self)
        data["batch_ms"] = [round(x, 3) for x in self.batch_ms]
        return data


def measure(label: str, step: Callable[[int], int], n: int, *, upsert: bool = True,
            note: str = "") -> Result:
    """Call ``step(i)`` for i in range(n); it returns the spans it wrote. Every call is timed."""
    result = Result(label, note=note, upsert=upsert)
    for i in range(n):
        t0 = time.perf_counter()
        result.spans += step(i)
        elapsed = time.perf_counter() - t0
        result.batch_ms.append(elapsed * 1000)
        result.seconds += elapsed
    return result


# --- raw SQL --------------------------------------------------------------------------------------


def _to_dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class RawRows:
    """``traces_trace`` and ``traces_span`` rows as the service stores them (no Django): the span
    columns with their JSON, and the trace summaries (computed here from the batch)."""

    def __init__(self, batches: list[list[TraceSpec]], ids: Ids, project_id: int, *,
                 sqlite: bool) -> None:
        self.batches, self.ids, self.project_id, self.sqlite = batches, ids, project_id, sqlite

    def _ts(self, dt: datetime) -> Any:
        return dt.replace(tzinfo=None).isoformat(" ") if self.sqlite else dt

    def _num(self, value: Decimal | None) -> Any:
        return str(value) if self.sqlite and value is not None else value

    def traces(self, batch_no: int) -> list[tuple]:
        now = self._ts(datetime.now(UTC))
        false, true = (0, 1) if self.sqlite else (False, True)
        rows = []
        for trace_no, trace in enumerate(self.batches[batch_no]):
            spans = trace.spans
            root = spans[0]
            start = min(s.start_ns for s in spans)
            end = max(s.end_ns for s in spans)
            errors = sum(s.status == 2 for s in spans)
            llm = [s for s in spans if s.span_type == "llm"]
            name, env = RESOURCES[trace.service]["service.name"], RESOURCES[trace.service][
                "deployment.environment.name"]
            rows.append((
                self.ids.trace(batch_no, trace_no), self.project_id, root.name, name, env,
                "error" if errors else "ok", self._ts(_to_dt(start)), self._ts(_to_dt(end)),
                (end - start) / 1e6, len(spans), errors,
                sum(s.input_tokens or 0 for s in llm), sum(s.output_tokens or 0 for s in llm),
                self._num(sum((s.cost_usd or Decimal(0) for s in llm), Decimal(0))),
                json.dumps(sorted({s.tool_name for s in spans if s.tool_name})),
                true if any(s.is_retry for s in spans) else false, false, "", "otlp", now, now,
                json.dumps(sorted({s.model for s in llm})),
            ))
        return rows

    def spans(self, batch_no: int, trace_pks: dict[str, int]) -> list[tuple]:
        now = self._ts(datetime.now(UTC))
        false, true = (0, 1) if self.sqlite else (False, True)
        scope = json.dumps(SCOPE)
        rows = []
        for trace_no, trace in enumerate(self.batches[batch_no]):
            trace_hex = self.ids.trace(batch_no, trace_no)
            trace_pk = trace_pks[trace_hex]
            span_ids = Ids.spans(trace_hex, len(trace.spans))
            resource = RESOURCES[trace.service]
            resource_json = json.dumps(resource)
            for s in trace.spans:
                rows.append((
                    trace_pk, span_ids[s.span_no],
                    span_ids[s.parent_no] if s.parent_no >= 0 else "", s.name,
                    ("unspecified", "internal", "server", "client")[s.kind],
                    resource["service.name"], s.start_ns, s.end_ns, (s.end_ns - s.start_ns) / 1e6,
                    ("unset", "ok", "error")[s.status], s.status_message,
                    json.dumps(s.attributes), json.dumps(s.events), "[]", resource_json, scope,
                    s.span_type, s.model, s.input_tokens, s.output_tokens, self._num(s.cost_usd),
                    s.tool_name, true if s.is_retry else false, false, "", now,
                ))
        return rows


def _upsert_sets(columns: tuple[str, ...], keep: frozenset[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keep)


def _placeholders(columns: tuple[str, ...], json_columns: frozenset[str], mark: str) -> str:
    return ", ".join(f"{mark}::jsonb" if c in json_columns and mark == "%s" else mark
                     for c in columns)


TRACE_UPSERT_PG = (
    f"INSERT INTO traces_trace ({', '.join(TRACE_COLUMNS)}) "
    f"VALUES ({_placeholders(TRACE_COLUMNS, TRACE_JSON, '%s')}) "
    f"ON CONFLICT (trace_id) DO UPDATE SET {_upsert_sets(TRACE_COLUMNS, TRACE_KEEP)} "
    f"RETURNING trace_id, id"
)
SPAN_CONFLICT = (f"ON CONFLICT (trace_id, span_id) DO UPDATE SET "
                 f"{_upsert_sets(SPAN_COLUMNS, frozenset({'trace_id', 'span_id'}))}")
SPAN_INSERT_PG = (f"INSERT INTO traces_span ({', '.join(SPAN_COLUMNS)}) "
                  f"VALUES ({_placeholders(SPAN_COLUMNS, SPAN_JSON, '%s')})")


def raw_postgres(url: str, project_id: int, batches: list, warmup: list, nonce: str,
                 resend: int) -> list[Result]:
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TEMP TABLE span_stage ON COMMIT DELETE ROWS AS "
            f"SELECT {', '.join(SPAN_COLUMNS)} FROM traces_span WITH NO DATA")
        cols = ", ".join(SPAN_COLUMNS)

        def trace_upsert(cur: psycopg.Cursor, rows: list[tuple]) -> dict[str, int]:
            cur.executemany(TRACE_UPSERT_PG, rows, returning=True)
            pks: dict[str, int] = {}
            while True:
                pks.update(cur.fetchall())
                if not cur.nextset():
                    return pks

        def executemany_upsert(raw: RawRows) -> Callable[[int], int]:
            def step(i: int) -> int:
                with conn.transaction(), conn.cursor() as cur:
                    pks = trace_upsert(cur, raw.traces(i))
                    rows = raw.spans(i, pks)
                    cur.executemany(f"{SPAN_INSERT_PG} {SPAN_CONFLICT}", rows)
                return len(rows)
            return step

        def copy_stage_upsert(raw: RawRows) -> Callable[[int], int]:
            def step(i: int) -> int:
                with conn.transaction(), conn.cursor() as cur:
                    pks = trace_upsert(cur, raw.traces(i))
                    rows = raw.spans(i, pks)
                    with cur.copy(f"COPY span_stage ({cols}) FROM STDIN") as cp:
                        for row in rows:
                            cp.write_row(row)
                    cur.execute(f"INSERT INTO traces_span ({cols}) SELECT {cols} FROM span_stage "
                                f"{SPAN_CONFLICT}")
                return len(rows)
            return step

        def copy_plain(raw: RawRows) -> Callable[[int], int]:
            def step(i: int) -> int:
                with conn.transaction(), conn.cursor() as cur:
                    pks = trace_upsert(cur, raw.traces(i))
                    rows = raw.spans(i, pks)
                    with cur.copy(f"COPY traces_span ({cols}) FROM STDIN") as cp:
                        for row in rows:
                            cp.write_row(row)
                return len(rows)
            return step

        for tag, label, make, upsert in (
            ("raw-em", "raw executemany upsert", executemany_upsert, True),
            ("raw-stage", "raw COPY->temp + INSERT upsert", copy_stage_upsert, True),
            ("raw-copy", "raw COPY, no upsert (reference)", copy_plain, False),
        ):
            warm = make(RawRows(warmup, Ids(nonce, tag + "-warm"), project_id, sqlite=False))
            for i in range(len(warmup)):
                warm(i)
            step = make(RawRows(batches, Ids(nonce, tag), project_id, sqlite=False))
            results.append(measure(label, step, len(batches), upsert=upsert))
            if upsert and resend:
                results.append(measure(RESEND_LABEL, step, min(resend, len(batches)),
                                       note="already stored: every row conflicts"))
    return results


def raw_sqlite(path: Path, project_id: int, batches: list, warmup: list, nonce: str,
               resend: int) -> list[Result]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        # What Django's connection sets: settings.py init_command, plus foreign keys on.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        trace_upsert = (
            f"INSERT INTO traces_trace ({', '.join(TRACE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(TRACE_COLUMNS))}) "
            f"ON CONFLICT (trace_id) DO UPDATE SET {_upsert_sets(TRACE_COLUMNS, TRACE_KEEP)}")
        span_insert = (f"INSERT INTO traces_span ({', '.join(SPAN_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(SPAN_COLUMNS))})")

        def make(raw: RawRows, upsert: bool) -> Callable[[int], int]:
            statement = f"{span_insert} {SPAN_CONFLICT}" if upsert else span_insert

            def step(i: int) -> int:
                traces = raw.traces(i)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(trace_upsert, traces)
                    keys = [t[0] for t in traces]
                    pks = dict(conn.execute(
                        f"SELECT trace_id, id FROM traces_trace WHERE trace_id IN "
                        f"({', '.join('?' * len(keys))})", keys).fetchall())
                    rows = raw.spans(i, pks)
                    conn.executemany(statement, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return len(rows)
            return step

        results = []
        for tag, label, upsert in (("raw-em", "raw executemany upsert", True),
                                   ("raw-plain", "raw executemany, no upsert (ref.)", False)):
            warm = make(RawRows(warmup, Ids(nonce, tag + "-warm"), project_id, sqlite=True),
                        upsert)
            for i in range(len(warmup)):
                warm(i)
            step = make(RawRows(batches, Ids(nonce, tag), project_id, sqlite=True), upsert)
            results.append(measure(label, step, len(batches), upsert=upsert))
            if upsert and resend:
                results.append(measure(RESEND_LABEL, step, min(resend, len(batches)),
                                       note="already stored: every row conflicts"))
        return results
    finally:
        conn.close()


# --- HTTP against daphne --------------------------------------------------------------------------


def otlp_post(client: httpx.Client, body: bytes) -> None:
    r = client.post("/otlp/v1/traces", content=body)
    if r.status_code != 200:
        raise RuntimeError(f"POST /otlp/v1/traces -> {r.status_code}: {r.text[:500]}")
    answer = ExportTraceServiceResponse.FromString(r.content)
    if answer.partial_success.rejected_spans:
        raise RuntimeError(f"{answer.partial_success.rejected_spans} spans rejected: "
                           f"{answer.partial_success.error_message}")


def http_phase(base: str, key: str, batches: list, warmup: list, nonce: str,
               resend: int) -> list[Result]:
    """Encoding happens before the clock starts: the figure is the server's, not the client's."""
    bodies = [encode_batch(b, i, Ids(nonce, "http")) for i, b in enumerate(batches)]
    warm = [encode_batch(b, i, Ids(nonce, "http-warm")) for i, b in enumerate(warmup)]
    sizes = [len(b) for b in bodies]
    counts = [batch_spans(b) for b in batches]
    with httpx.Client(base_url=base, timeout=120, headers={
            "Authorization": f"Bearer {key}", "Content-Type": PROTOBUF}) as client:
        for body in warm:
            otlp_post(client, body)

        def step(i: int) -> int:
            otlp_post(client, bodies[i])
            return counts[i]

        note = f"bodies {sum(sizes) / len(sizes) / 1024:,.0f} KB avg, pre-encoded"
        results = [measure("HTTP POST /otlp/v1/traces", step, len(bodies), note=note)]
        if resend:
            results.append(measure(RESEND_LABEL, step, min(resend, len(bodies)),
                                   note="already stored: every span an update"))

        def transport(i: int) -> int:
            # The same body with an unknown key: daphne and Django read all of it, then the
            # view answers 401 before decoding, so this is the cost of moving the bytes.
            r = client.post("/otlp/v1/traces", content=bodies[i],
                            headers={"Authorization": "Bearer not-a-key"})
            if r.status_code != 401:
                raise RuntimeError(f"unauthenticated POST -> {r.status_code}: {r.text[:300]}")
            return counts[i]

        results.append(measure("  transport only (401, body unread)", transport,
                               min(TRANSPORT_BATCHES, len(bodies)),
                               note="HTTP + daphne + Django request, no decode, no DB"))
    return results


@dataclass
class PromptBatches:
    """The long-prompt comparison's workloads: the same spans twice (one seed), 5% of them with
    a 4 KB prompt (``inline``) or a 20 KB one (``blobs``); warm-up batches of each apart, so no
    measured prompt was sent before."""

    inline: list[list[TraceSpec]]
    blobs: list[list[TraceSpec]]
    warm_inline: list[list[TraceSpec]]
    warm_blobs: list[list[TraceSpec]]

    @classmethod
    def make(cls, seed: int, n: int, size: int) -> PromptBatches:
        seed += 1000  # apart from the standard workload's seeds
        return cls(make_batches(seed, n, size, INLINE_MIX), make_batches(seed, n, size, BLOB_MIX),
                   make_batches(seed + 1, 1, size, INLINE_MIX),
                   make_batches(seed + 1, 1, size, BLOB_MIX))


INLINE_LABEL = f"{INLINE_MIX.label} (inline)"
BLOB_LABEL = f"{BLOB_MIX.label} (blobs)"


def long_prompts(batches: list[list[TraceSpec]], mix: PromptMix) -> int:
    """How many spans of ``batches`` carry a prompt of ``mix``'s length."""
    return sum(len(s.attributes.get("gen_ai.prompt") or s.attributes.get("input.value") or "")
               == mix.chars for b in batches for t in b for s in t.spans)


def alternate(label: str, step: Callable[[int, int], int], n: int, *,
              notes: tuple[str, str]) -> list[Result]:
    """``step(k, i)`` for batch ``i`` of workload ``k`` (0 inline, 1 blobs), the two workloads
    taking turns batch by batch: whatever else the machine does weighs on both alike."""
    results = [Result(f"{label}{INLINE_LABEL}", note=notes[0]),
               Result(f"{label}{BLOB_LABEL}", note=notes[1])]
    for i in range(n):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            spans = step(k, i)
            elapsed = time.perf_counter() - t0
            results[k].spans += spans
            results[k].seconds += elapsed
            results[k].batch_ms.append(elapsed * 1000)
    return results


def http_prompts_phase(base: str, key: str, prompts: PromptBatches, nonce: str) -> list[Result]:
    """The long-prompt comparison through one daphne, on one keep-alive connection."""
    workloads = (prompts.inline, prompts.blobs)
    bodies = [[encode_batch(b, i, Ids(nonce, f"http-prompts-{k}")) for i, b in enumerate(w)]
              for k, w in enumerate(workloads)]
    counts = [[batch_spans(b) for b in w] for w in workloads]
    notes = tuple(f"bodies {sum(map(len, x)) / len(x) / 1024:,.0f} KB avg" for x in bodies)
    with httpx.Client(base_url=base, timeout=120, headers={
            "Authorization": f"Bearer {key}", "Content-Type": PROTOBUF}) as client:
        for k, warm in enumerate((prompts.warm_inline, prompts.warm_blobs)):
            for i, b in enumerate(warm):
                otlp_post(client, encode_batch(b, i, Ids(nonce, f"http-prompts-{k}-warm")))

        def step(k: int, i: int) -> int:
            otlp_post(client, bodies[k][i])
            return counts[k][i]

        return alternate("HTTP, ", step, len(prompts.inline), notes=notes)


def http_parallel_phase(bases: list[str], key: str, batches: list, warmup: list,
                        nonce: str) -> Result:
    """The same batches (new ids) through ``len(bases)`` daphne processes at once, one keep-alive
    client thread per process, each sending every n-th batch: n web replicas behind a load
    balancer, as a deployment with more cores than one would run them."""
    n = len(bases)
    bodies = [encode_batch(b, i, Ids(nonce, f"http-x{n}")) for i, b in enumerate(batches)]
    counts = [batch_spans(b) for b in batches]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": PROTOBUF}
    clients = [httpx.Client(base_url=base, timeout=120, headers=headers) for base in bases]
    result = Result(f"HTTP POST, {n} daphne processes",
                    note=f"{n} clients at once, one per process; per-batch times are each "
                         f"request's own")
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            for i in range(k, len(bodies), n):
                t0 = time.perf_counter()
                otlp_post(clients[k], bodies[i])
                result.batch_ms.append((time.perf_counter() - t0) * 1000)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    try:
        for k, client in enumerate(clients):  # every process warm: URL resolver, key cache
            for i, b in enumerate(warmup):
                otlp_post(client, encode_batch(b, i, Ids(nonce, f"http-x{n}-warm{k}")))
        threads = [threading.Thread(target=send, args=(k,)) for k in range(n)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.seconds = time.perf_counter() - t0
    finally:
        for client in clients:
            client.close()
    if errors:
        raise errors[0]
    result.spans = sum(counts)
    return result


# --- the service phase: a subprocess with Django set up -------------------------------------------


def phase_service(args) -> None:
    setup_django()
    from django.db import connection

    from payloads.redaction import get_redactor
    from payloads.store import PayloadBatch
    from runs.models import Project
    from traces.otlp_decode import decode_request
    from traces.services import _prepare, spans_ingest

    project = Project.objects.get(slug="default")
    batches = make_batches(args.seed, args.batches, args.batch)
    warmup = make_batches(args.seed + 1, WARMUP_BATCHES, args.batch)
    bodies = [encode_batch(b, i, Ids(args.nonce, "service")) for i, b in enumerate(batches)]
    warm = [encode_batch(b, i, Ids(args.nonce, "service-warm")) for i, b in enumerate(warmup)]

    def ingest(body: bytes) -> float:
        records = decode_request(body, PROTOBUF).spans  # decoded outside the clock
        t0 = time.perf_counter()
        result = spans_ingest(project=project, records=records)
        elapsed = time.perf_counter() - t0
        if result.accepted != len(records) or result.rejected:
            raise RuntimeError(f"accepted {result.accepted} of {len(records)}: {result.reasons}")
        return elapsed

    for body in warm:
        ingest(body)
    counts = [batch_spans(b) for b in batches]
    service = Result("service spans_ingest")
    for i, body in enumerate(bodies):
        elapsed = ingest(body)
        service.spans += counts[i]
        service.seconds += elapsed
        service.batch_ms.append(elapsed * 1000)
    service.note = "decoded records in, committed"
    decode = measure("  protobuf decode only", lambda i: len(
        decode_request(bodies[i], PROTOBUF).spans), len(bodies), note="no DB")
    redactor = get_redactor(project.redaction_policy or None)
    decoded = [decode_request(body, PROTOBUF).spans for body in bodies]
    def prepare_batch(i: int) -> int:
        # A private helper of the service; the blobs go to a batch that is never stored.
        shared: dict = {}
        blobs = PayloadBatch()
        return len([_prepare(r, redactor, shared, blobs) for r in decoded[i]])

    prepare = measure("  prepare only (redact+GenAI+blobs)", prepare_batch, len(bodies),
                      note="traces.services._prepare, no DB")
    results = [service, decode, prepare]
    prompts = PromptBatches.make(args.seed, args.prompt_batches, args.batch)
    if args.prompt_batches:
        workloads = (prompts.inline, prompts.blobs)
        for k, warm in enumerate((prompts.warm_inline, prompts.warm_blobs)):
            ingest(encode_batch(warm[0], 0, Ids(args.nonce, f"service-prompts-{k}-warm")))
        decoded_prompts = [
            [decode_request(encode_batch(b, i, Ids(args.nonce, f"service-prompts-{k}")),
                            PROTOBUF).spans for i, b in enumerate(w)]
            for k, w in enumerate(workloads)
        ]

        def ingest_prompts(k: int, i: int) -> int:
            records = decoded_prompts[k][i]
            result = spans_ingest(project=project, records=records)
            if result.accepted != len(records) or result.rejected:
                raise RuntimeError(f"accepted {result.accepted} of {len(records)}")
            return len(records)

        results += alternate("service, ", ingest_prompts, args.prompt_batches,
                             notes=("decoded records in", "decoded records in"))
    out: dict[str, Any] = {"results": [r.summary() for r in results]}

    if args.profile:
        texts = []
        body = encode_batch(batches[0], 0, Ids(args.nonce, "profile"))
        records = decode_request(body, PROTOBUF).spans
        prof = cProfile.Profile()
        prof.runcall(spans_ingest, project=project, records=records)
        texts.append(profile_text(prof, f"service spans_ingest, one {len(records)}-span batch "
                                        f"({connection.vendor})", own=15))
        spec = make_batches(args.seed + 1002, 1, args.batch, BLOB_MIX)[0]
        records = decode_request(encode_batch(spec, 0, Ids(args.nonce, "profile-blobs")),
                                 PROTOBUF).spans
        prof = cProfile.Profile()
        prof.runcall(spans_ingest, project=project, records=records)
        texts.append(profile_text(
            prof, f"service spans_ingest, one {len(records)}-span batch, {BLOB_LABEL}, "
                  f"{long_prompts([spec], BLOB_MIX)} blobs ({connection.vendor})", own=15))

        from django.test import Client

        client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['BENCH_API_KEY']}")
        for i, spec in enumerate(make_batches(args.seed + 2, 3, args.batch)):
            body = encode_batch(spec, i, Ids(args.nonce, "profile-view"))
            if i < 2:  # warm: URL resolver, key cache
                assert client.post("/otlp/v1/traces", body, content_type=PROTOBUF).status_code \
                    == 200
        prof = cProfile.Profile()
        response = prof.runcall(client.post, "/otlp/v1/traces", body, content_type=PROTOBUF)
        assert response.status_code == 200, response.content[:500]
        texts.append(profile_text(
            prof, f"OTLP view in-process (django.test.Client, no daphne), one {args.batch}-span "
                  f"batch ({connection.vendor})", own=15))
        out["profile"] = "\n\n".join(texts)
    Path(args.out).write_text(json.dumps(out))


# --- checking what was stored ---------------------------------------------------------------------


def stored_counts(kind: str, db: str, trace_ids: list[str]) -> tuple[int, int, int]:
    """(traces, spans, sum of the traces' span_count) for these trace ids."""
    query = ("SELECT count(DISTINCT t.id), count(s.id), "
             "(SELECT coalesce(sum(span_count), 0) FROM traces_trace WHERE trace_id IN ({ph})) "
             "FROM traces_trace t JOIN traces_span s ON s.trace_id = t.id "
             "WHERE t.trace_id IN ({ph})")
    if kind == "sqlite":
        ph = ", ".join("?" * len(trace_ids))
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute(query.format(ph=ph), trace_ids + trace_ids).fetchone()
    with psycopg.connect(db) as conn:
        q = query.replace("IN ({ph})", "= ANY(%s)")
        return conn.execute(q, (trace_ids, trace_ids)).fetchone()


def stored_blobs(kind: str, db: str, trace_ids: list[str], payload_dir: Path) -> tuple[int, ...]:
    """(payload refs of these traces' spans, distinct blobs they point at, blob rows in all,
    blob files in all)."""
    query = ("SELECT count(*), count(DISTINCT r.blob_id), "
             "(SELECT count(*) FROM payloads_payloadblob) "
             "FROM payloads_payloadref r JOIN traces_span s ON r.span_id = s.id "
             "JOIN traces_trace t ON s.trace_id = t.id WHERE t.trace_id IN ({ph})")
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute(query.format(ph=", ".join("?" * len(trace_ids))),
                               trace_ids).fetchone()
    else:
        with psycopg.connect(db) as conn:
            row = conn.execute(query.replace("IN ({ph})", "= ANY(%s)"), (trace_ids,)).fetchone()
    files = sum(1 for path in (payload_dir / "blobs").rglob("*.zst") if path.is_file())
    return (*row, files)


# --- orchestration --------------------------------------------------------------------------------


def default_project_id(kind: str, db_url: str, tmp: Path) -> int:
    query = "SELECT id FROM runs_project WHERE slug = 'default'"
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp / SQLITE_NAME)) as conn:
            return conn.execute(query).fetchone()[0]
    with psycopg.connect(db_url) as conn:
        return conn.execute(query).fetchone()[0]


@dataclass
class DbReport:
    kind: str
    title: str
    results: list[Result]
    stored: tuple[int, int, int]
    expected: tuple[int, int]
    blobs: tuple[int, ...] = ()  # stored_blobs of the long-prompt comparison's blob workload
    expected_blobs: int = 0
    profile: str = ""


def bench_database(kind: str, args, tmp: Path, redis_url: str | None) -> DbReport:
    batches = make_batches(args.seed, args.batches, args.batch)
    warmup = make_batches(args.seed + 1, WARMUP_BATCHES, args.batch)
    nonce = uuid.uuid4().hex[:12]
    step = f"[{kind}]"
    with bench_db(kind, tmp, redis_url, pg_db=args.pg_db, sqlite_name=SQLITE_NAME,
                  scopes="ingest") as (db_url, env, key):
        project_id = default_project_id(kind, db_url, tmp)
        print(f"{step} raw SQL ...", file=sys.stderr, flush=True)
        if kind == "postgres":
            results = raw_postgres(db_url, project_id, batches, warmup, nonce, args.resend)
        else:
            results = raw_sqlite(tmp / SQLITE_NAME, project_id, batches, warmup, nonce,
                                 args.resend)
        print(f"{step} service (subprocess) ...", file=sys.stderr, flush=True)
        service = run_phase(
            __file__, "service", tmp / f"service-{kind}.json",
            ["--_nonce", nonce, "--batches", str(args.batches), "--batch", str(args.batch),
             "--seed", str(args.seed), "--prompt-batches", str(args.prompt_batches)], env,
            profile=args.profile, timeout=900)
        results += [Result(**r) for r in service["results"]]
        print(f"{step} HTTP ...", file=sys.stderr, flush=True)
        prompts = PromptBatches.make(args.seed, args.prompt_batches, args.batch)
        with daphne_server(env, tmp / f"daphne-{kind}.log") as base:
            results += http_phase(base, key, batches, warmup, nonce, args.resend)
            if args.prompt_batches:
                print(f"{step} HTTP, long prompts ...", file=sys.stderr, flush=True)
                results += http_prompts_phase(base, key, prompts, nonce)
        if args.servers > 1:
            print(f"{step} HTTP, {args.servers} daphne processes ...", file=sys.stderr,
                  flush=True)
            with contextlib.ExitStack() as stack:
                bases = [stack.enter_context(daphne_server(env, tmp / f"daphne-{kind}-{i}.log"))
                         for i in range(args.servers)]
                results.append(http_parallel_phase(bases, key, batches, warmup, nonce))
        trace_ids = trace_ids_of(batches, Ids(nonce, "http"))
        db = str(tmp / SQLITE_NAME) if kind == "sqlite" else db_url
        stored = stored_counts(kind, db, trace_ids)
        blobs = stored_blobs(kind, db, trace_ids_of(prompts.blobs, Ids(nonce, "http-prompts-1")),
                             tmp / "payloads") if args.prompt_batches else ()
    title = db_title(kind, args.pg_db)
    expected = (len(trace_ids), sum(batch_spans(b) for b in batches))
    return DbReport(kind, title, results, stored, expected, blobs,
                    long_prompts(prompts.blobs, BLOB_MIX), service.get("profile", ""))


def workload_stats(batches: list[list[TraceSpec]]) -> str:
    spans = [s for b in batches for t in b for s in t.spans]
    attrs = sum(len(s.attributes) for s in spans) / len(spans)
    prompts = sum(("gen_ai.prompt" in s.attributes or len(str(s.attributes.get(
        "input.value", ""))) >= PROMPT_CHARS) for s in spans) / len(spans)
    size = sum(len(json.dumps(s.attributes)) for s in spans) / len(spans)
    types = {}
    for s in spans:
        types[s.span_type] = types.get(s.span_type, 0) + 1
    mix = ", ".join(f"{k} {v / len(spans):.0%}" for k, v in sorted(types.items()))
    traces = sum(len(b) for b in batches)
    return (f"{len(spans) / traces:.1f} spans/trace ({mix}), {attrs:.1f} attributes/span, "
            f"attributes JSON {size:,.0f} B/span avg, {prompts:.1%} with a 4 KB prompt")


def print_header(args, redis_url: str | None) -> None:
    print_machine("OTLP span ingest", args.db, load_average=True,
                  versions=f", httpx {httpx.__version__}")
    layer = f"Redis ({redis_url})" if redis_url else "in-memory"
    print(f"  server      daphne, DEBUG=0, cache/channel layer {layer}, redaction policy standard")
    print(f"  workload    {args.batches} batches x {args.batch} spans per phase (new trace ids "
          f"every batch and phase), {WARMUP_BATCHES} warm-up batches, re-send of "
          f"{args.resend} stored batches")
    sample = make_batches(args.seed, min(args.batches, 10), args.batch)
    print(f"              {workload_stats(sample)}")
    if args.prompt_batches:
        print(f"  long prompts {args.prompt_batches} batches x {args.batch} spans of each: the "
              f"same spans with {INLINE_MIX.label} (inline) or {BLOB_MIX.label} (over the 8 KB "
              f"inline limit: a blob each), every prompt distinct, batches alternating")
    print(flush=True)


def print_report(report: DbReport) -> list[tuple[str, bool]]:
    raws = [r for r in report.results if r.label.startswith("raw")]
    # The service writes the spans of new traces with a plain COPY (its trace locks rule out
    # conflicts), so it is held to the fastest raw path, upsert or not.
    best_raw = max(raws, key=lambda r: r.rate)
    best_upsert = max((r for r in raws if r.upsert), key=lambda r: r.rate)
    print(f"== {report.title} ==")
    head = (f"  {'path':<37}{'spans':>7}{'seconds':>9}{'spans/s':>10}{'vs raw':>8}"
            f"{'batch p50':>11}{'batch p95':>11}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in report.results:
        ratio = r.rate / best_raw.rate if best_raw.rate else math.nan
        print(f"  {r.label:<37}{r.spans:>7}{r.seconds:>9.2f}{r.rate:>10,.0f}{ratio:>7.2f}x"
              f"{percentile(r.batch_ms, 50):>9.1f}ms{percentile(r.batch_ms, 95):>9.1f}ms"
              + (f"  ({r.note})" if r.note else ""))
    print(f"  (vs raw = rate / {best_raw.label}, the fastest raw path; raw includes building "
          f"the rows: ids, json.dumps, trace summaries)")
    http = next(r for r in report.results if r.label == "HTTP POST /otlp/v1/traces")
    service = next(r for r in report.results if r.label == "service spans_ingest")
    print(f"  service/raw = {service.rate / best_raw.rate:.2f}   HTTP/raw = "
          f"{http.rate / best_raw.rate:.2f}   HTTP/service = {http.rate / service.rate:.2f}   "
          f"HTTP/{best_upsert.label} = {http.rate / best_upsert.rate:.2f}")
    parallel = next((r for r in report.results if r.label.startswith("HTTP POST, ")), None)
    if parallel is not None:
        print(f"  {parallel.label}: {parallel.rate:,.0f} spans/s = "
              f"{parallel.rate / http.rate:.2f}x one process (not what the budget below checks)")
    for where in ("service, ", "HTTP, "):
        inline = next((r for r in report.results if r.label == where + INLINE_LABEL), None)
        blobs = next((r for r in report.results if r.label == where + BLOB_LABEL), None)
        if inline is not None and blobs is not None:
            # Each long prompt costs the difference of LONG_SHARE⁻¹ spans.
            extra = (blobs.seconds / blobs.spans - inline.seconds / inline.spans) / LONG_SHARE
            print(f"  {where}blobs/inline = {blobs.rate:,.0f} / {inline.rate:,.0f} = "
                  f"{blobs.rate / inline.rate:.2f}  (a 20 KB prompt costs {extra * 1000:.2f} ms "
                  f"more than a 4 KB one)")
    traces, spans, summed = report.stored
    want_traces, want_spans = report.expected
    stored_ok = (traces, spans, summed) == (want_traces, want_spans, want_spans)
    checks = [(f"stored after HTTP + re-send: {traces} traces, {spans} spans, span_count sum "
               f"{summed} == sent {want_traces} traces, {want_spans} spans", stored_ok)]
    if report.blobs:
        refs, distinct, rows, files = report.blobs
        want = report.expected_blobs
        checks.append((f"long prompts stored once each: {refs} refs, {distinct} blobs == {want} "
                       f"prompts sent; {rows} blob rows, {files} blob files",
                       refs == distinct == want and rows == files))
    http_inline = next((r for r in report.results if r.label == "HTTP, " + INLINE_LABEL), None)
    http_blobs = next((r for r in report.results if r.label == "HTTP, " + BLOB_LABEL), None)
    if report.kind == "postgres" and http_inline and http_blobs:
        ratio = http_blobs.rate / http_inline.rate
        checks.append((f"HTTP {BLOB_LABEL} / {INLINE_LABEL} = {http_blobs.rate:,.0f} / "
                       f"{http_inline.rate:,.0f} = {ratio:.2f} >= {BUDGET_BLOB_RATIO:.2f}",
                       ratio >= BUDGET_BLOB_RATIO))
    if report.kind == "postgres":
        ratio = http.rate / best_raw.rate
        checks += [
            (f"HTTP {http.rate:,.0f} spans/s >= {BUDGET_HTTP_SPANS_S:,}",
             http.rate >= BUDGET_HTTP_SPANS_S),
            (f"HTTP/raw = {http.rate:,.0f} / {best_raw.rate:,.0f} ({best_raw.label}) = "
             f"{ratio:.2f} >= {BUDGET_RAW_RATIO:.2f}", ratio >= BUDGET_RAW_RATIO),
        ]
    return print_checks(report.kind, checks)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--batches", type=int, default=60, help="measured batches per phase")
    p.add_argument("--batch", type=int, default=512, help="spans per OTLP request")
    p.add_argument("--resend", type=int, default=20,
                   help="already-stored batches sent again (0: skip)")
    p.add_argument("--pg-db", default=PG_BENCH_DB,
                   help="name of the throwaway PostgreSQL database (dropped and created again)")
    p.add_argument("--prompt-batches", type=int, default=30,
                   help="batches of each workload of the long-prompt comparison (0: skip)")
    p.add_argument("--servers", type=int, default=2,
                   help="also time HTTP through this many daphne processes at once, one "
                        "client each (1: skip); the budget is checked on one process")
    add_run_options(p, redis_help="cache and channel layer on Redis", seed=11,
                    profile_help=("also print cProfile of one batch: spans_ingest and the "
                                 "in-process view"))
    p.add_argument("--_nonce", dest="nonce", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 10_000 or not 1 <= args.batches <= 10_000 or args.resend < 0:
        p.error("--batch and --batches must be between 1 and 10000, --resend >= 0")
    if not 0 <= args.prompt_batches <= 10_000:
        p.error("--prompt-batches must be between 0 and 10000")
    if not 1 <= args.servers <= 16:
        p.error("--servers must be between 1 and 16")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "service":
        phase_service(args)
        return 0

    def bench_one(kind: str, tmp: Path, redis_url: str | None) -> list[tuple[str, bool]]:
        report = bench_database(kind, args, tmp, redis_url)
        checks = print_report(report)
        if report.profile:
            print(report.profile, end="\n\n", flush=True)
        return checks

    return run_bench(args, tmp_prefix="tf-bench-ingest-", order=("sqlite", "postgres"),
                     header=print_header, bench_one=bench_one)


if __name__ == "__main__":
    sys.exit(main())
