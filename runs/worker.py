"""The worker process behind ``manage.py worker``: claim runs, run their jobs, report back.

One main thread claims (as many runs as it has free slots, in one statement) and hands runs to
``concurrency`` slot threads; a housekeeping thread heartbeats every run in hand (and tells jobs
about cancel requests) and runs the reaper on a schedule; on PostgreSQL a listener thread wakes
the main thread on ``NOTIFY`` (one idle worker of the same kinds listens at a time, while it has a
free slot: runs/wakeup.py), otherwise it polls.

Succeeded jobs are reported in batches: a slot hands the run back to the main thread, which
succeeds every run finished meanwhile at once (``services.run_succeed_batch``: one statement on
PostgreSQL, each run with its own ``run.succeeded`` event) before it claims again. The run stays
in hand (heartbeated) until then. Failures and cancels are reported by the slot right away.

The worker registers itself (runs/worker_registry.py) at start, beats there on the housekeeping
tick and unregisters on a clean exit, so a queued run can tell whether any online worker claims
its kind.

SIGTERM (``stop()``): stop claiming, give the jobs in hand the shutdown grace period less a
reserve, hand the unfinished ones back to the queue, return: all within the grace period. Log
lines are ``key=value`` with the run id and
timings.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import random
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from runs import services
from runs.jobs import JobCanceled, JobContext, JobError, JobLost, job_for, jobs_discover
from runs.models import Run
from runs.services import run_claim_next, run_heartbeat_batch, run_release, runs_reap
from runs.wakeup import QueueListener, listener_supported
from runs.worker_registry import (
    worker_beat,
    worker_register,
    worker_unregister,
    workers_forget_stale,
)
from tracefoundry.errors import DomainError

log = logging.getLogger("tracefoundry.worker")

LOG_FLUSH_BYTES = 32 * 1024
# A succeeded job waits at most this long for the jobs still running beside it, so that they are
# reported together (one statement instead of one each).
REPORT_BATCH_WAIT = 0.02
# Of the shutdown grace period, the part kept for handing the unfinished runs back and letting
# the threads close their connections (at most a second): the whole shutdown, SIGTERM to exit,
# fits in the grace period, so a container's stop timeout never has to SIGKILL a worker.
SHUTDOWN_RESERVE = 1.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def logfmt(event: str, **fields: Any) -> str:
    parts = [f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


@dataclass
class _Finished:
    """A succeeded job waiting for the main thread to report it."""

    ctx: JobContext
    output: Any
    started: float  # perf_counter() when the job started
    job_ms: float


@dataclass
class WorkerConfig:
    worker_id: str
    concurrency: int = 1
    kinds: Sequence[str] | None = None  # None: every registered kind
    heartbeat_seconds: float | None = None
    stall_timeout: float | None = None
    reaper_interval: float | None = None
    poll_seconds: float | None = None
    shutdown_grace: float | None = None
    listen: bool = True

    def __post_init__(self) -> None:
        s = settings
        if self.heartbeat_seconds is None:
            self.heartbeat_seconds = float(s.TRACEFOUNDRY_HEARTBEAT_SECONDS)
        if self.stall_timeout is None:
            self.stall_timeout = float(s.TRACEFOUNDRY_STALL_TIMEOUT_SECONDS)
        if self.reaper_interval is None:
            self.reaper_interval = float(s.TRACEFOUNDRY_REAPER_INTERVAL_SECONDS)
        if self.poll_seconds is None:
            self.poll_seconds = s.TRACEFOUNDRY_WORKER_POLL_MS / 1000
        if self.shutdown_grace is None:
            self.shutdown_grace = float(s.TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS)
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


# --- capturing job output ---------------------------------------------------------------------

class _LogSink:
    """stdout/stderr text a job wrote and that is not stored yet, in order."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()
        self.chunks: list[list[str]] = []  # [stream, text], consecutive writes merged
        self.size = 0

    def write(self, stream: str, text: str) -> None:
        with self.lock:
            if self.chunks and self.chunks[-1][0] == stream:
                self.chunks[-1][1] += text
            else:
                self.chunks.append([stream, text])
            self.size += len(text)
            full = self.size >= LOG_FLUSH_BYTES
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            chunks, self.chunks, self.size = self.chunks, [], 0
        events = [{"type": "log", "level": "warn" if stream == "stderr" else "info",
                   "payload": {"text": text, "stream": stream}}
                  for stream, text in chunks if text]
        if not events:
            return
        try:
            services.event_append_batch(run_id=self.ctx.run_id, events=events, source="worker",
                                   worker_id=self.ctx.worker_id)
        except Exception:
            log.warning(logfmt("job.log_lost", run_id=self.ctx.run_id, chunks=len(events)),
                        exc_info=True)


_current = threading.local()


class _StreamRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: text written by a thread running a job goes to that
    job's sink, anything else to the real stream."""

    def __init__(self, original: Any, name: str) -> None:
        self.original = original
        self.name = name

    def write(self, text: str) -> int:
        sink = getattr(_current, "sink", None)
        if sink is None:
            return self.original.write(text)
        sink.write(self.name, text)
        return len(text)

    def flush(self) -> None:
        if getattr(_current, "sink", None) is None:
            self.original.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


_routers_lock = threading.Lock()
_routers_users = 0
_saved_streams: tuple[Any, Any] | None = None


def _routers_install() -> None:
    global _routers_users, _saved_streams
    with _routers_lock:
        if _routers_users == 0:
            _saved_streams = (sys.stdout, sys.stderr)
            sys.stdout = _StreamRouter(sys.stdout, "stdout")
            sys.stderr = _StreamRouter(sys.stderr, "stderr")
        _routers_users += 1


def _routers_remove() -> None:
    global _routers_users
    with _routers_lock:
        _routers_users -= 1
        if _routers_users == 0 and _saved_streams is not None:
            sys.stdout, sys.stderr = _saved_streams


# --- the worker -------------------------------------------------------------------------------

class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id
        registry = jobs_discover()
        wanted = set(config.kinds) if config.kinds else set(registry)
        unknown = sorted(wanted - set(registry))
        if unknown:
            raise ValueError(f"no job is registered for kind(s): {', '.join(unknown)}")
        # A worker claims only what it can run: other kinds are for other (external) workers.
        self.kinds = sorted(wanted)
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._wake = threading.Event()
        # Set while the worker has a free slot and is not stopping: only then may it be the one
        # worker of its kinds that listens for new runs (runs/wakeup.py).
        self._room = threading.Event()
        self._room.set()
        self._inbox: queue.Queue[JobContext | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_hand: dict[str, tuple[JobContext, _LogSink]] = {}
        self._finished: list[_Finished] = []  # succeeded jobs not reported yet (under _lock)
        self._finished_since = 0.0  # monotonic() when the oldest of them finished
        self.executed = 0
        self.report_batches = 0
        self._threads: list[threading.Thread] = []
        self._stop_at: float | None = None  # monotonic() of the first stop()
        # Orders the housekeeping's beat (which re-registers a forgotten worker) against the
        # unregistering at shutdown, so a stopped worker never registers again.
        self._registry_lock = threading.Lock()

    # -- control

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (the SIGTERM handler calls this)."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()  # the grace period counts from the signal
        self._stopping.set()
        self._room.clear()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the loops

    def run(self) -> None:
        """Work until ``stop()``; then finish or hand back the runs in hand, and return."""
        cfg = self.config
        _routers_install()
        threads = [threading.Thread(target=self._slot, name=f"tf-worker-slot-{i}", daemon=True)
                   for i in range(cfg.concurrency)]
        threads.append(threading.Thread(target=self._housekeeping, name="tf-worker-house",
                                        daemon=True))
        for thread in threads:
            thread.start()
        self._threads = threads
        if cfg.listen and listener_supported():
            QueueListener(self._on_notify, self._done, kinds=self.kinds,
                          has_room=self._room).start()
        self._register()
        log.info(logfmt("worker.started", worker=self.worker_id, kinds=",".join(self.kinds),
                        concurrency=cfg.concurrency, db=connection.vendor,
                        wake="listen/notify" if cfg.listen and listener_supported() else "poll",
                        poll_ms=round(cfg.poll_seconds * 1000)))
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                wait = self._report_due()
                if wait is None:
                    self._report_finished()
                    free = cfg.concurrency - self._count_in_hand()
                    if free > 0:
                        contexts = self._claim(free)
                        for ctx in contexts:
                            self._inbox.put(ctx)
                        free -= len(contexts)
                    self._set_room(free > 0)
                self._wake.wait(cfg.poll_seconds if wait is None else wait)
        finally:
            self._shutdown()
            _routers_remove()
            connection.close()

    def run_once(self) -> int:
        """Claim up to ``concurrency`` runs and run their jobs here, one after the other (the
        succeeded ones are reported together at the end); returns how many ran. For tests and
        one-shot use (no threads)."""
        _routers_install()
        try:
            contexts = self._claim(self.config.concurrency)
            for ctx in contexts:
                self._execute(ctx)
            self._report_finished()
            return len(contexts)
        finally:
            _routers_remove()

    def _claim(self, free: int) -> list[JobContext]:
        try:
            runs = run_claim_next(worker_id=self.worker_id, kinds=self.kinds, limit=free)
        except Exception:
            log.exception(logfmt("worker.claim_failed", worker=self.worker_id))
            close_old_connections()
            self._stopping.wait(self.config.poll_seconds)
            return []
        contexts = []
        for run in runs:
            ctx = self._context(run)
            with self._lock:
                self._in_hand[run.id] = (ctx, _LogSink(ctx))
            contexts.append(ctx)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(logfmt("run.claimed", worker=self.worker_id, run_id=run.id,
                                 kind=run.kind, attempt=run.attempt))
        return contexts

    def _register(self) -> None:
        try:
            worker_register(worker_id=self.worker_id, kinds=self.kinds,
                            host=socket.gethostname(), pid=os.getpid(),
                            concurrency=self.config.concurrency)
        except Exception:
            # The housekeeping tick registers it again once the database answers.
            log.exception(logfmt("worker.register_failed", worker=self.worker_id))
            close_old_connections()

    def _beat_registry(self) -> None:
        with self._registry_lock:
            if not self._stopping.is_set() and not worker_beat(worker_id=self.worker_id):
                self._register()  # forgotten meanwhile (or never registered)

    def _context(self, run: Run) -> JobContext:
        return JobContext(run=run, worker_id=self.worker_id, heartbeat=self._heartbeat_one,
                          heartbeat_seconds=self.config.heartbeat_seconds,
                          stopping=self._stopping)

    def _set_room(self, room: bool) -> None:
        if room and not self._stopping.is_set():
            self._room.set()
        else:
            self._room.clear()

    def _count_in_hand(self) -> int:
        with self._lock:
            return len(self._in_hand)

    def _on_notify(self, kind: str) -> None:
        if not kind or kind in self.kinds:
            self._wake.set()

    def _slot(self) -> None:
        while True:
            ctx = self._inbox.get()
            if ctx is None:
                break
            try:
                self._execute(ctx)
            except Exception:
                log.exception(logfmt("worker.slot_error", worker=self.worker_id,
                                     run_id=ctx.run_id))
                close_old_connections()
            self._wake.set()
        connection.close()

    # -- one job

    def _execute(self, ctx: JobContext) -> None:
        with self._lock:
            entry = self._in_hand.get(ctx.run_id)
        sink = entry[1] if entry else _LogSink(ctx)
        started = time.perf_counter()
        outcome, output, error, retryable = "succeeded", None, "", False
        func = job_for(ctx.kind)
        if log.isEnabledFor(logging.INFO):
            log.info(logfmt("run.started", worker=self.worker_id, run_id=ctx.run_id,
                            kind=ctx.kind, attempt=ctx.attempt,
                            wait_ms=getattr(ctx.run, "wait_ms", None)))
        _current.sink = sink
        try:
            if func is None:
                raise JobError(f"no job is registered for kind {ctx.kind!r}", retryable=False)
            output = func(ctx)
        except JobLost:
            outcome = "lost"
        except JobCanceled:
            outcome = "canceled"
        except JobError as exc:
            outcome, error, retryable = "failed", f"{type(exc).__name__}: {exc}", exc.retryable
        except Exception as exc:
            outcome, retryable = "failed", True
            error = "".join(traceback.format_exception(exc))
        finally:
            _current.sink = None
        job_ms = (time.perf_counter() - started) * 1000
        try:
            sink.flush()
            if outcome == "succeeded" and not ctx.released:
                # Reported with the other runs finished meanwhile (``_report_finished``).
                with self._lock:
                    if not self._finished:
                        self._finished_since = time.monotonic()
                    self._finished.append(_Finished(ctx, output, started, job_ms))
                self._wake.set()
                return
            final = self._report(ctx, outcome, output, error, retryable)
        except BaseException:
            self._forget(ctx)
            raise
        self._forget(ctx)
        self._log_finished(ctx, final, started, job_ms)

    def _forget(self, ctx: JobContext) -> None:
        with self._lock:
            self._in_hand.pop(ctx.run_id, None)
            self.executed += 1

    def _log_finished(self, ctx: JobContext, final: str, started: float, job_ms: float) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(logfmt(
                "run.finished", worker=self.worker_id, run_id=ctx.run_id, kind=ctx.kind,
                attempt=ctx.attempt, outcome=final, wait_ms=getattr(ctx.run, "wait_ms", None),
                job_ms=job_ms, total_ms=(time.perf_counter() - started) * 1000,
            ))

    def _report_due(self) -> float | None:
        """None when the main thread should report the succeeded jobs (if any) and claim now;
        else how long to wait for the jobs still running (at most REPORT_BATCH_WAIT)."""
        with self._lock:
            if not self._finished or len(self._finished) >= len(self._in_hand):
                return None
            left = self._finished_since + REPORT_BATCH_WAIT - time.monotonic()
        return left if left > 0 else None

    def _report_finished(self) -> None:
        """Report every succeeded job not reported yet, in one batch (the main thread)."""
        with self._lock:
            batch, self._finished = self._finished, []
        if not batch:
            return
        self.report_batches += 1
        try:
            results: dict[str, Any] | None = services.run_succeed_batch(
                results=[(f.ctx.run_id, f.output) for f in batch], worker_id=self.worker_id)
        except Exception:
            log.exception(logfmt("worker.batch_report_failed", worker=self.worker_id,
                                 runs=len(batch)))
            close_old_connections()
            results = None  # one by one below: each run gets its own answer
        for f in batch:
            ctx = f.ctx
            try:
                if results is None:
                    final = self._report(ctx, "succeeded", f.output, "", False)
                else:
                    final = self._outcome(ctx, results.get(ctx.run_id))
            except Exception:
                log.exception(logfmt("worker.report_failed", worker=self.worker_id,
                                     run_id=ctx.run_id))
                close_old_connections()
                final = "lost"
            self._forget(ctx)
            self._log_finished(ctx, final, f.started, f.job_ms)

    def _outcome(self, ctx: JobContext, result: Any) -> str:
        if isinstance(result, DomainError):
            # Reaped, force-canceled or finished elsewhere meanwhile: the run is not ours.
            log.warning(logfmt("run.report_rejected", worker=self.worker_id, run_id=ctx.run_id,
                               outcome="succeeded", error=result.message))
            return "lost"
        return "succeeded"

    def _report(self, ctx: JobContext, outcome: str, output: Any, error: str,
                retryable: bool) -> str:
        """Record the job's outcome; returns what became of the run."""
        if ctx.released:
            return "released"
        if outcome == "lost":
            return "lost"
        try:
            if outcome == "succeeded":
                services.run_succeed(run_id=ctx.run_id, output=output, worker_id=self.worker_id)
            elif outcome == "canceled":
                services.run_cancel(run_id=ctx.run_id, reason="canceled by the job",
                                    worker_id=self.worker_id)
            else:
                run = services.run_fail(run_id=ctx.run_id, error=error, retryable=retryable,
                                        worker_id=self.worker_id)
                return "retrying" if run.state == "queued" else "failed"
        except DomainError as exc:
            # Reaped, force-canceled or finished elsewhere meanwhile: the run is not ours.
            log.warning(logfmt("run.report_rejected", worker=self.worker_id, run_id=ctx.run_id,
                               outcome=outcome, error=exc.message))
            return "lost"
        return outcome

    # -- heartbeats and the reaper

    def _heartbeat_one(self, ctx: JobContext) -> None:
        self._apply_beats([ctx.run_id])

    def _apply_beats(self, run_ids: list[str]) -> None:
        beats = run_heartbeat_batch(worker_id=self.worker_id, run_ids=run_ids)
        with self._lock:
            entries = {run_id: self._in_hand.get(run_id) for run_id in run_ids}
        for run_id, entry in entries.items():
            if entry is None:
                continue
            ctx = entry[0]
            beat = beats.get(run_id)
            if beat is None:
                if not ctx.released:
                    ctx.mark_lost()
            elif beat.cancel_requested and not ctx.cancel_requested:
                log.info(logfmt("run.cancel_seen", worker=self.worker_id, run_id=run_id))
                ctx.request_cancel()

    def _housekeeping(self) -> None:
        cfg = self.config
        now = time.monotonic()
        next_beat = now + cfg.heartbeat_seconds
        # Spread the reapers of workers started together.
        next_reap = now + random.uniform(0, min(cfg.reaper_interval, 1.0))
        while not self._done.wait(0.2):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + cfg.heartbeat_seconds
                    self._beat_registry()
                    with self._lock:
                        in_hand = list(self._in_hand.items())
                    if in_hand:
                        self._apply_beats([run_id for run_id, _ in in_hand])
                        for _, (_, sink) in in_hand:
                            sink.flush()
                if now >= next_reap and not self._stopping.is_set():
                    next_reap = now + cfg.reaper_interval
                    runs_reap(stall_timeout=cfg.stall_timeout)
                    workers_forget_stale()
            except Exception:
                log.exception(logfmt("worker.housekeeping_failed", worker=self.worker_id))
                close_old_connections()
        connection.close()

    # -- shutdown

    def _shutdown(self) -> None:
        cfg = self.config
        stop_at = self._stop_at if self._stop_at is not None else time.monotonic()
        end = stop_at + cfg.shutdown_grace
        reserve = min(SHUTDOWN_RESERVE, cfg.shutdown_grace / 4)
        jobs_deadline = end - reserve
        log.info(logfmt("worker.stopping", worker=self.worker_id, in_hand=self._count_in_hand(),
                        grace_s=cfg.shutdown_grace))
        try:
            # It claims nothing more: runs of its kinds must not count on it.
            with self._registry_lock:
                worker_unregister(worker_id=self.worker_id)
        except Exception:
            log.exception(logfmt("worker.unregister_failed", worker=self.worker_id))
            close_old_connections()
        # Runs claimed but not started yet go straight back.
        while True:
            try:
                ctx = self._inbox.get_nowait()
            except queue.Empty:
                break
            if ctx is not None:
                self._release(ctx)
                with self._lock:
                    self._in_hand.pop(ctx.run_id, None)
        while self._count_in_hand() and time.monotonic() < jobs_deadline:
            self._report_finished()
            if self._count_in_hand():
                self._wake.wait(0.05)
                self._wake.clear()
        self._report_finished()
        with self._lock:
            left = [ctx for ctx, _ in self._in_hand.values()]
        for ctx in left:
            self._release(ctx)
        self._done.set()
        for _ in range(cfg.concurrency):
            self._inbox.put(None)
        # Let the threads give their database connections back, until half the reserve is left
        # for the process to exit (a job still running after it was handed back is abandoned:
        # its thread is a daemon).
        threads_deadline = end - reserve / 2
        for thread in self._threads:
            thread.join(max(0.0, threads_deadline - time.monotonic()))
        log.info(logfmt("worker.stopped", worker=self.worker_id, executed=self.executed,
                        report_batches=self.report_batches, released=len(left),
                        shutdown_ms=(time.monotonic() - stop_at) * 1000))

    def _release(self, ctx: JobContext) -> None:
        ctx.released = True
        ctx.mark_lost()  # someone else may run it now: a job that checks stops here
        try:
            run_release(run_id=ctx.run_id, worker_id=self.worker_id)
            log.warning(logfmt("run.released", worker=self.worker_id, run_id=ctx.run_id,
                               kind=ctx.kind, attempt=ctx.attempt))
        except DomainError as exc:
            log.warning(logfmt("run.release_rejected", worker=self.worker_id, run_id=ctx.run_id,
                               error=exc.message))
