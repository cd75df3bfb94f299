"""The job registry: which Python callable runs the runs of each ``kind``, and the built-in kinds.

Any installed app registers jobs in its own ``jobs.py`` (``manage.py worker`` imports them all)::

    from runs.jobs import JobContext, JobError, job

    @job("script.pull")
    def pull(ctx: JobContext):
        ctx.check()                       # raises JobCanceled once a cancel was requested
        print("pulling", ctx.input["source"])   # stored as a `log` event of the run
        return {"pulled": 3}              # stored as the run's output (a payload blob)

Agent-like jobs get the Python SDK's helpers through the context (when ``tracefoundry_sdk`` is
installed): ``ctx.llm_call(...)``, ``ctx.tool_call(...)``, ``ctx.note(...)`` and the rest of
``ctx.agent`` (an SDK ``AgentRun`` attached to this run) record run events through the services
and spans under the worker's span of the run::

    @job("demo.triage")
    def triage(ctx: JobContext):
        with ctx.llm_call("gpt-4o-mini", provider="openai", prompt=ctx.input["text"]) as call:
            call.record_response(text=answer, input_tokens=120, output_tokens=8)
        with ctx.tool_call("lookup", args={"id": 7}) as tool:
            tool.record_result({"found": True})

A job returns its output (JSON-able, or None), or raises: ``JobError(retryable=False)`` fails the
run for good, any other exception is retryable (re-queued with backoff until ``max_attempts``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

from runs.models import Run
from runs.services import KIND_RE, event_append_safe

JobFunc = Callable[["JobContext"], Any]

_registry: dict[str, JobFunc] = {}


class JobError(Exception):
    """A job's failure; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class JobCanceled(Exception):
    """Raised inside a job by ``ctx.check()`` (and friends) once a cancel was requested."""


class JobLost(JobCanceled):
    """The run was taken from this worker (reaped as stalled, force-canceled): stop working."""


def job(kind: str) -> Callable[[JobFunc], JobFunc]:
    """Register the decorated callable as the job of ``kind``."""
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ImproperlyConfigured(f"job kind {kind!r} must match {KIND_RE.pattern}")

    def register(func: JobFunc) -> JobFunc:
        existing = _registry.get(kind)
        if existing is not None and _name(existing) != _name(func):
            raise ImproperlyConfigured(
                f"job kind {kind!r} is registered twice: {_name(existing)} and {_name(func)}"
            )
        _registry[kind] = func
        return func

    return register


def _name(func: Callable) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def jobs_discover() -> dict[str, JobFunc]:
    """Import the ``jobs`` module of every installed app; return the registry."""
    autodiscover_modules("jobs")
    return dict(_registry)


def job_for(kind: str) -> JobFunc | None:
    return _registry.get(kind)


class JobContext:
    """What a running job knows about its run, and how it talks back to the worker."""

    def __init__(
        self,
        *,
        run: Run,
        worker_id: str,
        heartbeat: Callable[[JobContext], None],
        heartbeat_seconds: float,
        stopping: threading.Event,
        agent_factory: Callable[[JobContext], Any] | None = None,
    ) -> None:
        self.run = run
        self.run_id: str = run.id
        self.kind: str = run.kind
        self.input: Any = run.input
        self.attempt: int = run.attempt
        self.max_attempts: int = run.max_attempts
        self.worker_id = worker_id
        self.heartbeat_seconds = heartbeat_seconds
        self._heartbeat = heartbeat
        self._stopping = stopping
        self._interrupt = threading.Event()
        self.cancel_requested = False
        self.lost = False
        self.released = False  # handed back to the queue by a stopping worker
        self._agent_factory = agent_factory
        self._agent: Any = None

    @property
    def shutting_down(self) -> bool:
        """The worker received SIGTERM: it waits TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS
        for this job, then hands the run back to the queue (a job may look at this to stop at
        a safe point early)."""
        return self._stopping.is_set()

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self._interrupt.set()

    def mark_lost(self) -> None:
        self.lost = True
        self._interrupt.set()

    def check(self) -> None:
        """Raise JobCanceled (JobLost) when the run should stop; cheap, call it often."""
        if self.lost:
            raise JobLost(f"run {self.run_id} is no longer held by worker {self.worker_id}")
        if self.cancel_requested:
            raise JobCanceled(f"cancel requested for run {self.run_id}")

    def heartbeat(self) -> None:
        """Heartbeat now (the worker also does, every TRACEFOUNDRY_HEARTBEAT_SECONDS), then
        ``check()``."""
        self._heartbeat(self)
        self.check()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, heartbeating on the way; raises JobCanceled as soon as a cancel
        request is seen."""
        deadline = time.monotonic() + max(0.0, seconds)
        self.check()
        while (left := deadline - time.monotonic()) > 0:
            if self._interrupt.wait(min(left, self.heartbeat_seconds)):
                self.check()
            if time.monotonic() < deadline:
                self.heartbeat()

    def event(self, type: str, payload: Any = None, *, level: str | None = None,
              step_id: str | None = None) -> None:
        """Append an agent event to the run (best effort: never raises)."""
        event_append_safe(run_id=self.run_id, type=type, payload=payload, level=level,
                          step_id=step_id, source="worker", worker_id=self.worker_id)

    def progress(self, completed: int, total: int, message: str = "") -> None:
        self.event("progress", {"completed": completed, "total": total, "message": message})

    # -- the SDK's helpers (plugged in by the wiring layer: tracefoundry/sdk_bridge.py)

    @property
    def agent(self) -> Any:
        """The SDK's ``AgentRun`` attached to this run: its helpers (``llm_call``,
        ``tool_call``, ``note``, ``log``, ``patch_proposed``, ``test_result``…) append run
        events through the services and make spans under the worker's span of the run. Made
        on first use, in the job's thread (an async job touches it before starting its event
        loop); the worker finishes it when the job returns."""
        if self._agent is None:
            if self._agent_factory is None:
                raise RuntimeError("this worker has no SDK helpers (is tracefoundry_sdk "
                                   "installed? pip install ./sdk/python)")
            self._agent = self._agent_factory(self)
        return self._agent

    def llm_call(self, model: str, **options: Any) -> Any:
        """``with ctx.llm_call("gpt-4o", provider="openai", prompt=messages) as call:``
        (``tracefoundry_sdk.llm_call`` inside this run)."""
        return self.agent.llm_call(model, **options)

    def tool_call(self, name: str, **options: Any) -> Any:
        """``with ctx.tool_call("read_file", args={...}) as tool:``
        (``tracefoundry_sdk.tool_call`` inside this run)."""
        return self.agent.tool_call(name, **options)

    def note(self, text: str) -> None:
        self.agent.note(text)

    def agent_finish(self, error: BaseException | None) -> None:
        """The worker, once the job returned (``error``: what it raised): end the SDK's span
        and store the events still queued, before the run is reported. Never raises."""
        agent, self._agent = self._agent, None
        if agent is not None:
            try:
                agent.finish(error)
            except Exception:
                logging.getLogger("tracefoundry.worker").warning(
                    "finishing the SDK helpers of run %s failed", self.run_id, exc_info=True)


# --- built-in kinds ---------------------------------------------------------------------------

def object_input(ctx: JobContext) -> dict:
    if ctx.input is None:
        return {}
    if not isinstance(ctx.input, dict):
        raise JobError(f"{ctx.kind} expects a JSON object as input", retryable=False)
    return ctx.input


@job("system.noop")
def system_noop(ctx: JobContext) -> Any:
    """Succeeds at once, echoing its input as its output."""
    return ctx.input


@job("system.sleep")
def system_sleep(ctx: JobContext) -> dict:
    """``{"seconds": s}``: sleeps, heartbeating, and stops when a cancel is requested."""
    seconds = object_input(ctx).get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or \
            not 0 <= seconds <= 86_400:
        raise JobError("system.sleep: seconds must be a number between 0 and 86400")
    ctx.sleep(float(seconds))
    return {"slept": seconds}


@job("system.fail")
def system_fail(ctx: JobContext) -> None:
    """``{"retryable": bool}``: fails on purpose (retryable ones go back to the queue)."""
    retryable = bool(object_input(ctx).get("retryable", False))
    raise JobError(f"system.fail: failing on purpose (retryable={retryable})",
                   retryable=retryable)
