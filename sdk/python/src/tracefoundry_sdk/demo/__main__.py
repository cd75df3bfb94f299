"""``python -m tracefoundry_sdk.demo [--count N] [--seed S] [--scenario NAME] [--json]``:
send N demo traces and their runs to the server of ``TRACEFOUNDRY_API_URL``, with the key of
``TRACEFOUNDRY_API_KEY`` (scopes ``runs:write`` and ``ingest``).

The demo is the application here: it sets up its own OpenTelemetry TracerProvider — seeded ids,
the SDK's OTLP destination — as the global one, and the SDK sends its spans through it (the SDK
keeps an application's provider). A progress line on a terminal, nothing on success in a script;
``--json`` prints what was sent. Exit status 0 when every run was created and every span and run
event was delivered; 1 otherwise; 2 for bad arguments or a missing server URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tracefoundry_sdk as tf
from tracefoundry_sdk import config as sdk_config
from tracefoundry_sdk.demo.agent import RUN_KIND, SCENARIOS, DemoTrace, run_demo
from tracefoundry_sdk.demo.ids import SeededIdGenerator
from tracefoundry_sdk.tracing import SizeCappedExporter

SERVICE_NAME = "tracefoundry-demo-agent"
ENVIRONMENT = "demo"


class _NotResent(logging.Filter):
    """Drops the SDK's warning about a run already finished: re-sending a seed does that to
    every run, and the summary counts them instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("tracefoundry_sdk: run %s is already")


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting the spans it could not deliver."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def tracer_provider(config: sdk_config.Config) -> tuple[TracerProvider, CountingExporter]:
    """The demo's provider: seeded ids, and spans to where the SDK would send them."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attributes = {"deployment.environment.name": ENVIRONMENT,
                  "deployment.environment": ENVIRONMENT}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    kwargs: dict = {}
    if config.otlp_endpoint:
        kwargs["endpoint"] = config.otlp_endpoint
    if config.otlp_headers:
        kwargs["headers"] = dict(config.otlp_headers)
    # The SDK's size cap: a batch of long prompts goes as several requests, not one the server
    # refuses for its size.
    exporter = CountingExporter(SizeCappedExporter(OTLPSpanExporter(**kwargs)))
    provider = TracerProvider(resource=Resource.create(attributes),
                              id_generator=SeededIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracefoundry_sdk.demo",
        description="Send seeded demo agent traces and runs to a TraceFoundry server "
                    "(TRACEFOUNDRY_API_URL, TRACEFOUNDRY_API_KEY with runs:write and ingest).")
    parser.add_argument("--count", type=int, default=50, help="traces to send (default 50)")
    parser.add_argument("--seed", type=int, default=7, help="the same seed, the same traces "
                        "(default 7)")
    parser.add_argument("--scenario", choices=SCENARIOS,
                        help="only this scenario (default: round-robin over all)")
    parser.add_argument("--kind", default=RUN_KIND, help=f"the runs' kind (default {RUN_KIND})")
    parser.add_argument("--json", action="store_true",
                        help="print the traces sent (index, scenario, run and trace ids) as JSON")
    return parser


class Progress:
    """One line rewritten in place on a terminal; nothing otherwise."""

    def __init__(self, total: int, stream) -> None:  # type: ignore[no-untyped-def]
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()

    def __call__(self, sent: DemoTrace) -> None:
        if self.enabled:
            done = sent.index + 1
            width = 24
            bar = "#" * (done * width // self.total)
            self.stream.write(f"\r[{bar:<{width}}] {done}/{self.total} {sent.scenario:<15}")
            self.stream.flush()

    def finish(self, line: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\033[K{line}\n")
            self.stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.count < 1:
        print("error: --count must be at least 1", file=sys.stderr)
        return 2
    config = sdk_config.load()
    if not config.api_url:
        print("error: set TRACEFOUNDRY_API_URL to the server (e.g. http://127.0.0.1:8000) and "
              "TRACEFOUNDRY_API_KEY to a key with the runs:write and ingest scopes",
              file=sys.stderr)
        return 2
    logging.getLogger("tracefoundry_sdk").addFilter(_NotResent())
    provider, exporter = tracer_provider(config)
    trace.set_tracer_provider(provider)  # before the SDK's first use: it keeps this one
    tf.configure(batch_interval_s=0.2)
    progress = Progress(args.count, sys.stderr)
    traces = run_demo(count=args.count, seed=args.seed, scenario=args.scenario,
                      kind=args.kind, on_trace=progress)
    flushed = tf.flush(30.0)
    stats = tf.stats()
    tf.shutdown(10.0)
    provider.shutdown()
    untracked = [t for t in traces if t.run_id is None]
    problems = []
    if untracked:
        problems.append(f"{len(untracked)} runs could not be created")
    if not flushed or stats["dropped"] or stats["rejected"] or stats["pending"]:
        problems.append(f"run events not all delivered ({stats})")
    if exporter.failed:
        problems.append(f"{exporter.failed} spans could not be exported")
    failed = sum(t.outcome == "failed" for t in traces)
    resent = sum(t.resent for t in traces)
    progress.finish(f"{len(traces)} demo traces (seed {args.seed}) sent to {config.api_url}: "
                    f"{len(traces) - failed} runs succeeded, {failed} failed as their "
                    "scenarios say" + (f"; {resent} already recorded (sent before)"
                                       if resent else ""))
    if args.json:
        print(json.dumps({"seed": args.seed, "count": args.count, "ok": not problems,
                          "traces": [t.__dict__ for t in traces]}, indent=1))
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
