"""OTLP traces for the trace pages' browser tests and ``bench/trace_page.py``.

Everything goes through the deployment's public OTLP endpoint (``POST /otlp/v1/traces``, JSON,
an ``ingest`` key), the way an instrumented agent sends it.
"""

from __future__ import annotations

import json
import time

from tests.traces.otlp_builders import json_request, json_span

MS = 1_000_000
BATCH = 2_000  # spans a request: 10,000 spans are a few MB of JSON


def sid(n: int) -> str:
    return f"{n:016x}"


def ingest(stack, server, key: str, spans: list[dict], *, service: str = "agent",
           environment: str = "test") -> None:
    """Send ``spans`` (``json_span`` dicts) in batches; every batch must be fully accepted."""
    for at in range(0, len(spans), BATCH):
        body = json.loads(json_request(spans[at:at + BATCH], service=service,
                                       environment=environment))
        status, answer = stack.request("POST", f"{server.url}/otlp/v1/traces", key=key, body=body)
        assert status == 200 and not answer, (status, answer)


def agent_trace(trace_id: str, *, model: str = "gpt-4o", start: int | None = None,
                status_error: bool = False, big_input: bool = False,
                retry_and_timeout: bool = False, tool: str = "web_search") -> list[dict]:
    """A small agent run: root agent span, a planning LLM call, a tool call and an answer.

    ``retry_and_timeout``: the tool call times out (an ``exception`` event of type
    ``httpx.ReadTimeout``) and a second attempt carries ``retry.count = 1``.
    ``big_input``: the first LLM call has a 20 KB ``input.value`` (moved to the payload store).
    """
    t0 = start if start is not None else time.time_ns() - 60_000 * MS
    spans = [
        json_span(trace_id, sid(1), "invoke_agent research", start=t0, duration_ms=900,
                  status=2 if status_error else 0,
                  attributes={"openinference.span.kind": "AGENT", "agent.name": "research"}),
        json_span(trace_id, sid(2), f"chat {model}", parent=sid(1), start=t0 + 5 * MS,
                  duration_ms=300, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 150,
                      "input.value": ("Plan the research. " * 1200) if big_input else "Plan it.",
                  }, events=[{"name": "gen_ai.content.prompt", "timeUnixNano": str(t0 + 6 * MS),
                              "attributes": [{"key": "gen_ai.prompt",
                                              "value": {"stringValue": "Plan it."}}]}]),
        json_span(trace_id, sid(3), f"execute_tool {tool}", parent=sid(1), start=t0 + 320 * MS,
                  duration_ms=200 if retry_and_timeout else 120,
                  status=2 if retry_and_timeout else 0,
                  attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
                  events=[{"name": "exception", "timeUnixNano": str(t0 + 519 * MS), "attributes": [
                      {"key": "exception.type", "value": {"stringValue": "httpx.ReadTimeout"}},
                      {"key": "exception.message", "value": {"stringValue": "read timed out"}},
                  ]}] if retry_and_timeout else None),
        json_span(trace_id, sid(5), f"chat {model}", parent=sid(1), start=t0 + 700 * MS,
                  duration_ms=190, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 300,
                  }),
    ]
    if retry_and_timeout:
        spans.append(json_span(trace_id, sid(4), f"execute_tool {tool} (attempt 2)",
                               parent=sid(1), start=t0 + 530 * MS, duration_ms=150,
                               attributes={"gen_ai.operation.name": "execute_tool",
                                           "gen_ai.tool.name": tool, "retry.count": 1}))
    return spans


def large_trace(trace_id: str, count: int, *, start: int | None = None) -> list[dict]:
    """``count`` spans shaped like a long agent session: a root, steps of 20 children each
    (an LLM call, tool calls with their own HTTP child), so the tree is a few levels deep."""
    t0 = start if start is not None else time.time_ns() - 600_000 * MS
    spans = [json_span(trace_id, sid(1), "invoke_agent long session", start=t0,
                       duration_ms=count * 2 + 10,
                       attributes={"openinference.span.kind": "AGENT"})]
    n, step = 1, 0
    while n < count:
        step += 1
        step_id, step_start = n + 1, t0 + n * 2 * MS
        spans.append(json_span(trace_id, sid(step_id), f"step {step}", parent=sid(1),
                               start=step_start, duration_ms=40,
                               attributes={"openinference.span.kind": "CHAIN"}))
        n += 1
        for k in range(19):
            if n >= count:
                break
            n += 1
            begin = step_start + (k + 1) * MS
            if k == 0:
                spans.append(json_span(trace_id, sid(n), "chat gpt-4o-mini", parent=sid(step_id),
                                       start=begin, duration_ms=1.5, attributes={
                                           "gen_ai.operation.name": "chat",
                                           "gen_ai.request.model": "gpt-4o-mini",
                                           "gen_ai.usage.input_tokens": 300,
                                           "gen_ai.usage.output_tokens": 40}))
            elif k % 2:
                spans.append(json_span(trace_id, sid(n), f"execute_tool read_file #{step}.{k}",
                                       parent=sid(step_id), start=begin, duration_ms=1.5,
                                       attributes={"gen_ai.tool.name": "read_file"}))
            else:
                spans.append(json_span(trace_id, sid(n), f"GET /files/{step}/{k}",
                                       parent=sid(n - 1), start=begin + MS // 4, duration_ms=1,
                                       kind=3))
    spans[-1]["name"] = "final answer span"
    return spans
