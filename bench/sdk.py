#!/usr/bin/env python
"""The Python SDK (issue #14): spans/s through ``tracefoundry_sdk`` and its exporter into a live
server, and what an LLM helper call costs the agent, beside a raw OpenTelemetry span.

One daphne server on a fresh database (PostgreSQL ``tracefoundry_bench_sdk``, ``--pg-db``, or a
SQLite file). In this process, two workloads, each run ``--rounds`` times in alternation:

- ``llm``: ``--calls`` LLM calls, each with a distinct prompt and completion (200–400
  characters), model, provider, request parameters and token counts;
- ``llm+tool``: ``--calls`` LLM calls each followed by a tool call with distinct arguments and
  result.

and two ways of recording them:

- **raw OpenTelemetry** (the limit): ``tracer.start_as_current_span`` with the same attributes
  the SDK sets (GenAI names, prompt, completion, tool arguments and result, run id), from a
  TracerProvider of its own with the same BatchSpanProcessor and OTLP/HTTP exporter to the
  same server — no run, no run events;
- **the SDK**: ``tf.trace_agent_run`` around ``tf.llm_call``/``tf.tool_call`` blocks, which also
  create and finish the run and send its ``llm_request``/``llm_response``/``tool_call``/
  ``tool_result`` events in background batches.

For each round: the wall time of the loop in the agent's thread per helper call (µs; the
exporter's and event sender's background threads share the GIL, so their work shows up here
rather than separately), and the total until every span is acknowledged by the server and every
event stored (``flush``), as spans/s. Both processors get a queue large enough for a round
(``OTEL_BSP_MAX_QUEUE_SIZE``), so nothing is dropped; the bench checks that the server holds
every span and event. Exit status: 0 all checks pass, 1 one failed, 2 the bench failed.

    .venv/bin/python bench/sdk.py [--db postgres|sqlite|both] [--calls 2000] [--rounds 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
# This checkout's SDK, whatever the virtualenv has installed.
sys.path.insert(0, str(_HERE.parent / "sdk" / "python" / "src"))

import argparse
import json
import os
import random
import statistics
import time
import urllib.request

os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")

import tracefoundry_sdk as tf
from common import (  # bench/ is not a package: this folder is on sys.path
    Checks,
    bench_db,
    daphne_server,
    db_title,
    print_checks,
    print_machine,
    prose,
    run_bench,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

PG_DB = "tracefoundry_bench_sdk"
WORDS = ("the", "agent", "reads", "repository", "plans", "a", "change", "runs", "tests", "and",
         "reports", "what", "failed", "because", "tool", "returned", "rows", "of", "parser",
         "empty", "input", "handles", "file", "line", "function", "error", "fix", "patch")
WORKLOADS = ("llm", "llm+tool")


def _texts(rng: random.Random, calls: int) -> list[tuple[str, str, dict, str]]:
    """Per call: a prompt, a completion, tool arguments and a tool result, all distinct."""
    return [(prose(rng, WORDS, 200, 400, f"#{i} "), prose(rng, WORDS, 100, 300, f"#{i} "),
             {"path": f"src/module_{i}.py", "line": i}, prose(rng, WORDS, 50, 200, f"#{i} "))
            for i in range(calls)]


# --- the two ways of recording one round -----------------------------------------------------


def round_raw(tracer, provider, texts, with_tools: bool) -> dict:
    run_id = "run_RAWBENCH" + os.urandom(6).hex().upper()
    started = time.perf_counter()
    with tracer.start_as_current_span(
            "invoke_agent bench", kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench",
                        "tracefoundry.run_id": run_id}) as root:
        for prompt, completion, args, result in texts:
            with tracer.start_as_current_span(
                    "chat gpt-4o", kind=SpanKind.CLIENT,
                    attributes={"gen_ai.operation.name": "chat",
                                "gen_ai.request.model": "gpt-4o",
                                "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
                                "tracefoundry.run_id": run_id,
                                "gen_ai.request.temperature": 0.2,
                                "gen_ai.request.max_tokens": 256,
                                "gen_ai.prompt": prompt}) as span:
                span.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
                span.set_attribute("gen_ai.usage.input_tokens", 812)
                span.set_attribute("gen_ai.usage.output_tokens", 64)
                span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
                span.set_attribute("gen_ai.completion", completion)
            if with_tools:
                with tracer.start_as_current_span(
                        "execute_tool read_file", kind=SpanKind.INTERNAL,
                        attributes={"gen_ai.operation.name": "execute_tool",
                                    "gen_ai.tool.name": "read_file",
                                    "tracefoundry.run_id": run_id,
                                    "gen_ai.tool.call.arguments": json.dumps(args)}) as span:
                    span.set_attribute("gen_ai.tool.call.result", result)
        root.set_status(Status(StatusCode.OK))
    loop_s = time.perf_counter() - started
    flushed = provider.force_flush(120_000)
    total_s = time.perf_counter() - started
    trace_id = format(root.get_span_context().trace_id, "032x")
    return {"loop_s": loop_s, "total_s": total_s, "flushed": flushed, "trace_id": trace_id,
            "run_id": None}


def round_sdk(texts, with_tools: bool) -> dict:
    started = time.perf_counter()
    with tf.trace_agent_run("bench.agent", name="bench") as run:
        loop_started = time.perf_counter()  # the run is created: time the calls alone
        for prompt, completion, args, result in texts:
            with tf.llm_call("gpt-4o", provider="openai", prompt=prompt,
                             request_params={"temperature": 0.2, "max_tokens": 256}) as call:
                call.record_response(text=completion, response_model="gpt-4o-2024-08-06",
                                     input_tokens=812, output_tokens=64, finish_reasons=["stop"])
            if with_tools:
                with tf.tool_call("read_file", args=args) as tool:
                    tool.record_result(result)
        loop_s = time.perf_counter() - loop_started
    flushed = tf.flush(120)
    total_s = time.perf_counter() - started
    return {"loop_s": loop_s, "total_s": total_s, "flushed": flushed, "trace_id": run.trace_id,
            "run_id": run.run_id}


def _get(base: str, key: str, path: str) -> dict:
    req = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read())


def _stored(base: str, key: str, result: dict) -> tuple[int, int]:
    """Spans of the round's trace and agent events of its run, as the server has them."""
    spans = _get(base, key, f"/api/v1/traces/{result['trace_id']}")["span_count"]
    events = 0
    if result["run_id"]:
        run = _get(base, key, f"/api/v1/runs/{result['run_id']}")
        events = run["event_count"] - 3  # run.created, run.started, run.succeeded
    return spans, events


# --- one database -------------------------------------------------------------------------------


def bench_one(kind: str, tmp: Path, redis_url: str | None, args) -> Checks:
    print(f"== {db_title(kind, args.pg_db)}", flush=True)
    rng = random.Random(args.seed)
    with bench_db(kind, tmp, redis_url, pg_db=args.pg_db, sqlite_name="sdk.sqlite3",
                  scopes="runs:read,runs:write,ingest") as (_, env, key):
        env.update(TRACEFOUNDRY_THROTTLE_ENQUEUE="1000000/min",
                   TRACEFOUNDRY_THROTTLE_INGEST="1000000/min")
        with daphne_server(env, tmp / f"daphne-{kind}.log") as base:
            tf.configure(api_url=base, api_key=key, service_name="bench-sdk",
                         environment="bench")
            raw_provider = TracerProvider(resource=Resource.create(
                {"service.name": "bench-raw", "deployment.environment": "bench"}),
                shutdown_on_exit=False)
            raw_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
                endpoint=f"{base}/otlp/v1/traces", headers={"Authorization": f"Bearer {key}"})))
            raw_tracer = raw_provider.get_tracer("bench.raw")
            # Warm up both paths (imports, connections, the server's first requests).
            warm = _texts(rng, 50)
            round_raw(raw_tracer, raw_provider, warm, True)
            round_sdk(warm, True)

            results: dict[tuple[str, str], list[dict]] = {}
            for workload in WORKLOADS:
                with_tools = workload == "llm+tool"
                for _ in range(args.rounds):
                    for way in ("raw", "sdk"):
                        texts = _texts(rng, args.calls)
                        result = (round_raw(raw_tracer, raw_provider, texts, with_tools)
                                  if way == "raw" else round_sdk(texts, with_tools))
                        result["spans_expected"] = 1 + args.calls * (2 if with_tools else 1)
                        result["events_expected"] = (
                            args.calls * (4 if with_tools else 2) if way == "sdk" else 0)
                        result["spans"], result["events"] = _stored(base, key, result)
                        results.setdefault((workload, way), []).append(result)
            raw_provider.shutdown()
            stats = tf.stats()
    return report(kind, args, results, stats)


def report(kind: str, args, results: dict, stats: dict) -> Checks:
    print(f"  {args.calls:,} LLM calls per round (llm+tool: and as many tool calls), "
          f"{args.rounds} rounds each, alternating raw and SDK")
    print(f"  {'workload':<9} {'path':<22} {'agent µs/call':>14} {'total µs/call':>14} "
          f"{'spans/s':>10} {'events/s':>9}")
    rows: dict[tuple[str, str], dict] = {}
    for (workload, way), rounds in results.items():
        helper_calls = args.calls * (2 if workload == "llm+tool" else 1)
        per_call = [r["loop_s"] / helper_calls * 1e6 for r in rounds]
        total_per_call = [r["total_s"] / helper_calls * 1e6 for r in rounds]
        spans_s = [r["spans_expected"] / r["total_s"] for r in rounds]
        events_s = [r["events_expected"] / r["total_s"] for r in rounds]
        rows[(workload, way)] = {"per_call": statistics.median(per_call),
                                 "spans_s": statistics.median(spans_s)}
        label = "raw OpenTelemetry span" if way == "raw" else "tracefoundry_sdk helper"
        print(f"  {workload:<9} {label:<22} "
              f"{min(per_call):>7.1f}–{max(per_call):<6.1f} "
              f"{min(total_per_call):>7.0f}–{max(total_per_call):<6.0f} "
              f"{min(spans_s):>5,.0f}–{max(spans_s):<5,.0f}"
              + (f" {min(events_s):>6,.0f}–{max(events_s):,.0f}" if way == "sdk" else ""))
    for workload in WORKLOADS:
        raw, sdk = rows[(workload, "raw")], rows[(workload, "sdk")]
        print(f"  {workload}: the SDK costs the agent {sdk['per_call'] / raw['per_call']:.2f}× a "
              f"raw span per call (medians {sdk['per_call']:.1f} vs {raw['per_call']:.1f} µs), "
              f"and runs at {sdk['spans_s'] / raw['spans_s']:.2f}× its spans/s end to end")
    print(f"  event sender: {stats}")
    every = [r for rounds in results.values() for r in rounds]
    checks = [
        ("every span of every round stored",
         all(r["flushed"] and r["spans"] == r["spans_expected"] for r in every)),
        ("every SDK run event stored, none dropped",
         all(r["events"] == r["events_expected"] for r in every)
         and stats["dropped"] == 0 and stats["rejected"] == 0),
    ]
    return print_checks(kind, checks)


def print_header(args, redis_url) -> None:
    import opentelemetry.sdk.version as otel_version

    print_machine("Python SDK: spans/s and the agent-side cost of a helper call", args.db,
                  load_average=True, versions=f", opentelemetry-sdk {otel_version.__version__}")
    print(f"  OTEL_BSP    max queue {os.environ['OTEL_BSP_MAX_QUEUE_SIZE']}, schedule delay "
          f"{os.environ['OTEL_BSP_SCHEDULE_DELAY']} ms")
    print()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    p.add_argument("--calls", type=int, default=2000, help="LLM calls per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds per workload and path")
    p.add_argument("--pg-db", default=PG_DB,
                   help=f"the throwaway PostgreSQL database (created, then dropped; {PG_DB})")
    p.add_argument("--redis", choices=("auto", "on", "off"), default="off",
                   help="Redis for the channel layer and cache (off: in memory)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daphne log)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(args, tmp_prefix="tf-bench-sdk-", order=("postgres", "sqlite"),
                     header=print_header,
                     bench_one=lambda kind, tmp, redis_url: bench_one(kind, tmp, redis_url,
                                                                      args))


if __name__ == "__main__":
    sys.exit(main())
