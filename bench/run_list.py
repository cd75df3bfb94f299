#!/usr/bin/env python
"""Run list latency with a million run events (PRODUCT.md §14, "Run list").

Loads a fresh database (PostgreSQL ``tracefoundry_bench_run_list`` by default, or a temp SQLite
file) with ``--events`` run events (default 1,000,000) over about ``--runs`` runs (default 50,000),
written directly as ``runs_run`` rows (with their projection summary), ``runs_step`` rows and
``runs_runevent`` rows (psycopg COPY; sqlite3 ``executemany``), never through HTTP. Then, against
a real daphne server (DEBUG=0) on one keep-alive connection with a ``runs:read`` key, it measures
p50/p95 of ``GET /api/v1/runs?limit=50``:

- unfiltered, with every ordering the API allows (created_at, updated_at, event_count,
  error_count; ascending and descending);
- with each filter (project, state, kind, since/before, q, trace_id), on common and on rare or
  absent values, and a few combinations;
- following the ``next`` cursor for several pages;

and of ``GET /api/v1/runs/{id}/events?limit=100`` (a run's event stream read) for a run with
many events: the first page, ``after_id`` in the middle and at the end, ``types``, ``level`` and
``step_id`` filters, and a walk following ``next_after_id``.

Budget: p95 <= 100 ms for every query. For every case over budget the script prints the SQL's
plan (PostgreSQL: EXPLAIN (ANALYZE, BUFFERS); SQLite: EXPLAIN QUERY PLAN) and an index that would
serve it. Exit status: 0 all budgets pass, 1 a budget failed, 2 the bench failed.

    .venv/bin/python bench/run_list.py [--db postgres|sqlite|both] [--events N] [--runs N]
        [--requests 50] [--pages 10] [--walks 5] [--explain failed|all|none] [--profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` (psycopg, concurrent.futures) would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import contextlib
import heapq
import json
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import list_latency  # bench/ is not a package: this folder is on sys.path
import psycopg
from common import prose
from list_latency import COPY_ESCAPES, COPY_NULL, PAGE_SIZE, WARMUP_REQUESTS, copy_text, weighted
from psycopg import sql

PG_BENCH_DB = "tracefoundry_bench_run_list"
SQLITE_NAME = "bench-run-list.sqlite3"
DEFAULT_EVENTS = 1_000_000
DEFAULT_RUNS = 50_000
OTHER_PROJECT_SHARE = 0.10  # runs of a second project, which the key must not see
DAYS = 7
EVENT_PAGE_SIZE = 100
BUDGET_P95_MS = 100.0
LIST_PATH = "/api/v1/runs"
GROUPS = (("unfiltered", "run list unfiltered (orderings, cursor pages)"),
          ("filtered", "run list filtered (filters, combinations, cursor pages)"),
          ("events", "run events (GET /runs/{id}/events: paging, filters)"))

RUN_COLUMNS = (
    "id", "project_id", "kind", "name", "input", "state", "idempotency_key",
    "request_fingerprint", "attempt", "max_attempts", "run_after", "claimed_by", "claimed_at",
    "heartbeat_at", "cancel_requested_at", "started_at", "finished_at", "created_at",
    "updated_at", "output_ref", "error", "correlation_id", "trace_id", "steps_total",
    "steps_completed", "event_count", "error_count", "dropped_event_count", "latest_event_at",
)
STEP_COLUMNS = ("id", "run_id", "name", "node_ref", "position", "state", "started_at",
                "finished_at", "error", "created_at")
EVENT_COLUMNS = (  # runs/event_store.py COLUMNS
    "id", "event_id", "run_id", "step_id", "seq", "type", "level", "source", "created_at",
    "correlation_id", "causation_id", "payload", "payload_bytes", "truncated", "late",
)

# --- what the runs look like ------------------------------------------------------------------

# (kind, weight)
KINDS = (("agent.code_fix", 34), ("agent.support_triage", 28), ("research.web", 14),
         ("eval.batch", 10), ("docs.index", 8), ("billing.reconcile", 4), ("system.noop", 2))
# (state, weight); running and queued runs are recent (the last 3 hours / the last hour)
STATES = (("succeeded", 85), ("failed", 7), ("canceled", 3), ("running", 2.5),
          ("queued", 1.5))
EARLY_CANCEL_SHARE = 0.3  # canceled runs canceled while still queued (2 events)
RETRY_SHARE = 0.04  # finished runs whose first attempt went back to the queue (run.retrying)
# agent event types and their shares (as bench/events_append.py sends them)
AGENT_TYPES = (("log", 46), ("tool_call", 13), ("tool_result", 13), ("llm_request", 7),
               ("llm_response", 7), ("progress", 14))
STEP_NAMES = ("plan", "read context", "edit files", "run tests", "review", "summarize")
TOPICS = ("refund request", "shipping address change", "invoice copy", "password reset",
          "order status", "cancel subscription", "damaged item", "priority escalation")
RESEARCH = ("vector databases", "competitor pricing", "EU AI act summary", "OTLP exporters",
            "postgres partitioning", "LLM eval methods", "rate limit designs")
SUITES = ("swe-lite", "support-qa", "tool-use", "long-context", "safety")
MODELS = ("claude-sonnet-4-5", "gpt-4.1-mini", "gpt-4o", "claude-3-5-haiku-latest")
TOOLS = ("read_file", "grep", "run_tests", "apply_patch", "web_search", "http_get", "sql_query",
         "lookup_order", "send_email_draft", "shell")
FILES = ("src/shop/orders.py", "src/shop/models.py", "tests/test_orders.py", "src/shop/api.py",
         "tests/test_refunds.py", "docs/billing.md", "src/shop/payments/stripe.py")
MODULES = ("agent.loop", "agent.tools", "httpx", "shop.orders", "runner", "llm.client")
_PROSE = ("the agent reads the failing test and checks the fixture before it patches the model "
          "because the migration adds a nullable column customer order invoice refund shipping "
          "address ticket priority escalation policy knowledge base article")
_WORDS = tuple(_PROSE.split())
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
SECOND = 1_000_000  # times are integer microseconds since the epoch

AGENT = ""  # a script slot for an agent event (its type is drawn from AGENT_TYPES)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class RunPlan:
    created: int  # µs since the epoch
    state: str
    project_id: int
    kind: int
    n_events: int
    wait: int = 0  # queued -> started, µs
    duration: int = 0  # started -> finished (or -> now when running), µs
    big: bool = False
    id: str = ""
    name: str = ""
    # the projection summary, filled in while the events are generated
    attempt: int = 0
    started: int | None = None
    finished: int | None = None
    claimed: int | None = None
    heartbeat: int | None = None
    cancel_requested: int | None = None
    latest: int = 0
    steps_total: int = 0
    steps_completed: int = 0
    error_count: int = 0
    error: str = ""
    output_ref: str = ""
    claimed_by: str = ""
    correlation_id: str = ""
    step_ids: list[str] = field(default_factory=list)
    event_ids: list[int] | None = None  # the big runs' event ids (for the paging cases)


class DataGen:
    """Deterministic runs (planned in memory) and their events (streamed in id order, which is
    time order across runs, as concurrent runs interleave in a real stream)."""

    def __init__(self, seed: int, n_events: int, n_runs: int, now: datetime,
                 projects: tuple[int, int]) -> None:
        self.rng = random.Random(seed)
        self.now_dt = now
        self.now = int((now - EPOCH) / timedelta(microseconds=1))
        self.projects = projects
        self.n_events = n_events
        self.pools = self._pools()
        self.type_draw = [name for name, weight in AGENT_TYPES for _ in range(weight)]
        self.inputs = [self._input(k) for k in range(len(KINDS)) for _ in range(50)]
        self.runs = self._plans(n_runs)
        self.steps: list[tuple] = []  # runs_step rows, filled by events()
        self.n_rows = 0
        self.sample_trace_id = self.sample_idempotency_key = ""  # read back after loading

    # -- small helpers --

    def _text(self, lo: int, hi: int, prefix: str = "") -> str:
        return prose(self.rng, _WORDS, lo, hi, prefix)

    def _ulid(self, us: int, prefix: str) -> str:
        value = (us // 1000) << 80 | self.rng.getrandbits(80)
        return prefix + "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))

    def _uuid_hex(self) -> str:
        bits = self.rng.getrandbits(128)
        bits = (bits & ~(0xF << 76) | 0x4 << 76) & ~(0x3 << 62) | 0x2 << 62  # version 4
        return f"{bits:032x}"

    # -- payload pools: small JSON payloads like the ones agents send --

    def _pools(self) -> dict[str, list[tuple[str, str, int]]]:
        """{type: [(payload JSON, level, payload_bytes)]}"""
        rng = self.rng
        pools: dict[str, list[tuple[str, str, int]]] = {}

        def add(kind: str, payload: dict, level: str = "info") -> None:
            text = _dumps(payload)
            pools.setdefault(kind, []).append((text, level, len(text.encode("utf-8"))))

        for _ in range(400):
            style = rng.random()
            if style < 0.4:
                head = (f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                        f"{rng.randint(0, 59):02d} INFO {rng.choice(MODULES)} -")
            elif style < 0.7:
                head = (f"tests/test_{rng.choice(_WORDS)}.py::test_{rng.choice(_WORDS)} PASSED "
                        f"[{rng.randint(1, 100):3d}%]")
            else:
                head = f"GET https://api.example.com/v1/orders -> 200 in {rng.randint(3, 900)} ms"
            roll = rng.random()
            if roll < 0.01:
                add("log", {"stream": "stderr", "text": "ERROR " + self._text(80, 160, head)},
                    "error")
            elif roll < 0.14:
                add("log", {"stream": "stderr", "text": self._text(100, 200, head)}, "warn")
            elif roll < 0.17:
                add("log", {"stream": "stdout", "text": self._text(60, 120, head)}, "debug")
            else:
                add("log", {"stream": "stdout", "text": self._text(100, 200, head)})
            tool = rng.choice(TOOLS)
            add("tool_call", {"tool": tool, "args": {"path": rng.choice(FILES),
                                                     "pattern": rng.choice(_WORDS)}})
            ok = rng.random() > 0.1
            add("tool_result", {"tool": tool, "ok": ok, "exit_code": 0 if ok else 1,
                                "duration_ms": rng.randint(2, 4000),
                                "output": self._text(100, 250, rng.choice(FILES) + ":")},
                "info" if ok else "warn")
            add("llm_request", {"model": rng.choice(MODELS), "max_tokens": 4096,
                                "temperature": 0.2, "messages": [
                                    {"role": "system", "content": self._text(60, 120)},
                                    {"role": "user", "content": self._text(150, 300)}]})
            add("llm_response", {"model": rng.choice(MODELS), "text": self._text(150, 350),
                                 "stop_reason": "end_turn",
                                 "usage": {"input_tokens": rng.randint(500, 9000),
                                           "output_tokens": rng.randint(50, 900)},
                                 "latency_ms": rng.randint(300, 9000)})
            total = rng.randint(5, 40)
            done = rng.randint(0, total)
            add("progress", {"completed": done, "total": total,
                             "message": f"running step {done}/{total}"})
            error = (f"{rng.choice(('RuntimeError', 'TimeoutError', 'ValueError'))}: tool "
                     f"{tool} failed: exit status 1")
            add("error", {"message": error, "stack": "Traceback (most recent call last):\n"
                          f'  File "{rng.choice(FILES)}", line {rng.randint(10, 400)}, in run\n'
                          f"{error}"}, "error")
        return pools

    def _input(self, kind: int) -> str:
        rng = self.rng
        name = KINDS[kind][0]
        if name == "agent.code_fix":
            value: dict = {"repo": "acme/shop", "branch": f"fix/{rng.choice(_WORDS)}",
                           "test": rng.choice(FILES), "instructions": self._text(60, 200)}
        elif name == "agent.support_triage":
            value = {"ticket": rng.randint(10000, 99999), "channel": "email",
                     "subject": rng.choice(TOPICS), "body": self._text(100, 300)}
        elif name == "research.web":
            value = {"question": f"What changed in {rng.choice(RESEARCH)}?", "max_sources": 8}
        elif name == "eval.batch":
            value = {"suite": rng.choice(SUITES), "model": rng.choice(MODELS), "cases": 200}
        else:
            value = {"path": rng.choice(FILES), "full": rng.random() < 0.1}
        return _dumps(value)

    def _name(self, kind: int) -> str:
        rng = self.rng
        name = KINDS[kind][0]
        if name == "agent.code_fix":
            return f"fix {rng.choice(FILES)}::test_{rng.choice(_WORDS)}_{rng.choice(_WORDS)}"
        if name == "agent.support_triage":
            return f"ticket #{rng.randint(10000, 99999)}: {rng.choice(TOPICS)}"
        if name == "research.web":
            return f"research {rng.choice(RESEARCH)}"
        if name == "eval.batch":
            return f"eval {rng.choice(SUITES)} nightly"
        if name == "docs.index":
            return f"index {rng.choice(FILES)}"
        if name == "billing.reconcile":
            return f"reconcile invoices {rng.randint(2024, 2026)}-{rng.randint(1, 12):02d}"
        return ""

    # -- planning the runs --

    def _plans(self, n_runs: int) -> list[RunPlan]:
        rng = self.rng
        now, week = self.now, DAYS * 86400 * SECOND
        big_sizes = [min(20_000, self.n_events // 50), self.n_events // 200,
                     self.n_events // 200]
        plans: list[RunPlan] = []
        for i in range(n_runs):
            if i < len(big_sizes):  # the runs with many events: succeeded, default project
                plans.append(RunPlan(now - (30 + 20 * i) * 3600 * SECOND, "succeeded",
                                     self.projects[0], 0, big_sizes[i], big=True))
                continue
            state = weighted(rng, STATES)[0]
            span = {"running": 3 * 3600 * SECOND, "queued": 3600 * SECOND}.get(state, week)
            project = (self.projects[1] if rng.random() < OTHER_PROJECT_SHARE
                       else self.projects[0])
            plans.append(RunPlan(now - int(rng.random() * span), state, project,
                                 KINDS.index(weighted(rng, KINDS)), 0))
        # event counts: fixed for queued runs and early cancels, log-normal for the others,
        # scaled so that they add up to exactly n_events
        free = []
        fixed = 0
        for plan in plans:
            if plan.big:
                pass  # sized above
            elif plan.state == "queued":
                plan.n_events = 1
            elif plan.state == "canceled" and rng.random() < EARLY_CANCEL_SHARE:
                plan.n_events = 2
            else:
                plan.n_events = min(400, max(4, int(rng.lognormvariate(math.log(14), 0.75))))
                free.append(plan)
                continue
            fixed += plan.n_events
        room = self.n_events - fixed
        if not free or room < 4 * len(free):
            raise ValueError(f"{self.n_events:,} events are too few for {n_runs:,} runs "
                             f"(at least about {fixed + 4 * len(free):,})")
        factor = room / sum(p.n_events for p in free)
        for plan in free:
            plan.n_events = min(2000, max(4, round(plan.n_events * factor)))
        diff = room - sum(p.n_events for p in free)
        while diff:
            plan = free[rng.randrange(len(free))]
            step = 1 if diff > 0 else -1
            if 4 <= plan.n_events + step <= 2000:
                plan.n_events += step
                diff -= step
        # times: queue wait and duration; finished runs finish before now
        for plan in plans:
            if plan.n_events < 2:
                continue
            plan.wait = int(rng.lognormvariate(math.log(0.4 * SECOND), 1.0))
            if rng.random() < 0.02:
                plan.wait += int(rng.random() * 300 * SECOND)
            gap = SECOND if plan.big else rng.lognormvariate(math.log(2.5 * SECOND), 0.7)
            plan.duration = max(plan.n_events * 1000, int(plan.n_events * gap))
            if plan.state == "canceled" and plan.n_events == 2:
                plan.duration = int(rng.random() * 600 * SECOND)
            latest = now - SECOND - (0 if plan.state == "running" else plan.duration)
            if plan.created + plan.wait > latest:
                plan.created = latest - plan.wait - int(rng.random() * 60 * SECOND)
        plans.sort(key=lambda p: p.created)
        for plan in plans:
            plan.id = self._ulid(plan.created, "run_")
            plan.name = self._name(plan.kind)
        return plans

    # -- the events of one run --

    def _script(self, r: RunPlan) -> list[tuple[str, int]]:
        """The run's events in order: (type, step index or -1); AGENT for an agent event."""
        rng = self.rng
        n = r.n_events
        if r.state == "queued":
            return [("run.created", -1)]
        if r.state == "canceled" and n == 2:
            return [("run.created", -1), ("run.canceled", -1)]
        finished = r.state != "running"
        retry = finished and n >= 12 and not r.big and rng.random() < RETRY_SHARE
        cancel = r.state == "canceled"
        base = 2 + finished + 2 * retry + cancel
        open_last = r.state in ("running", "canceled")
        steps = 6 if r.big else (0 if KINDS[r.kind][0] == "system.noop" else rng.randint(1, 6))

        def cost(s: int) -> int:
            return 3 * s - (1 if open_last and s else 0)

        while steps and base + cost(steps) > n:
            steps -= 1
        agents = n - base - cost(steps)
        first_attempt = agents // 5 if retry else 0
        rest = agents - first_attempt
        cuts = sorted(rng.randint(0, rest) for _ in range(max(steps - 1, 0)))
        chunks = [b - a for a, b in zip([0, *cuts], [*cuts, rest], strict=True)]
        script = [("run.created", -1), ("run.started", -1)]
        script += [(AGENT, -1)] * first_attempt
        if retry:
            script += [("run.retrying", -1), ("run.started", -1)]
        if not steps:
            script += [(AGENT, -1)] * rest
        for j in range(steps):
            script += [("step.created", j), ("step.started", j)] + [(AGENT, j)] * chunks[j]
            if j == steps - 1 and open_last:
                continue
            script.append(("step.failed" if j == steps - 1 and r.state == "failed"
                           else "step.succeeded", j))
        if cancel:
            script += [("run.cancel_requested", -1), ("run.canceled", -1)]
        elif finished:
            script.append((f"run.{r.state}", -1))
        assert len(script) == n, (len(script), n, r)
        return script

    def _times(self, r: RunPlan) -> list[int]:
        n = r.n_events
        if n == 1:
            return [r.created]
        if n == 2:  # canceled while queued
            return [r.created, r.created + r.duration]
        start = r.created + r.wait
        if r.state == "running":
            end = max(start + n, min(start + r.duration,
                                     self.now - int(self.rng.random() * 20 * SECOND)))
            middle = n - 2
        else:
            end = start + r.duration
            middle = n - 3
        randint = self.rng.randint
        times = [r.created, start, *sorted(randint(start, end) for _ in range(max(middle, 0)))]
        if r.state != "running":
            times.append(end)
        return times

    def run_events(self, r: RunPlan) -> list[tuple]:
        """The events of ``r`` as (time µs, event_id hex, step_id, type, level, source,
        correlation_id, causation_id, payload JSON, payload_bytes); fills in its summary and
        appends its steps to ``self.steps``."""
        rng = self.rng
        script = self._script(r)
        times = self._times(r)
        r.correlation_id = f"{rng.getrandbits(128):032x}"
        step_aware = r.big or rng.random() < 0.7  # the agent's SDK tags events with its step
        worker = f"worker-{rng.randint(1, 8)}.prod:{rng.randint(100, 60000)}"
        steps: list[list] = []  # [id, name, position, state, started, finished, error, created]
        pending_calls: list[str] = []
        last_agent = max((i for i, (etype, _j) in enumerate(script) if etype == AGENT),
                         default=-1)
        pools, type_draw = self.pools, self.type_draw
        rows = []
        previous = ""  # the previous lifecycle event's id (a lifecycle event's causation_id)
        errors = 0
        for i, (etype, j) in enumerate(script):
            at = times[i]
            event_id = self._uuid_hex()
            step_id = steps[j][0] if 0 <= j < len(steps) else None
            if etype == AGENT:
                kind = ("error" if r.state == "failed" and i == last_agent
                        else type_draw[rng.randrange(len(type_draw))])
                pool = pools[kind]
                text, level, size = pool[rng.randrange(len(pool))]
                correlation = r.correlation_id
                if kind == "tool_call":
                    correlation = f"call_{rng.getrandbits(64):016x}"
                    pending_calls.append(correlation)
                elif kind == "tool_result" and pending_calls:
                    correlation = pending_calls.pop(0)
                if not step_aware:
                    step_id = None
                if level == "error":
                    errors += 1
                rows.append((at, event_id, step_id, kind, level, "agent", correlation, "",
                             text, size))
                continue
            level = "info"
            source = "server"
            if etype == "run.created":
                payload: dict[str, Any] = {"kind": KINDS[r.kind][0], "name": r.name,
                                           "max_attempts": 3, "run_after": None}
                source = "api" if rng.random() < 0.7 else "server"
            elif etype == "run.started":
                r.attempt += 1
                r.claimed = at
                r.started = r.started or at
                payload = {"attempt": r.attempt, "worker_id": worker}
            elif etype == "run.retrying":
                r.error = "TimeoutError: llm request timed out after 120 s"
                payload = {"error": r.error, "retryable": True, "attempt": r.attempt,
                           "run_after": _iso(at + 2 * SECOND)}
                level = "warn"
            elif etype == "step.created":
                step_id = self._ulid(at, "step_")
                steps.append([step_id, STEP_NAMES[j % len(STEP_NAMES)], j, "pending", None,
                              None, "", at])
                payload = {"step_id": step_id, "name": steps[j][1], "node_ref": "",
                           "position": j}
            elif etype == "step.started":
                steps[j][3:5] = ["running", at]
                payload = {"step_id": step_id}
            elif etype in ("step.succeeded", "step.failed"):
                steps[j][3] = etype[5:]
                steps[j][5] = at
                payload = {"step_id": step_id}
                if etype == "step.failed":
                    steps[j][6] = payload["error"] = "RuntimeError: tests still fail after 3 tries"
                    level = "error"
            elif etype == "run.cancel_requested":
                r.cancel_requested = at
                payload = {"reason": "canceled from the UI"}
                level = "warn"
            else:  # run.succeeded / run.failed / run.canceled: they close the open steps
                r.finished = at
                for step in steps:
                    if step[3] in ("pending", "running"):
                        step[3], step[5] = "canceled", at
                if etype == "run.succeeded":
                    r.output_ref = (f"sha256:{rng.getrandbits(256):064x}"
                                    if rng.random() < 0.5 else "")
                    payload = {"output_ref": r.output_ref}
                elif etype == "run.failed":
                    r.error = ("RuntimeError: tool apply_patch failed: exit status 1\n"
                               "Traceback (most recent call last):\n  File \"agent/loop.py\", "
                               "line 212, in step")
                    payload = {"error": r.error, "retryable": False, "attempt": r.attempt}
                    level = "error"
                else:
                    r.error = ""
                    payload = {"reason": "canceled from the UI", "error": ""}
                    level = "warn"
            if level == "error":
                errors += 1
            text = _dumps(payload)
            rows.append((at, event_id, step_id if etype.startswith("step.") else None, etype,
                         level, source, r.correlation_id, previous, text,
                         len(text.encode("utf-8"))))
            h = event_id
            previous = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        r.error_count = errors
        r.latest = times[-1]
        r.steps_total = len(steps)
        r.steps_completed = sum(1 for s in steps if s[3] not in ("pending", "running"))
        if r.started is not None:
            r.claimed_by = worker
            r.heartbeat = (self.now - int(rng.random() * 10 * SECOND) if r.state == "running"
                           else max(r.claimed or 0, r.latest - int(rng.random() * 10 * SECOND)))
        r.step_ids = [s[0] for s in steps]
        for s in steps:
            self.steps.append((s[0], r.id, s[1], "", s[2], s[3], s[4], s[5], s[6], s[7]))
        return rows

    def events(self) -> Iterator[tuple[int, int, RunPlan, tuple]]:
        """(id, seq, run, row) for every event in time order: the runs' streams merged."""
        heap: list[tuple[int, int, int]] = []
        active: dict[int, list[tuple]] = {}
        runs = self.runs
        next_id = 1

        def emit():
            nonlocal next_id
            _at, ri, pos = heapq.heappop(heap)
            rows = active[ri]
            if pos + 1 < len(rows):
                heapq.heappush(heap, (rows[pos + 1][0], ri, pos + 1))
            else:
                del active[ri]
            if runs[ri].event_ids is not None:
                runs[ri].event_ids.append(next_id)
            next_id += 1
            return next_id - 1, pos + 1, runs[ri], rows[pos]

        for ri, run in enumerate(runs):
            while heap and heap[0][0] < run.created:
                yield emit()
            if run.big:
                run.event_ids = []
            active[ri] = self.run_events(run)
            heapq.heappush(heap, (run.created, ri, 0))
        while heap:
            yield emit()
        self.n_rows = next_id - 1

    def run_row(self, r: RunPlan) -> tuple:
        fingerprint = f"{self.rng.getrandbits(256):064x}"
        key = f"ik_{self.rng.getrandbits(96):024x}" if self.rng.random() < 0.3 else None
        trace = f"{self.rng.getrandbits(128):032x}" if self.rng.random() < 0.6 else ""
        return (r.id, r.project_id, KINDS[r.kind][0], r.name,
                self.inputs[r.kind * 50 + self.rng.randrange(50)], r.state, key, fingerprint,
                r.attempt, 3, None, r.claimed_by, r.claimed, r.heartbeat, r.cancel_requested,
                r.started, r.finished, r.created, r.latest, r.output_ref, r.error,
                r.correlation_id, trace, r.steps_total, r.steps_completed, r.n_events,
                r.error_count, 0, r.latest)


# --- loading ----------------------------------------------------------------------------------


# which columns of RUN_COLUMNS / STEP_COLUMNS hold times (µs since the epoch, or None)
_RUN_TIMES = frozenset(i for i, c in enumerate(RUN_COLUMNS) if c.endswith("_at"))
_STEP_TIMES = frozenset(i for i, c in enumerate(STEP_COLUMNS) if c.endswith("_at"))


def _pg_time(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat(" ")


def _lite_time(us: int) -> str:
    return str(NAIVE_EPOCH + timedelta(microseconds=us))  # what Django's SQLite backend stores


def _with_times(row: tuple, times: frozenset[int], convert) -> tuple:
    return tuple(convert(v) if i in times and v is not None else v for i, v in enumerate(row))


def _event_lines(gen: DataGen) -> Iterator[str]:
    """The events in COPY's text format."""
    for pk, seq, run, (at, event_id, step_id, etype, level, source, corr, caus, text,
                       size) in gen.events():
        if "\\" in text:
            text = text.translate(COPY_ESCAPES)
        yield "\t".join((str(pk), event_id, run.id, step_id or COPY_NULL, str(seq), etype, level,
                         source, _pg_time(at), corr, caus, text, str(size), "f", "f"))


def _tables(gen: DataGen) -> tuple:
    """(table, columns, rows, which columns hold times) of the steps and the runs."""
    return (("runs_step", STEP_COLUMNS, gen.steps, _STEP_TIMES),
            ("runs_run", RUN_COLUMNS, map(gen.run_row, gen.runs), _RUN_TIMES))


def load_postgres(url: str, gen: DataGen) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        list_latency.check_columns(conn, {"runs_run": set(RUN_COLUMNS),
                                          "runs_step": set(STEP_COLUMNS),
                                          "runs_runevent": set(EVENT_COLUMNS)}, "run_list.py")
        with list_latency.load_transaction(conn) as cur:
            # Events go first because generating them yields the run summaries.
            list_latency.copy_lines(cur, "runs_runevent", EVENT_COLUMNS, _event_lines(gen))
            for table, columns, rows, times in _tables(gen):
                list_latency.copy_lines(cur, table, columns, (
                    "\t".join(map(copy_text, _with_times(row, times, _pg_time))) for row in rows))
            cur.execute("SELECT setval(pg_get_serial_sequence('runs_runevent', 'id'), "
                        "(SELECT max(id) FROM runs_runevent))")
        for table in ("runs_run", "runs_step", "runs_runevent"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def load_sqlite(path: Path, gen: DataGen) -> None:
    with list_latency.sqlite_load(path) as conn:
        list_latency.insert_rows(conn, "runs_runevent", EVENT_COLUMNS, (
            (pk, event_id, run.id, step_id, seq, etype, level, source, _lite_time(at), corr, caus,
             text, size, 0, 0)
            for pk, seq, run, (at, event_id, step_id, etype, level, source, corr, caus, text,
                               size) in gen.events()))
        for table, columns, rows, times in _tables(gen):
            list_latency.insert_rows(conn, table, columns,
                                     (_with_times(row, times, _lite_time) for row in rows))


# --- the requests -----------------------------------------------------------------------------


@dataclass
class Case(list_latency.Case):
    """A case of the run list, or of a run's event stream (``base`` ends with ``/events``)."""

    @property
    def events(self) -> bool:
        return self.base.endswith("/events")

    @property
    def table(self) -> str:
        return "runs_runevent" if self.events else "runs_run"

    @property
    def limit(self) -> int:
        return EVENT_PAGE_SIZE if self.events else PAGE_SIZE


def _window(gen: DataGen, hours: int, days_ago: int = 2) -> dict[str, str]:
    end = gen.now_dt - timedelta(days=days_ago)
    return {"since": (end - timedelta(hours=hours)).isoformat(), "before": end.isoformat()}


def build_cases(gen: DataGen) -> list[Case]:
    """Filter values drawn from the loaded data: common ones, and rare or absent ones (the hard
    case for a newest-first index scan that has to skip most rows)."""
    visible = [r for r in gen.runs if r.project_id == gen.projects[0]]
    sample = visible[len(visible) // 3]
    big = max((r for r in gen.runs if r.big), key=lambda r: r.n_events)
    ids = big.event_ids or [0]
    typical = next(r for r in visible[len(visible) // 2:]
                   if r.state == "succeeded" and 15 <= r.n_events <= 30)
    trace_id = gen.sample_trace_id
    key = gen.sample_idempotency_key
    sort_idx = {f: f"CREATE INDEX ON runs_run (project_id, {f} DESC)  -- serves both directions"
                for f in ("updated_at", "event_count", "error_count")}
    trgm = ("CREATE EXTENSION pg_trgm; CREATE INDEX ON runs_run USING gin "
            "(upper(name::text) gin_trgm_ops), and the same on kind: q ORs name/kind ILIKE with "
            "id/correlation_id/idempotency_key equality, so every index must serve its arm "
            "(BitmapOr)")
    level_idx = "CREATE INDEX ON runs_runevent (run_id, level, id)"
    # django-filter's MultipleChoiceFilter is distinct=True by default: the page query becomes
    # SELECT DISTINCT over every column, which sorts all matching runs before its LIMIT
    distinct = ("no index serves SELECT DISTINCT: state = MultipleChoiceFilter(..., "
                "distinct=False) in runs/api/filters.py (runs_run has no join that could "
                "duplicate rows) lets the (state, -created_at) / (project, -created_at) index "
                "answer with a LIMIT")
    ev = f"{LIST_PATH}/{big.id}/events"
    code_fix, noop = KINDS[0][0], KINDS[-1][0]
    cases = [
        Case("unfiltered, ordering=-created_at (default)", LIST_PATH, {}, "unfiltered"),
        Case("unfiltered, ordering=created_at", LIST_PATH, {"ordering": "created_at"},
             "unfiltered"),
    ]
    for name in ("updated_at", "event_count", "error_count"):
        for sign in ("-", ""):
            cases.append(Case(f"unfiltered, ordering={sign}{name}", LIST_PATH,
                              {"ordering": f"{sign}{name}"}, "unfiltered", sort_idx[name]))
    cases += [
        Case("project=default", LIST_PATH, {"project": "default"}, "filtered"),
        Case("state=succeeded (85%)", LIST_PATH, {"state": "succeeded"}, "filtered", distinct),
        Case("state=failed (7%)", LIST_PATH, {"state": "failed"}, "filtered", distinct),
        Case("state=queued (1.5%)", LIST_PATH, {"state": "queued"}, "filtered", distinct),
        Case("state=running,queued", LIST_PATH, {"state": "running,queued"}, "filtered", distinct),
        Case(f"kind={code_fix} (34%)", LIST_PATH, {"kind": code_fix}, "filtered"),
        Case(f"kind={noop} (2%)", LIST_PATH, {"kind": noop}, "filtered"),
        Case("kind (no match)", LIST_PATH, {"kind": "no.such.kind"}, "filtered"),
        Case("since/before (6 h window)", LIST_PATH, _window(gen, 6), "filtered"),
        Case("since (last 24 h)", LIST_PATH,
             {"since": (gen.now_dt - timedelta(days=1)).isoformat()}, "filtered"),
        Case("q (name part: refund)", LIST_PATH, {"q": "refund"}, "filtered", trgm),
        Case("q (kind part: code_fix)", LIST_PATH, {"q": "code_fix"}, "filtered", trgm),
        Case("q (no match)", LIST_PATH, {"q": "no-such-run"}, "filtered", trgm),
        Case("q (a run id)", LIST_PATH, {"q": sample.id}, "filtered", trgm),
        Case("q (a correlation id)", LIST_PATH, {"q": sample.correlation_id}, "filtered", trgm),
        Case("q (an idempotency key)", LIST_PATH, {"q": key}, "filtered", trgm),
        Case("trace_id", LIST_PATH, {"trace_id": trace_id}, "filtered"),
        Case("state=failed, ordering=-error_count", LIST_PATH,
             {"state": "failed", "ordering": "-error_count"}, "filtered", distinct),
        Case("state=succeeded, ordering=-event_count", LIST_PATH,
             {"state": "succeeded", "ordering": "-event_count"}, "filtered",
             f"{distinct}; then CREATE INDEX ON runs_run (project_id, event_count DESC)"),
        Case(f"kind={code_fix} + state=failed", LIST_PATH,
             {"kind": code_fix, "state": "failed"}, "filtered", distinct),
        Case("kind + 24 h window, ordering=-updated_at", LIST_PATH,
             {"kind": KINDS[1][0], **_window(gen, 24), "ordering": "-updated_at"}, "filtered"),
        Case("q=refund + state=succeeded", LIST_PATH, {"q": "refund", "state": "succeeded"},
             "filtered", f"{distinct}; {trgm}"),
        Case(f"events: first page ({big.n_events:,}-event run)", ev, {}, "events"),
        Case("events: after_id in the middle", ev, {"after_id": str(ids[len(ids) // 2])},
             "events"),
        Case("events: after_id at the end (tail poll)", ev, {"after_id": str(ids[-1])},
             "events"),
        Case("events: types=tool_call,tool_result", ev, {"types": "tool_call,tool_result"},
             "events"),
        Case("events: types=llm_response (7%)", ev, {"types": "llm_response"}, "events"),
        Case("events: types=run.succeeded (one event)", ev, {"types": "run.succeeded"},
             "events"),
        Case("events: level=error (rare)", ev, {"level": "error"}, "events", level_idx),
        Case("events: level=warn,error", ev, {"level": "warn,error"}, "events", level_idx),
        Case("events: types=log + level=warn", ev, {"types": "log", "level": "warn"}, "events"),
        Case("events: step_id (4th of 6 steps)", ev,
             {"step_id": big.step_ids[min(3, len(big.step_ids) - 1)]}, "events",
             "CREATE INDEX ON runs_runevent (step_id, id)  -- the FK index has no id order"),
        Case(f"events: a typical run ({typical.n_events} events)",
             f"{LIST_PATH}/{typical.id}/events", {}, "events"),
    ]
    return cases


CURSOR_CASES = ("unfiltered, ordering=-created_at (default)", "unfiltered, ordering=-event_count",
                "unfiltered, ordering=error_count", "state=failed (7%)",
                "kind + 24 h window, ordering=-updated_at")
EVENT_WALK_CASES = ("events: first page", "events: types=tool_call,tool_result")


def _next_path(case: Case, body: bytes) -> tuple[int, str | None]:
    """The page's row count and the path of the next page (None: the last page)."""
    data = json.loads(body)
    if case.events:
        n = len(data["events"])
        if n < EVENT_PAGE_SIZE:
            return n, None
        params = {**case.params, "after_id": str(data["next_after_id"])}
        return n, Case(case.label, case.base, params, case.group).path
    return list_latency.next_link(data)


def _walk_label(case: Case) -> str | None:
    """The label of a walked case's cursor walk (the run list follows ``next``, the events
    ``next_after_id``); None for the other cases."""
    if case.label not in CURSOR_CASES and not any(
            case.label.startswith(prefix) for prefix in EVENT_WALK_CASES):
        return None
    return case.label.split(" (")[0] if case.events else case.label


def _large_sql(statement: str) -> str:
    return ("its SELECT DISTINCT sorts every matching row before the LIMIT"
            if statement.startswith("SELECT DISTINCT") else "an index would help")


def _workload(args) -> str:
    """The header's workload line."""
    return (f"GET {LIST_PATH}?limit={PAGE_SIZE} and GET {LIST_PATH}/{{id}}/events?"
            f"limit={EVENT_PAGE_SIZE}: {args.requests} timed requests per query after "
            f"{WARMUP_REQUESTS} warm-up ones; cursor: {args.walks} walks of {args.pages} next "
            f"pages; runs created over {DAYS} days, ~85% succeeded, "
            f"{OTHER_PROJECT_SHARE:.0%} of runs in another project")


BENCH = list_latency.ListBench(
    script=__file__, title="run list", pg_db=PG_BENCH_DB, sqlite_name=SQLITE_NAME,
    tmp_prefix="tf-bench-run-list-", list_path=LIST_PATH, workload=_workload,
    budgets={group: BUDGET_P95_MS for group, _name in GROUPS}, groups=GROUPS,
    next_page=_next_path, walk_label=_walk_label, table=lambda case: case.table,
    tables_note="runs_run or runs_runevent", width=56, large_sql=_large_sql)


# --- orchestration ----------------------------------------------------------------------------


def samples(kind: str, db_url: str, sqlite_path: Path, project_id: int) -> tuple[str, str]:
    """A trace id and an idempotency key of a visible run, as stored."""
    query = ("SELECT {col} FROM runs_run WHERE project_id = {ph} AND {col} <> '' "
             "ORDER BY created_at LIMIT 1 OFFSET 100")
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(sqlite_path)) as conn:
            return tuple(conn.execute(query.format(col=col, ph="?"), (project_id,)).fetchone()[0]
                         for col in ("trace_id", "idempotency_key"))
    with psycopg.connect(db_url) as conn:
        return tuple(conn.execute(query.format(col=col, ph="%s"), (project_id,)).fetchone()[0]
                     for col in ("trace_id", "idempotency_key"))


def load(kind: str, args, db_url: str, sqlite_path: Path) -> tuple[str, list[Case]]:
    """Fill the fresh database: what was loaded, and the cases drawn from it."""
    n_events = args.events or DEFAULT_EVENTS
    n_runs = args.runs or DEFAULT_RUNS
    t0 = time.perf_counter()
    gen = DataGen(args.seed, n_events, n_runs, datetime.now(UTC),
                  list_latency.projects(kind, db_url, sqlite_path))
    print(f"[{kind}] loading {n_events:,} events in {len(gen.runs):,} runs ...",
          file=sys.stderr, flush=True)
    if kind == "postgres":
        load_postgres(db_url, gen)
    else:
        load_sqlite(sqlite_path, gen)
    assert gen.n_rows == n_events, (gen.n_rows, n_events)
    gen.sample_trace_id, gen.sample_idempotency_key = samples(kind, db_url, sqlite_path,
                                                              gen.projects[0])
    states = {s: sum(r.state == s for r in gen.runs) for s, _w in STATES}
    sizes = list_latency.table_sizes(kind, db_url, sqlite_path,
                                     ("runs_run", "runs_runevent", "runs_step"))
    loaded = (f"{n_events:,} events in {len(gen.runs):,} runs "
              f"({sum(r.project_id == gen.projects[0] for r in gen.runs):,} visible to the "
              f"key's project; {', '.join(f'{s} {n:,}' for s, n in states.items())}), "
              f"{len(gen.steps):,} steps, loaded in {time.perf_counter() - t0:.1f} s "
              f"(COPY/executemany, then ANALYZE); {sizes}")
    return loaded, build_cases(gen)


def parse_args(argv: list[str] | None = None):
    p = list_latency.parser(__doc__)
    p.add_argument("--events", type=int, default=0,
                   help=f"run events to load (default {DEFAULT_EVENTS:,})")
    p.add_argument("--runs", type=int, default=0,
                   help=f"runs they belong to (about; default {DEFAULT_RUNS:,})")
    list_latency.add_options(p, walks_help="cursor walks per case", seed=7,
                             profile_help="also print a cProfile of one run list and one event "
                                          "page request, in-process")
    args = p.parse_args(argv)
    if args.events < 0 or args.runs < 0 or args.requests < 1 or args.pages < 1 or args.walks < 1:
        p.error("--events and --runs must be >= 0 (0: default); --requests, --pages and "
                "--walks >= 1")
    events, runs = args.events or DEFAULT_EVENTS, args.runs or DEFAULT_RUNS
    if runs < 100:
        p.error("--runs must be at least 100")
    if events < 8 * runs:
        p.error(f"--events must be at least 8 x --runs ({8 * runs:,}): the runs need their "
                f"lifecycle events")
    return args


def main(argv: list[str] | None = None) -> int:
    return list_latency.main(parse_args(argv), BENCH, load)


if __name__ == "__main__":
    sys.exit(main())
