"""``llm_call`` and ``tool_call``: a span with the OpenTelemetry GenAI attributes, and the
matching pair of run events (``llm_request``/``llm_response``, ``tool_call``/``tool_result``)
sharing one ``correlation_id`` (the span's id, so an event leads to its span).

Prompts, completions, tool arguments and results are captured — cut to ``payload_max_chars`` —
as span attributes (``gen_ai.prompt``, ``gen_ai.completion``, ``gen_ai.tool.call.arguments``,
``gen_ai.tool.call.result``: the server moves long ones to payload blobs) and in the events;
with ``capture_payloads=False`` they are left out of both.

Outside a ``trace_agent_run`` the spans are made all the same; there is no run to send events to.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import time
from typing import Any, Callable, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracefoundry_sdk import runtime
from tracefoundry_sdk.agent_run import RUN_ID_ATTRIBUTE, AgentRun, _describe, current_run
from tracefoundry_sdk.capture import as_text, cap, jsonable

logger = logging.getLogger("tracefoundry_sdk")

F = TypeVar("F", bound=Callable[..., Any])

_current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "tracefoundry_sdk_call", default=None)
_PRIMITIVES = (str, bool, int, float)


def current_call() -> Call | None:
    """The innermost ``llm_call``/``tool_call`` around the caller (e.g. inside a decorated
    function), if any."""
    return _current_call.get()


def _attribute(value: Any, max_chars: int) -> Any:
    """An OpenTelemetry attribute value: primitives and lists of one primitive type as they
    are, anything else as JSON text."""
    if isinstance(value, _PRIMITIVES):
        return as_text(value, max_chars) if isinstance(value, str) else value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return [as_text(v, max_chars) for v in value]
    return as_text(value, max_chars)


def _captured(value: Any, max_chars: int) -> tuple[Any, Any]:
    """A captured payload made safe once: (its span attribute value, its event value)."""
    safe = jsonable(value, max_chars)
    if isinstance(safe, str):
        return safe, safe
    return _attribute(safe, max_chars), safe


class Call:
    """What an ``llm_call``/``tool_call`` block gets; the base of LLMCall and ToolCall."""

    operation = ""

    def __init__(self) -> None:
        self.span: trace.Span = trace.INVALID_SPAN
        self.run: AgentRun | None = None
        self.correlation_id = ""
        self.error: BaseException | None = None
        self._state: runtime.State | None = None
        self._started = 0.0
        self._tokens: tuple[Any, Any] | None = None

    @property
    def _capture(self) -> bool:
        return self._state is not None and self._state.config.capture_payloads

    @property
    def _max_chars(self) -> int:
        return self._state.config.payload_max_chars if self._state is not None else 65536

    def _begin(self, span_name: str, kind: SpanKind, attributes: dict[str, Any]) -> None:
        state = self._state or runtime.state()
        self._state = state
        self.run = current_run()
        if self.run is not None and self.run.run_id:
            attributes[RUN_ID_ATTRIBUTE] = self.run.run_id
        self.span = state.tracer.start_span(span_name, kind=kind, attributes=attributes)
        context = self.span.get_span_context()
        self.correlation_id = (format(context.span_id, "016x") if context.is_valid
                               else os.urandom(8).hex())
        self._tokens = (otel_context.attach(trace.set_span_in_context(self.span)),
                        _current_call.set(self))
        self._started = time.perf_counter()

    def _end(self, exc: BaseException | None) -> float:
        """Leave the call's context and end its span; the call's duration in ms."""
        duration_ms = (time.perf_counter() - self._started) * 1000
        if self._tokens is not None:
            span_token, call_token = self._tokens
            self._tokens = None
            _current_call.reset(call_token)
            otel_context.detach(span_token)
        if exc is not None:
            self.error = exc
            self.span.record_exception(exc)
            self.span.set_attribute("error.type", type(exc).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, cap(_describe(exc), 1000)))
        self.span.end()
        return duration_ms

    def _emit(self, type: str, payload: dict, *, level: str | None = None) -> None:
        if self.run is not None:
            self.run.event(type, payload, level=level, correlation_id=self.correlation_id)

    # The subclasses' enter/exit; the scope below calls them and swallows their failures.
    def _enter(self) -> None:
        raise NotImplementedError

    def _exit(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _record_return(self, result: Any) -> None:
        """A decorated function returned ``result``."""


class LLMCall(Call):
    def __init__(self, model: str, *, provider: str | None = None, prompt: Any = None,
                 operation: str = "chat", request_params: dict | None = None) -> None:
        super().__init__()
        self.model = model
        self.provider = provider
        self.prompt = prompt
        self.operation = operation or "chat"
        self.request_params = request_params
        self.retries = 0
        self.timed_out = False
        self._response: dict[str, Any] = {}

    def _enter(self) -> None:
        state = self._state = runtime.state()
        max_chars = state.config.payload_max_chars
        # Every attribute known now goes into start_span: one pass, not a set_attribute each.
        attributes: dict[str, Any] = {"gen_ai.operation.name": self.operation,
                                      "gen_ai.request.model": self.model}
        if self.provider:
            attributes["gen_ai.provider.name"] = self.provider
            attributes["gen_ai.system"] = self.provider
        for key, value in (self.request_params or {}).items():
            if value is not None:
                attributes[f"gen_ai.request.{key}"] = _attribute(value, max_chars)
        capture = state.config.capture_payloads and self.prompt is not None
        if capture:
            attributes["gen_ai.prompt"], prompt = _captured(self.prompt, max_chars)
        self._begin(f"{self.operation} {self.model}", SpanKind.CLIENT, attributes)
        if self.run is None:
            return  # no run to send events to
        payload: dict[str, Any] = {"model": self.model, "operation": self.operation,
                                   "span_id": self.correlation_id}
        if self.provider:
            payload["provider"] = self.provider
        if self.request_params:
            payload["request_params"] = jsonable(self.request_params, max_chars)
        if capture:
            payload["prompt"] = prompt
        self._emit("llm_request", payload)

    def retry(self, attempt: int, reason: str = "") -> None:
        """The call is being retried (``attempt``: 1 for the first retry)."""
        try:
            self.retries = max(self.retries, int(attempt))
            attributes: dict[str, Any] = {"retry.attempt": int(attempt)}
            if reason:
                attributes["retry.reason"] = cap(str(reason), 1000)
            self.span.add_event("retry", attributes)
            self.span.set_attribute("gen_ai.request.retry", True)
            self.span.set_attribute("retry.count", self.retries)
        except Exception:
            logger.warning("tracefoundry_sdk: recording a retry failed", exc_info=True)

    def timeout(self, after_s: float) -> None:
        """The call (or one attempt of it) timed out after ``after_s`` seconds."""
        try:
            self.timed_out = True
            self.span.add_event("timeout", {"timeout.after_s": float(after_s)})
            self.span.set_attribute("tracefoundry.timeout", True)
        except Exception:
            logger.warning("tracefoundry_sdk: recording a timeout failed", exc_info=True)

    def record_response(self, text: Any = None, response_model: str | None = None,
                        input_tokens: int | None = None, output_tokens: int | None = None,
                        finish_reasons: list[str] | None = None) -> None:
        try:
            response = self._response
            attributes: dict[str, Any] = {}
            if response_model:
                response["model"] = response_model
                attributes["gen_ai.response.model"] = _attribute(response_model, 256)
            for key, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
                if value is not None:
                    response[key] = attributes[f"gen_ai.usage.{key}"] = int(value)
            if finish_reasons:
                reasons = [str(r) for r in finish_reasons]
                response["finish_reasons"] = attributes["gen_ai.response.finish_reasons"] = \
                    reasons
            if text is not None:
                response["has_text"] = True
                if self._capture:
                    attributes["gen_ai.completion"], response["text"] = _captured(
                        text, self._max_chars)
            self.span.set_attributes(attributes)
        except Exception:
            logger.warning("tracefoundry_sdk: recording a response failed", exc_info=True)

    def _record_return(self, result: Any) -> None:
        if "has_text" not in self._response and result is not None:
            self.record_response(text=result)

    def _exit(self, exc: BaseException | None) -> None:
        duration_ms = self._end(exc)
        response = self._response
        payload: dict[str, Any] = {"model": response.get("model", self.model),
                                   "span_id": self.correlation_id,
                                   "duration_ms": round(duration_ms, 3)}
        for key in ("text", "input_tokens", "output_tokens", "finish_reasons"):
            if key in response:
                payload[key] = response[key]
        if self.retries:
            payload["retries"] = self.retries
        if self.timed_out:
            payload["timed_out"] = True
        if exc is not None:
            payload["error"] = {"type": type(exc).__qualname__,
                                "message": cap(str(exc), 2000)}
        self._emit("llm_response", payload, level="error" if exc is not None else None)


class ToolCall(Call):
    operation = "execute_tool"

    def __init__(self, name: str, *, args: Any = None) -> None:
        super().__init__()
        self.name = name
        self.args = args
        self._result: Any = None
        self._has_result = False
        self.retries = 0
        self.timed_out = False

    # A tool call's retries and timeouts are recorded as an LLM call's are.
    retry = LLMCall.retry
    timeout = LLMCall.timeout

    def _enter(self) -> None:
        state = self._state = runtime.state()
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool",
                                      "gen_ai.tool.name": self.name}
        capture = state.config.capture_payloads and self.args is not None
        if capture:
            attributes["gen_ai.tool.call.arguments"], args = _captured(
                self.args, state.config.payload_max_chars)
        self._begin(f"execute_tool {self.name}", SpanKind.INTERNAL, attributes)
        self.span.set_attribute("gen_ai.tool.call.id", self.correlation_id)
        if self.run is None:
            return
        payload: dict[str, Any] = {"tool": self.name, "span_id": self.correlation_id}
        if capture:
            payload["args"] = args
        self._emit("tool_call", payload)

    def record_result(self, result: Any) -> None:
        try:
            self._has_result = True
            if self._capture:
                attribute, self._result = _captured(result, self._max_chars)
                self.span.set_attribute("gen_ai.tool.call.result", attribute)
        except Exception:
            logger.warning("tracefoundry_sdk: recording a tool result failed", exc_info=True)

    def _record_return(self, result: Any) -> None:
        if not self._has_result:
            self.record_result(result)

    def _exit(self, exc: BaseException | None) -> None:
        duration_ms = self._end(exc)
        payload: dict[str, Any] = {"tool": self.name, "span_id": self.correlation_id,
                                   "duration_ms": round(duration_ms, 3)}
        if self._capture and self._has_result:
            payload["result"] = self._result
        if exc is not None:
            payload["error"] = {"type": type(exc).__qualname__,
                                "message": cap(str(exc), 2000)}
        self._emit("tool_result", payload, level="error" if exc is not None else None)


class CallScope:
    """Returned by ``llm_call``/``tool_call``: a context manager (``with``, ``async with``)
    giving the call object, and a decorator of sync and async functions (one call per
    invocation; the return value is recorded as the response or result)."""

    def __init__(self, factory: Callable[[], Call], *, decorated_args: bool = False) -> None:
        self._factory = factory
        self._decorated_args = decorated_args
        self._calls: list[Call] = []

    def __enter__(self) -> Call:
        call = self._factory()
        self._calls.append(call)
        try:
            call._enter()
        except Exception:
            logger.warning("tracefoundry_sdk: starting a %s span failed", call.operation,
                           exc_info=True)
        return call

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        call = self._calls.pop() if self._calls else None
        if call is not None:
            try:
                call._exit(exc)
            except Exception:
                logger.warning("tracefoundry_sdk: ending a %s span failed", call.operation,
                               exc_info=True)
        return False

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def _for_call(self, func: Callable, args: tuple, kwargs: dict) -> CallScope:
        factory = self._factory
        if self._decorated_args:
            bound = _arguments(func, args, kwargs)

            def factory() -> Call:
                return self._factory(bound)  # type: ignore[call-arg]
        return CallScope(factory)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                with self._for_call(func, args, kwargs) as call:
                    result = await func(*args, **kwargs)
                    _record_return(call, result)
                    return result
            return call_async  # type: ignore[return-value]

        @functools.wraps(func)
        def call_sync(*args: Any, **kwargs: Any) -> Any:
            with self._for_call(func, args, kwargs) as call:
                result = func(*args, **kwargs)
                _record_return(call, result)
                return result
        return call_sync  # type: ignore[return-value]


def _record_return(call: Call, result: Any) -> None:
    try:
        call._record_return(result)
    except Exception:
        logger.warning("tracefoundry_sdk: recording a return value failed", exc_info=True)


def _arguments(func: Callable, args: tuple, kwargs: dict) -> Any:
    """A decorated function's arguments by name (``self``/``cls`` left out)."""
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
        values = dict(bound.arguments)
        values.pop("self", None)
        values.pop("cls", None)
        return values
    except (TypeError, ValueError):
        return {"args": list(args), "kwargs": kwargs}


def llm_call(model: str, *, provider: str | None = None, prompt: Any = None,
             operation: str = "chat", request_params: dict | None = None) -> CallScope:
    """An LLM call: ``with tf.llm_call("gpt-4o", provider="openai", prompt=msgs) as call:``
    then ``call.record_response(text=…, input_tokens=…, output_tokens=…)``; or as a decorator
    (the arguments are the prompt unless ``prompt`` is given, the return value the response).
    """
    if prompt is not None:
        return CallScope(lambda: LLMCall(model, provider=provider, prompt=prompt,
                                         operation=operation, request_params=request_params))

    def make(bound: Any = None) -> Call:
        return LLMCall(model, provider=provider, prompt=bound, operation=operation,
                       request_params=request_params)
    return CallScope(make, decorated_args=True)


def tool_call(name: str, *, args: Any = None) -> CallScope:
    """A tool call: ``with tf.tool_call("read_file", args={...}) as tool:`` then
    ``tool.record_result(result)``; or as a decorator (the function's arguments are the tool's
    arguments unless ``args`` is given, its return value the result)."""
    if args is not None:
        return CallScope(lambda: ToolCall(name, args=args))

    def make(bound: Any = None) -> Call:
        return ToolCall(name, args=bound)
    return CallScope(make, decorated_args=True)
