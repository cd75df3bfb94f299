"""TraceFoundry's Python SDK: instrument an agent in three lines.

    import tracefoundry_sdk as tf
    tf.configure(api_url="http://127.0.0.1:8000", api_key="tf_…")  # or TRACEFOUNDRY_API_URL/_KEY
    with tf.trace_agent_run("agent.session", name="fix the parser") as run:
        with tf.llm_call("gpt-4o", provider="openai", prompt=messages) as call:
            call.record_response(text=answer, input_tokens=812, output_tokens=64)
        with tf.tool_call("read_file", args={"path": "parser.py"}) as tool:
            tool.record_result(source)
        run.set_output({"patch": "parser.py"})

The SDK never raises into the agent: its own failures are logged at WARNING on the
``tracefoundry_sdk`` logger and swallowed, and a server that is down costs the agent at most
the bounded timeouts of ``configure``.
"""

from __future__ import annotations

from tracefoundry_sdk import runtime
from tracefoundry_sdk.agent_run import AgentRun, AgentRunScope, current_run, trace_agent_run
from tracefoundry_sdk.calls import (
    Call,
    CallScope,
    LLMCall,
    ToolCall,
    current_call,
    llm_call,
    tool_call,
)

__version__ = "0.1.0"

__all__ = [
    "AgentRun",
    "AgentRunScope",
    "Call",
    "CallScope",
    "LLMCall",
    "ToolCall",
    "configure",
    "current_call",
    "current_run",
    "flush",
    "llm_call",
    "shutdown",
    "stats",
    "tool_call",
    "trace_agent_run",
]


def configure(
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
    *,
    request_timeout_s: float | None = None,
    create_timeout_s: float | None = None,
    flush_timeout_s: float | None = None,
) -> None:
    """Configure the SDK (optional: without it, the environment configures it on first use).

    ``api_url``/``api_key``: the TraceFoundry server and a key with the ``runs:write`` and
    ``ingest`` scopes (default ``TRACEFOUNDRY_API_URL``/``TRACEFOUNDRY_API_KEY``).
    ``project``: the project slug for new runs (default ``TRACEFOUNDRY_PROJECT``, else the
    key's project). ``service_name``/``environment``: the resource's ``service.name`` and
    ``deployment.environment`` (default: ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``).
    ``capture_payloads`` (default ``TRACEFOUNDRY_CAPTURE_PAYLOADS``, else True): record
    prompts, completions, tool arguments and results, each cut to ``payload_max_chars``
    (default 65,536); ``False`` leaves them out of spans and events.
    ``otlp_endpoint``/``otlp_headers``: where spans go (default: the ``OTEL_EXPORTER_OTLP_*``
    variables, else ``<api_url>/otlp/v1/traces`` with the API key).
    ``batch_max_events``/``batch_interval_s``/``queue_max_events`` (200, 1.0 s, 10,000): run
    events leave in batches of at most this many (≤ 1,000), at least this often, from a queue
    of at most this many (the oldest are dropped, and counted, when it is full).
    Each numeric setting may also come from ``TRACEFOUNDRY_<NAME>`` in capitals. Keyword only:
    ``request_timeout_s`` (5: one HTTP request), ``create_timeout_s`` (3: creating and
    starting a run, the agent waits for it), ``flush_timeout_s`` (5: sending a run's events
    before finishing it, and finishing it).

    May be called again (the previous settings' queued events are flushed first).
    """
    runtime.configure(
        api_url=api_url, api_key=api_key, project=project, service_name=service_name,
        environment=environment, capture_payloads=capture_payloads,
        payload_max_chars=payload_max_chars, otlp_endpoint=otlp_endpoint,
        otlp_headers=otlp_headers, batch_max_events=batch_max_events,
        batch_interval_s=batch_interval_s, queue_max_events=queue_max_events,
        request_timeout_s=request_timeout_s, create_timeout_s=create_timeout_s,
        flush_timeout_s=flush_timeout_s,
    )


def flush(timeout_s: float = 5.0) -> bool:
    """Send the queued run events and finished spans now (at most ``timeout_s``); whether
    everything went."""
    return runtime.flush(timeout_s)


def shutdown(timeout_s: float = 5.0) -> None:
    """Flush and stop the SDK's background threads (also done at interpreter exit)."""
    runtime.shutdown(timeout_s)


def stats() -> dict[str, int]:
    """Run event counters: ``sent``, ``dropped`` (queue full or shut down), ``rejected`` (the
    server refused them) and ``pending``."""
    return runtime.stats()
