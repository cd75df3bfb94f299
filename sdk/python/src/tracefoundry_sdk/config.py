"""The SDK's settings: ``configure(...)`` arguments first, then environment variables, then
defaults.

The OpenTelemetry side follows the standard variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``_HEADERS``/``_TIMEOUT``,
read by the OpenTelemetry SDK and exporter themselves); the run API needs
``TRACEFOUNDRY_API_URL`` and ``TRACEFOUNDRY_API_KEY``. A bad value is logged and replaced by the
default: configuration mistakes must not stop the agent.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, TypeVar

logger = logging.getLogger("tracefoundry_sdk")

T = TypeVar("T")

DEFAULT_PAYLOAD_MAX_CHARS = 65_536
DEFAULT_BATCH_MAX_EVENTS = 200
DEFAULT_BATCH_INTERVAL_S = 1.0
DEFAULT_QUEUE_MAX_EVENTS = 10_000
SERVER_BATCH_LIMIT = 1000  # the server refuses larger event batches

_OTEL_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_OTEL_HEADER_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Config:
    api_url: str | None  # the server's base URL, e.g. http://127.0.0.1:8000
    api_key: str | None
    project: str | None  # project slug for new runs (None: the key's project)
    service_name: str | None  # None: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES / OTel default
    environment: str | None  # deployment.environment; None: from OTEL_RESOURCE_ATTRIBUTES
    capture_payloads: bool
    payload_max_chars: int
    otlp_endpoint: str | None  # None: the OTEL_* variables decide (the exporter reads them)
    otlp_headers: dict[str, str] | None
    batch_max_events: int
    batch_interval_s: float
    queue_max_events: int
    request_timeout_s: float  # one HTTP request to the run API
    create_timeout_s: float  # creating and starting a run: the agent waits for this
    flush_timeout_s: float  # at run end, waiting for the run's events to be sent

    @property
    def events_enabled(self) -> bool:
        return bool(self.api_url)


def _env_str(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _checked(name: str, value: T, default: T, valid: Callable[[T], bool]) -> T:
    if valid(value):
        return value
    logger.warning("tracefoundry_sdk: %s=%r is not valid; using %r", name, value, default)
    return default


def _number(name: str, given: float | None, default: float, *, integer: bool,
            minimum: float) -> float:
    if given is None:
        raw = _env_str(f"TRACEFOUNDRY_{name.upper()}")
        if raw is None:
            return default
        try:
            given = int(raw) if integer else float(raw)
        except ValueError:
            logger.warning("tracefoundry_sdk: TRACEFOUNDRY_%s=%r is not a number; using %r",
                           name.upper(), raw, default)
            return default
    return _checked(name, given, default,
                    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                    and v >= minimum and v == v and v != float("inf"))


def _flag(name: str, given: bool | None, default: bool) -> bool:
    if given is not None:
        return bool(given)
    raw = (_env_str(name) or "").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw:
        logger.warning("tracefoundry_sdk: %s=%r is not a boolean; using %r", name, raw, default)
    return default


def api_base(url: str | None) -> str | None:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/api/v1`` all name the
    same server."""
    if not url:
        return None
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url or None


def load(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
    service_name: str | None = None,
    environment: str | None = None,
    capture_payloads: bool | None = None,
    payload_max_chars: int | None = None,
    otlp_endpoint: str | None = None,
    otlp_headers: dict[str, str] | None = None,
    batch_max_events: int | None = None,
    batch_interval_s: float | None = None,
    queue_max_events: int | None = None,
    request_timeout_s: float | None = None,
    create_timeout_s: float | None = None,
    flush_timeout_s: float | None = None,
) -> Config:
    url = api_base(api_url or _env_str("TRACEFOUNDRY_API_URL"))
    key = api_key or _env_str("TRACEFOUNDRY_API_KEY")
    endpoint = otlp_endpoint
    headers = dict(otlp_headers) if otlp_headers else None
    otel_endpoint_set = any(_env_str(v) for v in _OTEL_ENDPOINT_VARS)
    if endpoint is None and not otel_endpoint_set and url:
        # No OTLP endpoint anywhere: the spans go to the same server as the runs.
        endpoint = f"{url}/otlp/v1/traces"
        if headers is None and key and not any(_env_str(v) for v in _OTEL_HEADER_VARS):
            headers = {"Authorization": f"Bearer {key}"}
    elif endpoint is not None and headers is None and key and url and endpoint.startswith(url) \
            and not any(_env_str(v) for v in _OTEL_HEADER_VARS):
        headers = {"Authorization": f"Bearer {key}"}
    batch_max = int(_number("batch_max_events", batch_max_events, DEFAULT_BATCH_MAX_EVENTS,
                            integer=True, minimum=1))
    return Config(
        api_url=url,
        api_key=key,
        project=project or _env_str("TRACEFOUNDRY_PROJECT"),
        service_name=service_name,
        environment=environment or _env_str("TRACEFOUNDRY_ENVIRONMENT"),
        capture_payloads=_flag("TRACEFOUNDRY_CAPTURE_PAYLOADS", capture_payloads, True),
        payload_max_chars=int(_number("payload_max_chars", payload_max_chars,
                                      DEFAULT_PAYLOAD_MAX_CHARS, integer=True, minimum=16)),
        otlp_endpoint=endpoint,
        otlp_headers=headers,
        batch_max_events=min(batch_max, SERVER_BATCH_LIMIT),
        batch_interval_s=_number("batch_interval_s", batch_interval_s,
                                 DEFAULT_BATCH_INTERVAL_S, integer=False, minimum=0.001),
        queue_max_events=int(_number("queue_max_events", queue_max_events,
                                     DEFAULT_QUEUE_MAX_EVENTS, integer=True, minimum=1)),
        request_timeout_s=_number("request_timeout_s", request_timeout_s, 5.0, integer=False,
                                  minimum=0.05),
        create_timeout_s=_number("create_timeout_s", create_timeout_s, 3.0, integer=False,
                                 minimum=0.05),
        flush_timeout_s=_number("flush_timeout_s", flush_timeout_s, 5.0, integer=False,
                                minimum=0.0),
    )
