"""The Python SDK (``sdk/python``, ``tracefoundry_sdk``) inside the server's worker: no HTTP.

- ``InProcessTransport`` does what the SDK's run API client does over HTTP — create and start a
  run, append event batches, succeed, fail — through ``runs.services`` in this process, with the
  HTTP API's input checks and its error statuses (``tracefoundry_sdk.configure(transport=…)``).
- ``DatabaseSpanExporter`` is an OpenTelemetry SpanExporter that encodes finished spans as the
  stock OTLP exporter does and hands them to ``traces.services.spans_ingest``, as
  ``/otlp/v1/traces`` does: redaction, GenAI extraction and run ↔ trace linking are the live ones.
- ``worker_install`` (registered by tracefoundry/jobs.py with ``runs.worker.worker_setup``) gives
  each worker the process's TracerProvider for its run spans (``TRACEFOUNDRY_WORKER_SPANS``), the
  factory of ``ctx.agent`` (an SDK ``AgentRun`` attached to the run a job executes) and a flush
  of the spans when it stops.

Spans reach the database from a thread of their own (``IdleSpanProcessor``) while the worker is
idle, or once 2,048 wait or the oldest has waited 10 s, and when the worker stops: never on a
job's path, and not in the middle of a burst of jobs. A span's project is the one
of the run it names (``tracefoundry.run_id``, which spans inherit from their parent here), else
the default project.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from rest_framework.exceptions import ValidationError

from runs import services
from runs.api import serializers as s
from runs.jobs import JobContext
from runs.models import Project
from runs.selectors import DEFAULT_PROJECT_SLUG, project_get, run_projects
from runs.worker import RUN_TRACE_ID_KEY, Worker
from tracefoundry.api.errors import domain_error_status, error_body
from tracefoundry.api.schema import validated
from tracefoundry.errors import DomainError
from traces.otlp_decode import DecodeError, SpanRecord, decode_message
from traces.services import RUN_ID_ATTRIBUTE, spans_ingest

log = logging.getLogger("tracefoundry.sdk_bridge")

SERVICE_NAME = "tracefoundry-worker"
SOURCE = "worker"  # the source of the runs and events the SDK records in a worker
_RUN_ACTION = re.compile(r"^/api/v1/runs/(?P<run_id>[^/?#]{1,64})/(?P<action>start|events|"
                         r"succeed|fail)$")
_SDK_SRC = Path(__file__).resolve().parent.parent / "sdk" / "python" / "src"
# Ingest attempts of one batch while the database is away (then the batch is dropped, logged).
EXPORT_ATTEMPTS = 3


def _release_connection() -> None:
    """Give this thread's connection back (to the pool on PostgreSQL) unless a transaction is
    open: the SDK's sender and the span processor are long-lived threads of their own."""
    if not connection.in_atomic_block:
        close_old_connections()


# --- the run API, in-process ------------------------------------------------------------------

class InProcessTransport:
    """An ``ApiClient`` of the SDK (``request``/``request_once``) that calls the services."""

    def __init__(self, *, worker_id: str, api_error: type[Exception]) -> None:
        self.worker_id = worker_id
        self.api_error = api_error

    def request(self, method: str, path: str, body: Any = None, *, deadline_s: float) -> Any:
        """``request_once``, again while the database is away, until ``deadline_s``."""
        deadline = time.monotonic() + deadline_s
        attempt = 0
        while True:
            try:
                return self.request_once(method, path, body)
            except self.api_error as exc:
                attempt += 1
                wait = min(0.25 * 2 ** attempt, 2.0)
                if not getattr(exc, "retryable", False) or time.monotonic() + wait >= deadline:
                    raise
                time.sleep(wait)

    def request_once(self, method: str, path: str, body: Any = None, *,
                     timeout_s: float | None = None) -> Any:
        try:
            return self._dispatch(method, path, body)
        except DomainError as exc:
            status = domain_error_status(exc)
            raise self.api_error(f"HTTP {status}: {exc.message}", status=status,
                                 body=error_body(exc.code, exc.message, exc.details)) from None
        except ValidationError as exc:
            raise self.api_error(f"HTTP 400: invalid input: {exc.detail}", status=400,
                                 body=error_body("invalid", "invalid input",
                                                 {"fields": exc.detail})) from None
        except (OperationalError, InterfaceError) as exc:
            # What the HTTP API answers 503 (retry) for.
            raise self.api_error(f"HTTP 503: the database is unavailable ({exc})", status=503,
                                 retryable=True) from None
        except self.api_error:
            raise
        except Exception as exc:
            log.exception("in-process %s %s failed", method, path)
            raise self.api_error(f"HTTP 500: {type(exc).__name__}", status=500) from None
        finally:
            _release_connection()

    def _dispatch(self, method: str, path: str, body: Any) -> Any:
        if method == "POST" and path == "/api/v1/runs":
            return self._create(body if isinstance(body, dict) else {})
        match = _RUN_ACTION.match(path)
        if method != "POST" or match is None:
            raise self.api_error(f"HTTP 404: no in-process route for {method} {path}",
                                 status=404)
        run_id, action = match["run_id"], match["action"]
        if action == "events":
            result = services.event_append_batch(
                run_id=run_id, events=body if isinstance(body, list) else [body],
                source=SOURCE, worker_id=self.worker_id)
            return {"accepted": result.accepted, "dropped": result.dropped}
        data = body if isinstance(body, dict) else {}
        if action == "start":
            worker_id = validated(s.RunStartSerializer, data)["worker_id"] or self.worker_id
            run = services.run_start(run_id=run_id, worker_id=worker_id)
        elif action == "succeed":
            fields = validated(s.RunSucceedSerializer, data)
            run = services.run_succeed(run_id=run_id, output=fields.get("output"),
                                       output_ref=fields.get("output_ref", ""),
                                       worker_id=fields.get("worker_id"))
        else:
            fields = validated(s.RunFailSerializer, data)
            run = services.run_fail(run_id=run_id, error=fields["error"],
                                    retryable=fields["retryable"],
                                    worker_id=fields.get("worker_id"))
        return {"id": run.id, "state": run.state}

    def _create(self, body: dict) -> dict:
        data = validated(s.RunEnqueueSerializer, body)
        slug = data.get("project")
        project = project_get(slug=slug) if slug else _job_project()
        run, _ = services.run_enqueue(
            project=project, kind=data["kind"], input=data.get("input"),
            name=data.get("name", ""), idempotency_key=data.get("idempotency_key"),
            max_attempts=data.get("max_attempts"), run_after=data.get("run_after"),
            correlation_id=data.get("correlation_id", ""), trace_id=data.get("trace_id", ""),
            source=SOURCE,
        )
        return {"id": run.id, "state": run.state}


def _job_project() -> Project:
    """Where a run the SDK creates inside a job goes: the project of the job's run (its span
    is the current one), else the default project."""
    attributes = getattr(otel_trace.get_current_span(), "attributes", None) or {}
    run_id = attributes.get(RUN_ID_ATTRIBUTE)
    if run_id:
        project = run_projects(run_ids=[str(run_id)]).get(str(run_id))
        if project is not None:
            return project
    return project_get(slug=DEFAULT_PROJECT_SLUG)


# --- spans, straight into the database -------------------------------------------------------

class DatabaseSpanExporter(SpanExporter):
    """Finished spans → OTLP protobuf (the stock exporter's encoding) → the ingest service."""

    def __init__(self) -> None:
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down or not spans:
            return SpanExportResult.SUCCESS if not spans else SpanExportResult.FAILURE
        try:
            records = _records(spans)
            for attempt in range(1, EXPORT_ATTEMPTS + 1):
                try:
                    self._ingest(records)
                    return SpanExportResult.SUCCESS
                except (OperationalError, InterfaceError):
                    _release_connection()
                    if attempt == EXPORT_ATTEMPTS:
                        raise
                    time.sleep(0.5 * attempt)
        except DatabaseError:
            log.warning("worker spans: %d spans could not be stored (database unavailable)",
                        len(spans), exc_info=True)
        except Exception:
            log.exception("worker spans: storing %d spans failed", len(spans))
        finally:
            _release_connection()
        return SpanExportResult.FAILURE

    def _ingest(self, records: list[SpanRecord]) -> None:
        for project, group in _by_project(records):
            result = spans_ingest(project=project, records=group)
            if result.rejected:
                log.warning("worker spans: %d of %d spans rejected: %s", result.rejected,
                            len(group), "; ".join(result.reasons))

    def shutdown(self) -> None:
        self._shut_down = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _records(spans: Sequence[ReadableSpan]) -> list[SpanRecord]:
    """The spans as the OTLP endpoint decodes them; a span the decoder refuses (a NUL in a
    name, say) is left out alone rather than costing the batch."""
    try:
        return decode_message(encode_spans(spans)).spans
    except DecodeError:
        records: list[SpanRecord] = []
        for span in spans:
            try:
                records += decode_message(encode_spans([span])).spans
            except DecodeError as exc:
                log.warning("worker spans: span %r left out: %s", span.name, exc)
        return records


def _by_project(records: list[SpanRecord]) -> list[tuple[Project, list[SpanRecord]]]:
    """The records grouped by the project of the run each names (else the default one)."""
    run_ids = {str(r.attributes.get(RUN_ID_ATTRIBUTE))[:40] for r in records
               if r.attributes.get(RUN_ID_ATTRIBUTE)}
    projects = run_projects(run_ids=sorted(run_ids)) if run_ids else {}
    groups: dict[int, tuple[Project, list[SpanRecord]]] = {}
    default: Project | None = None
    for record in records:
        project = projects.get(str(record.attributes.get(RUN_ID_ATTRIBUTE) or "")[:40])
        if project is None:
            default = default or project_get(slug=DEFAULT_PROJECT_SLUG)
            project = default
        groups.setdefault(project.pk, (project, []))[1].append(record)
    return list(groups.values())


class RunTraceIds(RandomIdGenerator):
    """A new root span's trace id is its run's trace id when the worker says so
    (``RUN_TRACE_ID_KEY`` in the current context): every attempt of a run, and a run enqueued
    with a trace id, land in that trace."""

    def generate_trace_id(self) -> int:
        wanted = otel_context.get_value(RUN_TRACE_ID_KEY)
        if isinstance(wanted, str):
            try:
                value = int(wanted, 16)
            except ValueError:
                value = 0
            if 0 < value < 2 ** 128:
                return value
        return super().generate_trace_id()


class RunIdInheritance(SpanProcessor):
    """A span started under a span naming a run names it too, so it goes to the run's project
    and links the run whichever batch it is exported in."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes
        if attributes is not None and RUN_ID_ATTRIBUTE in attributes:
            return
        parent = otel_trace.get_current_span(parent_context)
        run_id = (getattr(parent, "attributes", None) or {}).get(RUN_ID_ATTRIBUTE)
        if run_id:
            span.set_attribute(RUN_ID_ATTRIBUTE, run_id)


class IdleSpanProcessor(SpanProcessor):
    """Batches finished spans for an exporter, like OpenTelemetry's BatchSpanProcessor, but
    stores them while the workers of this process are idle: storing a span (a trace, a span
    row, the run link) costs about as much database work as a run's own bookkeeping, so a burst
    of jobs is not slowed by the spans of its first jobs. A batch goes anyway once
    ``max_batch`` spans wait or the oldest has waited ``max_delay_s``; beyond ``max_queue``
    the oldest spans are dropped (and counted)."""

    def __init__(self, exporter: SpanExporter, *, max_batch: int = 2048,
                 max_queue: int = 20_000, max_delay_s: float = 10.0,
                 tick_s: float = 0.25) -> None:
        self.exporter = exporter
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_delay_s = max_delay_s
        self.tick_s = tick_s
        self.dropped = 0
        self._queue: deque[ReadableSpan] = deque()
        self._oldest = 0.0  # monotonic() when the oldest waiting span ended
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def watch(self, worker: Worker) -> None:
        """Store spans while ``worker`` (too) is idle."""
        with self._lock:
            self._workers.add(worker)

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped or not span.context.trace_flags.sampled:
            return
        with self._lock:
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue.append(span)
            if len(self._queue) > self.max_queue:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.warning("worker spans: the queue is full; %d spans dropped so far",
                                self.dropped)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="tracefoundry-worker-spans")
                self._thread.start()
            full = len(self._queue) >= self.max_batch
        if full:
            self._wake.set()

    def _loop(self) -> None:
        idle_ticks = 0
        while not self._stopped:
            woken = self._wake.wait(self.tick_s)
            self._wake.clear()
            with self._lock:
                workers = list(self._workers)
            busy = any(worker.busy for worker in workers)
            idle_ticks = 0 if busy else idle_ticks + 1
            with self._lock:
                waiting = len(self._queue)
                overdue = waiting and time.monotonic() - self._oldest >= self.max_delay_s
            # Idle at two ticks in a row: not the instant between reporting and claiming.
            if waiting and (woken or overdue or idle_ticks >= 2 or waiting >= self.max_batch):
                self._export(everything=idle_ticks >= 2 or overdue)

    def _export(self, *, everything: bool) -> None:
        with self._export_lock:
            while True:
                with self._lock:
                    if not self._queue or (not everything and len(self._queue) < self.max_batch):
                        return
                    batch = [self._queue.popleft()
                             for _ in range(min(self.max_batch, len(self._queue)))]
                    self._oldest = time.monotonic()
                self.exporter.export(batch)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Store every waiting span now, in the caller's thread."""
        self._export(everything=True)
        return True

    def shutdown(self) -> None:
        self.force_flush()
        self._stopped = True
        self._wake.set()
        self.exporter.shutdown()


_provider: TracerProvider | None = None
_processor: IdleSpanProcessor | None = None
_provider_lock = threading.Lock()


def tracer_provider() -> TracerProvider:
    """The process's TracerProvider of worker spans (made once; not the global provider, which
    stays the application's)."""
    global _provider, _processor
    with _provider_lock:
        if _provider is None:
            resource = Resource.create({})
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
            provider = TracerProvider(resource=resource, id_generator=RunTraceIds(),
                                      shutdown_on_exit=False)
            provider.add_span_processor(RunIdInheritance())
            _processor = IdleSpanProcessor(DatabaseSpanExporter())
            provider.add_span_processor(_processor)
            _provider = provider
        return _provider


# --- the job context's SDK helpers ------------------------------------------------------------

def _sdk() -> Any | None:
    """``tracefoundry_sdk``: installed (``pip install ./sdk/python``), else this checkout's."""
    try:
        import tracefoundry_sdk
    except ImportError:
        if not (_SDK_SRC / "tracefoundry_sdk").is_dir():
            return None
        sys.path.append(str(_SDK_SRC))
        try:
            import tracefoundry_sdk
        except ImportError:
            return None
    return tracefoundry_sdk


class JobAgent:
    """``ctx.agent``: the SDK's ``trace_agent_run(kind, run_id=…)`` attached to the run a job
    executes (its lifecycle stays the worker's). The AgentRun's helpers (``note``, ``log``,
    ``progress``, ``patch_proposed``, ``test_result``, ``error``, ``event``…) are this object's;
    ``llm_call``/``tool_call`` are the SDK's, inside the run."""

    def __init__(self, sdk: Any, ctx: JobContext) -> None:
        self._sdk = sdk
        self._scope = sdk.trace_agent_run(ctx.kind, name=ctx.run.name, run_id=ctx.run_id)
        self.run = self._scope.__enter__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def llm_call(self, model: str, **options: Any) -> Any:
        return self._sdk.llm_call(model, **options)

    def tool_call(self, name: str, **options: Any) -> Any:
        return self._sdk.tool_call(name, **options)

    def finish(self, error: BaseException | None) -> None:
        """End the SDK's span and wait (bounded) until its queued events are stored."""
        self._scope.__exit__(type(error) if error is not None else None, error,
                             error.__traceback__ if error is not None else None)


class JobAgents:
    """A worker's ``agent_factory``: configures the SDK for this worker (in-process transport,
    the worker's TracerProvider) on first use, then makes a JobAgent per job that asks."""

    _current: JobAgents | None = None  # the one the SDK is configured for
    _lock = threading.Lock()

    def __init__(self, sdk: Any, *, worker_id: str, provider: Any) -> None:
        from tracefoundry_sdk.api_client import ApiError

        self.sdk = sdk
        self.transport = InProcessTransport(worker_id=worker_id, api_error=ApiError)
        self.provider = provider

    def __call__(self, ctx: JobContext) -> JobAgent:
        if JobAgents._current is not self:
            with JobAgents._lock:
                if JobAgents._current is not self:
                    self.sdk.configure(transport=self.transport, tracer_provider=self.provider)
                    JobAgents._current = self
        return JobAgent(self.sdk, ctx)


def worker_install(worker: Worker) -> None:
    """``runs.worker.worker_setup``: the run spans' TracerProvider and ``ctx.agent``."""
    provider: Any = otel_trace.NoOpTracerProvider()
    if worker.config.spans:
        provider = tracer_provider()
        assert _processor is not None
        _processor.watch(worker)
        worker.tracer_provider = provider
        worker.on_stop.append(provider.force_flush)
    sdk = _sdk()
    if sdk is None:
        log.info("tracefoundry_sdk is not installed: jobs get no ctx.agent helpers")
        return
    worker.agent_factory = JobAgents(sdk, worker_id=worker.worker_id, provider=provider)
