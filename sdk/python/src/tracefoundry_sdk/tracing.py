"""Where the SDK's spans go.

An application that set its own global TracerProvider keeps it: the SDK's spans go through it,
wherever it sends them. Otherwise the SDK installs an OpenTelemetry SDK TracerProvider as the
global one (so the application's other instrumentation lands in the same traces), with a
BatchSpanProcessor and the OTLP/HTTP exporter.

``configure()`` may be called again (tests do, to point at another server): the global
provider can be set only once per process, so every provider the SDK makes exports through one
``ExportSwitch``, whose current BatchSpanProcessor is replaced — the old one flushed and shut
down — on each configure. Each configure also makes a provider of its own for the SDK's spans,
so a new ``service_name``/``environment`` applies to them at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tracefoundry_sdk.config import Config

logger = logging.getLogger("tracefoundry_sdk")

TRACER_NAME = "tracefoundry_sdk"
# Span batches are split below this estimated size: the server refuses OTLP requests over
# 20 MiB, and the exporter drops a refused batch. 512 spans (OpenTelemetry's batch) with
# prompts and completions of up to payload_max_chars each could exceed it.
REQUEST_BYTES_BUDGET = 8 * 1024 * 1024
SPAN_OVERHEAD_BYTES = 300  # ids, times, names, small attributes


class ExportSwitch(SpanProcessor):
    """A span processor that hands spans to the current BatchSpanProcessor."""

    def __init__(self) -> None:
        self._current: SpanProcessor | None = None
        self._lock = threading.Lock()

    def replace(self, processor: SpanProcessor | None, *, timeout_s: float) -> None:
        with self._lock:
            old, self._current = self._current, processor
        if old is not None:
            _retire(old, timeout_s)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        current = self._current
        if current is not None:
            current.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        current = self._current
        if current is not None:
            current.on_end(span)

    def shutdown(self) -> None:
        self.replace(None, timeout_s=5.0)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        current = self._current
        return True if current is None else current.force_flush(timeout_millis)


def _retire(processor: SpanProcessor, timeout_s: float) -> None:
    """Flush and shut ``processor`` down, waiting at most ``timeout_s``: against a server that
    does not answer, the exporter's retries could otherwise hold the caller for its whole
    timeout (10 s by default) after the flush gave up."""

    def run() -> None:
        try:
            processor.force_flush(int(timeout_s * 1000))
            processor.shutdown()
        except Exception:
            logger.warning("tracefoundry_sdk: shutting a span exporter down failed",
                           exc_info=True)

    thread = threading.Thread(target=run, daemon=True, name="tracefoundry-span-shutdown")
    thread.start()
    thread.join(timeout_s)


def _estimated_bytes(span: ReadableSpan) -> int:
    size = SPAN_OVERHEAD_BYTES
    for value in (span.attributes or {}).values():
        if isinstance(value, str):
            size += len(value) if value.isascii() else 4 * len(value)
        elif isinstance(value, (list, tuple)):
            size += sum(len(v) if isinstance(v, str) else 8 for v in value)
        else:
            size += 8
    for event in span.events:
        size += 64 + sum(len(v) if isinstance(v, str) else 8
                         for v in (event.attributes or {}).values())
    return size


class SizeCappedExporter(SpanExporter):
    """Hands the OTLP exporter batches of at most REQUEST_BYTES_BUDGET (estimated), so a batch
    of long prompts becomes several requests instead of one the server refuses."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        chunk: list[ReadableSpan] = []
        size = 0
        result = SpanExportResult.SUCCESS
        for span in spans:
            span_size = _estimated_bytes(span)
            if chunk and size + span_size > REQUEST_BYTES_BUDGET:
                if self._inner.export(chunk) != SpanExportResult.SUCCESS:
                    result = SpanExportResult.FAILURE
                chunk, size = [], 0
            chunk.append(span)
            size += span_size
        if chunk and self._inner.export(chunk) != SpanExportResult.SUCCESS:
            result = SpanExportResult.FAILURE
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


_switch = ExportSwitch()
_installed_global = False
_global_lock = threading.Lock()


def _resource(config: Config) -> Resource:
    attributes: dict[str, Any] = {}
    if config.service_name:
        attributes["service.name"] = config.service_name
    if config.environment:
        # The server reads the current name first and the older one after it.
        attributes["deployment.environment.name"] = config.environment
        attributes["deployment.environment"] = config.environment
    attributes["telemetry.distro.name"] = "tracefoundry_sdk"
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; ours win.
    return Resource.create(attributes)


def _exporter(config: Config):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    kwargs: dict[str, Any] = {}
    if config.otlp_endpoint:
        kwargs["endpoint"] = config.otlp_endpoint
    if config.otlp_headers:
        kwargs["headers"] = dict(config.otlp_headers)
    return OTLPSpanExporter(**kwargs)


def application_provider() -> Any | None:
    """The application's own global TracerProvider, if it set one (not the SDK)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None
    if getattr(provider, "_tracefoundry_sdk", False):
        return None
    return provider


def setup(config: Config, *, timeout_s: float = 5.0) -> trace.Tracer:
    """The tracer for the SDK's spans under ``config`` (see the module docstring)."""
    global _installed_global
    app = application_provider()
    if app is not None:
        _switch.replace(None, timeout_s=timeout_s)
        return app.get_tracer(TRACER_NAME)
    _switch.replace(BatchSpanProcessor(SizeCappedExporter(_exporter(config))),
                    timeout_s=timeout_s)
    provider = TracerProvider(resource=_resource(config), shutdown_on_exit=False)
    provider._tracefoundry_sdk = True  # type: ignore[attr-defined]
    provider.add_span_processor(_switch)
    with _global_lock:
        if not _installed_global:
            trace.set_tracer_provider(provider)
            _installed_global = True
    return provider.get_tracer(TRACER_NAME)


def flush(timeout_s: float) -> bool:
    try:
        ok = _switch.force_flush(int(timeout_s * 1000))
        app = application_provider()
        if app is not None and hasattr(app, "force_flush"):
            ok = bool(app.force_flush(int(timeout_s * 1000))) and ok
        return ok
    except Exception:
        logger.warning("tracefoundry_sdk: flushing spans failed", exc_info=True)
        return False


def shutdown(timeout_s: float) -> None:
    _switch.replace(None, timeout_s=timeout_s)
