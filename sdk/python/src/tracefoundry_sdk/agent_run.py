"""``trace_agent_run``: one agent run, as a run on the server and a root span.

On entry: the root span ``invoke_agent <name or kind>`` opens (a child of whatever span is
current), then the run is created with that span's trace id (``POST /api/v1/runs``) and started
(``/start``) — or, given ``run_id``, the SDK attaches to an existing run (a worker job's) and
leaves its lifecycle to its owner. Every span opened inside carries ``tracefoundry.run_id``, so
the server links run and trace both ways.

On exit: the root span ends (status error with the exception recorded, if one escaped), the
run's events are flushed, and the run is succeeded with its output or failed with the
exception's type, message and a short stack. The agent's exception is re-raised unchanged.

If the server cannot be reached, the create call gives up after ``create_timeout_s``: the agent
runs anyway, its spans are still exported, and its run events are dropped (with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import time
import traceback
from typing import Any, Callable, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracefoundry_sdk import runtime
from tracefoundry_sdk.api_client import ApiError
from tracefoundry_sdk.capture import cap, jsonable

logger = logging.getLogger("tracefoundry_sdk")

F = TypeVar("F", bound=Callable[..., Any])

RUN_ID_ATTRIBUTE = "tracefoundry.run_id"
STACK_FRAMES = 12
STACK_CHARS = 4000
_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
           "error": "error", "critical": "error", "fatal": "error"}
_UNSET: Any = object()

_current_run: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar(
    "tracefoundry_sdk_run", default=None)


def current_run() -> AgentRun | None:
    """The run of the innermost ``trace_agent_run`` around the caller, if any."""
    return _current_run.get()


def _level(level: str) -> str:
    return _LEVELS.get(str(level).lower(), "info")


class AgentRun:
    """The handle an agent gets from ``trace_agent_run``: its run id and trace id, and the
    helpers that emit run events. Every method swallows its own failures."""

    def __init__(self, *, kind: str, name: str, span: trace.Span, run_id: str | None,
                 state: runtime.State) -> None:
        self.kind = kind
        self.name = name
        self.run_id = run_id
        self._span = span
        self._state = state
        self._output: Any = _UNSET
        self._warned_no_run = False
        # An idempotent repeat (same key) of a run that has finished: its events are not sent
        # (the server would refuse them); its spans still are.
        self.already_finished = False
        context = span.get_span_context()
        self.trace_id: str | None = (format(context.trace_id, "032x")
                                     if context.is_valid else None)
        self.span_id: str | None = format(context.span_id, "016x") if context.is_valid else None

    def __repr__(self) -> str:
        return f"<AgentRun {self.kind} run_id={self.run_id} trace_id={self.trace_id}>"

    # --- events ---------------------------------------------------------------------------------

    def event(self, type: str, payload: dict | None = None, *, level: str | None = None,
              correlation_id: str | None = None) -> None:
        """Emit a run event of any type (``^[a-z][a-z0-9_.]{0,63}$``, not ``run.*``/``step.*``)."""
        try:
            sender = self._state.sender
            if self.already_finished:
                return
            if not self.run_id or sender is None:
                if not self._warned_no_run and sender is not None:
                    logger.warning("tracefoundry_sdk: run %s was not created; its events are "
                                   "dropped", self.kind)
                self._warned_no_run = True
                return
            event: dict[str, Any] = {"type": type, "payload": payload or {}}
            if level is not None:
                event["level"] = _level(level)
            if correlation_id:
                event["correlation_id"] = correlation_id[:64]
            sender.put(self.run_id, event)
        except Exception:
            logger.warning("tracefoundry_sdk: emitting a %s event failed", type, exc_info=True)

    def _value(self, value: Any) -> Any:
        return jsonable(value, self._state.config.payload_max_chars)

    def note(self, text: str) -> None:
        self.event("note", {"text": self._value(text)})

    def log(self, text: str, level: str = "info", stream: str = "stdout") -> None:
        stream = stream if stream in ("stdout", "stderr") else "stdout"
        self.event("log", {"stream": stream, "text": self._value(str(text))}, level=level)

    def progress(self, done: float, total: float | None, message: str = "") -> None:
        payload: dict[str, Any] = {"completed": _count(done)}
        if total is not None:
            payload["total"] = _count(total)
        if message:
            payload["message"] = self._value(message)
        self.event("progress", payload)

    def patch_proposed(self, diff: str, files: list[str] | None = None) -> None:
        payload: dict[str, Any] = {"diff": self._value(diff)}
        if files is not None:
            payload["files"] = self._value(list(files))
        self.event("patch_proposed", payload)

    def patch_applied(self, files: list[str]) -> None:
        self.event("patch_applied", {"files": self._value(list(files or []))})

    def test_started(self, command: str) -> None:
        self.event("test_started", {"command": self._value(command)})

    def test_result(self, passed: int, failed: int, skipped: int = 0,
                    output: str | None = None) -> None:
        payload: dict[str, Any] = {"passed": passed, "failed": failed, "skipped": skipped}
        if output is not None:
            payload["output"] = self._value(output)
        self.event("test_result", self._value(payload), level="warn" if failed else "info")

    def error(self, message: str, **details: Any) -> None:
        self.event("error", self._value({**details, "message": message}), level="error")

    def set_output(self, value: Any) -> None:
        """The run's output when it succeeds."""
        self._output = value


def _count(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    if number != number or number < 0 or number == float("inf"):
        return 0
    return int(number) if number.is_integer() else number


class _Entered:
    """What one ``with`` of a scope holds until its exit."""

    def __init__(self, run: AgentRun, span: trace.Span, owns_lifecycle: bool) -> None:
        self.run = run
        self.span = span
        self.owns_lifecycle = owns_lifecycle
        self.tokens: tuple[Any, Any] | None = None


class AgentRunScope:
    """Returned by ``trace_agent_run``: a context manager (``with``/``async with``) and a
    decorator of sync and async functions (one run per call)."""

    def __init__(self, kind: str, *, name: str = "", input: Any = None,
                 run_id: str | None = None, idempotency_key: str | None = None,
                 project: str | None = None, manage_lifecycle: bool | None = None) -> None:
        self.kind = kind
        self.name = name
        self.input = input
        self.run_id = run_id
        self.idempotency_key = idempotency_key
        self.project = project
        self.manage_lifecycle = manage_lifecycle
        self._entered: list[_Entered] = []

    def _copy(self) -> AgentRunScope:
        return AgentRunScope(self.kind, name=self.name, input=self.input, run_id=self.run_id,
                             idempotency_key=self.idempotency_key, project=self.project,
                             manage_lifecycle=self.manage_lifecycle)

    # --- decorator ------------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._copy() as run:
                    result = await func(*args, **kwargs)
                    if run._output is _UNSET:
                        run.set_output(result)
                    return result
            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self._copy() as run:
                result = func(*args, **kwargs)
                if run._output is _UNSET:
                    run.set_output(result)
                return result
        return run_sync  # type: ignore[return-value]

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> AgentRun:
        entered = self._open()
        self._connect(entered)
        self._activate(entered)
        return entered.run

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        entered = self._entered.pop() if self._entered else None
        if entered is not None:
            self._close(entered, exc)
            self._finish(entered, exc, tb)
        return False  # the agent's exception, if any, goes on unchanged

    async def __aenter__(self) -> AgentRun:
        entered = self._open()
        # The HTTP calls in a thread, so the event loop runs on meanwhile; the context
        # changes stay in the task (``_activate``).
        await asyncio.get_running_loop().run_in_executor(
            None, contextvars.copy_context().run, self._connect, entered)
        self._activate(entered)
        return entered.run

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        entered = self._entered.pop() if self._entered else None
        if entered is not None:
            self._close(entered, exc)
            await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, self._finish, entered, exc, tb)
        return False

    # --- the steps ------------------------------------------------------------------------------

    def _open(self) -> _Entered:
        state = runtime.state()
        label = self.name or self.kind
        try:
            span = state.tracer.start_span(
                f"invoke_agent {label}", kind=SpanKind.INTERNAL,
                attributes={"gen_ai.operation.name": "invoke_agent",
                            "gen_ai.agent.name": label,
                            "tracefoundry.run.kind": self.kind})
        except Exception:
            logger.warning("tracefoundry_sdk: starting the run's span failed", exc_info=True)
            span = trace.INVALID_SPAN
        run = AgentRun(kind=self.kind, name=self.name, span=span, run_id=self.run_id,
                       state=state)
        owns = self.manage_lifecycle if self.manage_lifecycle is not None else not self.run_id
        entered = _Entered(run, span, owns)
        self._entered.append(entered)
        return entered

    def _connect(self, entered: _Entered) -> None:
        """Create and start the run, or check the one to attach to (blocking HTTP)."""
        run, state = entered.run, entered.run._state
        if state.client is None:
            entered.owns_lifecycle = False
            return
        deadline = time.monotonic() + state.config.create_timeout_s
        try:
            if run.run_id is None:
                body: dict[str, Any] = {
                    "kind": self.kind, "name": self.name[:256],  # the server's limit
                    "input": jsonable(self.input, state.config.payload_max_chars),
                }
                if run.trace_id and not self.idempotency_key:
                    # With a key, a repeat must send the same body (else 409), and each
                    # attempt has its own trace: the server links the first one it gets
                    # spans of instead.
                    body["trace_id"] = run.trace_id
                project = self.project or state.config.project
                if project:
                    body["project"] = project
                if self.idempotency_key:
                    body["idempotency_key"] = self.idempotency_key
                created = state.client.request("POST", "/api/v1/runs", body,
                                               deadline_s=_left(deadline))
                run.run_id = created["id"]
                run_state = created.get("state")
            else:
                run_state = "queued" if entered.owns_lifecycle else None
            if run.run_id and entered.owns_lifecycle:
                if run_state == "queued":
                    state.client.request("POST", f"/api/v1/runs/{run.run_id}/start", {},
                                         deadline_s=_left(deadline))
                elif run_state != "running":
                    # An idempotent repeat of a run that has finished: record nothing more.
                    logger.warning("tracefoundry_sdk: run %s is already %s; not driving it",
                                   run.run_id, run_state)
                    entered.owns_lifecycle = False
                    run.already_finished = True
        except ApiError as exc:
            if self.run_id is None and run.run_id is None:
                logger.warning("tracefoundry_sdk: could not create the %s run (%s); the agent "
                               "runs untracked: spans are still exported, run events are "
                               "dropped", self.kind, exc)
                entered.owns_lifecycle = False
            elif exc.status == 409:
                pass  # already started (by whoever holds it): the finish call says the rest
            else:
                logger.warning("tracefoundry_sdk: could not start run %s (%s)", run.run_id, exc)
        except Exception:
            logger.warning("tracefoundry_sdk: creating the %s run failed", self.kind,
                           exc_info=True)
            if self.run_id is None:
                run.run_id = None
                entered.owns_lifecycle = False
        if run.run_id:
            with contextlib.suppress(Exception):
                entered.span.set_attribute(RUN_ID_ATTRIBUTE, run.run_id)

    def _activate(self, entered: _Entered) -> None:
        try:
            span_token = otel_context.attach(trace.set_span_in_context(entered.span))
            run_token = _current_run.set(entered.run)
            entered.tokens = (span_token, run_token)
        except Exception:
            logger.warning("tracefoundry_sdk: activating the run's span failed", exc_info=True)

    def _close(self, entered: _Entered, exc: BaseException | None) -> None:
        """Leave the run's context and end its span (in the agent's task or thread)."""
        try:
            if entered.tokens is not None:
                span_token, run_token = entered.tokens
                _current_run.reset(run_token)
                otel_context.detach(span_token)
        except Exception:
            logger.warning("tracefoundry_sdk: leaving the run's context failed", exc_info=True)
        try:
            span = entered.span
            if exc is not None:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, cap(_describe(exc), 1000)))
            else:
                span.set_status(Status(StatusCode.OK))
            span.end()
        except Exception:
            logger.warning("tracefoundry_sdk: ending the run's span failed", exc_info=True)

    def _finish(self, entered: _Entered, exc: BaseException | None, tb: Any) -> None:
        """Flush the run's events, then succeed or fail it (blocking HTTP, bounded)."""
        run, state = entered.run, entered.run._state
        try:
            if state.sender is not None and run.run_id:
                state.sender.flush(state.config.flush_timeout_s)
            if state.client is None or not run.run_id or not entered.owns_lifecycle:
                return
            path = f"/api/v1/runs/{run.run_id}"
            if exc is None:
                action = "succeed"
                body: dict[str, Any] = {}
                if run._output is not _UNSET and run._output is not None:
                    body["output"] = jsonable(run._output, state.config.payload_max_chars)
            else:
                action, body = "fail", {"error": _error_of(exc, tb)}
            if state.sender is not None and state.sender.unreachable:
                # The events could not go either: one attempt, not a second wait as long.
                state.client.request_once("POST", f"{path}/{action}", body)
            else:
                state.client.request("POST", f"{path}/{action}", body,
                                     deadline_s=state.config.flush_timeout_s)
        except ApiError as exc_api:
            logger.warning("tracefoundry_sdk: could not finish run %s (%s)", run.run_id, exc_api)
        except Exception:
            logger.warning("tracefoundry_sdk: finishing run %s failed", run.run_id, exc_info=True)


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__


def _error_of(exc: BaseException, tb: Any) -> str:
    """The run's error: ``<type>: <message>`` on the first line (what a list shows), then the
    last frames of the stack (the server keeps a run's error as text)."""
    kind = type(exc)
    module = kind.__module__
    name = kind.__qualname__ if module in ("builtins", "__main__") else \
        f"{module}.{kind.__qualname__}"
    try:
        stack = "".join(traceback.format_exception(kind, exc, tb or exc.__traceback__,
                                                   limit=-STACK_FRAMES))
    except Exception:
        stack = ""
    if len(stack) > STACK_CHARS:
        stack = "…" + stack[-STACK_CHARS:]
    message = cap(str(exc), 4000)
    return f"{name}: {message}\n{stack}" if message else f"{name}\n{stack}"


def trace_agent_run(kind: str, *, name: str = "", input: Any = None, run_id: str | None = None,
                    idempotency_key: str | None = None, project: str | None = None,
                    manage_lifecycle: bool | None = None) -> AgentRunScope:
    """Trace one agent run: ``with tf.trace_agent_run("agent.session", name=...) as run:``,
    ``async with …``, or ``@tf.trace_agent_run("agent.session")`` on a sync or async function
    (its return value becomes the run's output unless it called ``set_output``).

    ``run_id``: attach to an existing run (e.g. inside a worker job) instead of creating one;
    its lifecycle then stays with its owner unless ``manage_lifecycle=True``.
    ``idempotency_key``: the same key gives the same run (the server's rule).
    ``project``: the project slug for a new run (default: ``configure(project=…)``, else the
    API key's project).
    """
    return AgentRunScope(kind, name=name, input=input, run_id=run_id,
                         idempotency_key=idempotency_key, project=project,
                         manage_lifecycle=manage_lifecycle)
