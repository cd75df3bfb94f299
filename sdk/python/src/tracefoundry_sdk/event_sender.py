"""Run events sent in background batches (``POST /api/v1/runs/{id}/events`` with a list).

The agent's thread only appends to a bounded queue; one daemon thread sends. A batch leaves
when it holds ``batch_max_events`` events, when ``batch_interval_s`` has passed since the
oldest waiting one, or when someone flushes. A batch holds the events of one run, in the order
they were emitted, and batches of a run are sent one at a time, so the server stores them in
that order.

When the server does not answer (or says 429/503) the batch goes back to the head of the queue
and the thread waits (Retry-After, else exponential backoff); meanwhile the queue keeps the
newest ``queue_max_events`` events and counts the oldest it drops. An answer that retrying
cannot change (400, 401, 403, 404, 409) drops the batch with a warning — except a 400 naming
the bad events, where only those are dropped and the rest are sent again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any

from tracefoundry_sdk.api_client import ApiClient, ApiError, backoff_s

logger = logging.getLogger("tracefoundry_sdk")


class EventSender:
    def __init__(self, client: ApiClient, *, batch_max_events: int, batch_interval_s: float,
                 queue_max_events: int) -> None:
        self._client = client
        self._batch_max = batch_max_events
        self._interval = batch_interval_s
        self._queue_max = queue_max_events
        self._queue: deque[tuple[str, dict, float]] = deque()  # (run_id, event, enqueued at)
        self._cond = threading.Condition()
        self._inflight = 0  # events taken by the thread and not yet settled
        self._flush_requested = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._failing = False  # the last attempt failed: warn once per outage, not per retry
        self._attempts = 0  # failed attempts in a row (the backoff grows with them)
        if hasattr(os, "register_at_fork"):
            method = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method() or _nothing)())
        self.sent = 0
        self.dropped = 0  # the queue was full (oldest dropped) or the sender was closed
        self.rejected = 0  # the server refused them for good

    def _after_fork(self) -> None:
        """In a forked child the sending thread is gone and its lock may be held: start afresh.
        The events queued before the fork are the parent's to send, not sent twice."""
        self._cond = threading.Condition()
        self._thread = None
        self._queue.clear()
        self._inflight = 0

    # --- the agent's side ------------------------------------------------------------------

    def put(self, run_id: str, event: dict) -> None:
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            if len(self._queue) >= self._queue_max:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning("tracefoundry_sdk: the event queue is full (%d events); "
                                   "dropped the oldest (%d so far)", self._queue_max,
                                   self.dropped)
            self._queue.append((run_id, event, time.monotonic()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="tracefoundry-events")
                self._thread.start()
            if len(self._queue) >= self._batch_max:
                self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every event queued so far is settled (sent, refused or dropped), at most
        ``timeout_s``; whether it was."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return not (self._queue or self._inflight)
                self._cond.wait(left)
            return True

    def close(self, timeout_s: float) -> bool:
        """Flush (at most ``timeout_s``), then stop the thread; later events are dropped."""
        flushed = self.flush(timeout_s)
        with self._cond:
            self._closed = True
            left = len(self._queue)
            if left:
                self.dropped += left
                self._queue.clear()
                logger.warning("tracefoundry_sdk: %d run events could not be sent before "
                               "shutdown and were dropped", left)
            self._cond.notify_all()
        return flushed

    @property
    def unreachable(self) -> bool:
        """The last attempt to send got no answer (or a 429/503): the server is away."""
        return self._failing

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._inflight

    # --- the sending thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            run_id, events = batch
            try:
                retry_in = self._send(run_id, events)
            except Exception:  # a bug here must not kill the thread and silently stop events
                logger.warning("tracefoundry_sdk: sending run events failed", exc_info=True)
                retry_in = None
                with self._cond:
                    self.rejected += len(events)
            with self._cond:
                self._inflight = 0
                self._cond.notify_all()
                if retry_in is not None:
                    self._wait_backoff(retry_in)

    def _next_batch(self) -> tuple[str, list[dict]] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._queue:
                    due = self._queue[0][2] + self._interval
                    now = time.monotonic()
                    if (len(self._queue) >= self._batch_max or self._flush_requested
                            or now >= due):
                        break
                    self._cond.wait(due - now)
                else:
                    self._flush_requested = False
                    self._cond.wait()
            run_id = self._queue[0][0]
            events: list[dict] = []
            while self._queue and len(events) < self._batch_max and self._queue[0][0] == run_id:
                events.append(self._queue.popleft()[1])
            self._inflight = len(events)
            if not self._queue:
                self._flush_requested = False
            return run_id, events

    def _wait_backoff(self, seconds: float) -> None:
        """Wait before retrying (lock held); a new flush request or close cuts it short."""
        self._flush_requested = False
        deadline = time.monotonic() + seconds
        while not (self._closed or self._flush_requested):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _requeue(self, run_id: str, events: list[dict]) -> None:
        """Put a batch back at the head of the queue (lock held), dropping the oldest events
        beyond the queue's bound."""
        now = time.monotonic()
        room = self._queue_max - len(self._queue)
        keep = events[-room:] if room > 0 else []
        self.dropped += len(events) - len(keep)
        self._queue.extendleft((run_id, e, now) for e in reversed(keep))

    def _send(self, run_id: str, events: list[dict], *, attempt: int = 1) -> float | None:
        """Send one batch; None when it is settled, else the seconds to wait before retrying
        it (it is back in the queue)."""
        try:
            self._client.request_once("POST", f"/api/v1/runs/{run_id}/events", events)
        except ApiError as exc:
            if exc.retryable:
                with self._cond:
                    self._requeue(run_id, events)
                    if not self._failing:
                        logger.warning("tracefoundry_sdk: run events not sent yet, will retry: "
                                       "%s", exc)
                    self._failing = True
                    self._attempts += 1
                    return backoff_s(self._attempts, exc.retry_after)
            if exc.status == 413 and len(events) > 1:
                # Over the server's request size: from now on, batches half this size.
                with self._cond:
                    self._batch_max = max(1, len(events) // 2)
                    self._requeue(run_id, events)
                return 0.0
            bad = _bad_indexes(exc, len(events))
            if bad and attempt == 1 and len(bad) < len(events):
                logger.warning("tracefoundry_sdk: the server refused %d of %d run events of "
                               "run %s (%s); sending the others", len(bad), len(events), run_id,
                               exc)
                with self._cond:
                    self.rejected += len(bad)
                good = [e for i, e in enumerate(events) if i not in bad]
                return self._send(run_id, good, attempt=2)
            logger.warning("tracefoundry_sdk: the server refused %d run events of run %s: %s",
                           len(events), run_id, exc)
            with self._cond:
                self.rejected += len(events)
            return None
        with self._cond:
            self.sent += len(events)
            self._attempts = 0
            if self._failing:
                logger.warning("tracefoundry_sdk: run events are being sent again")
            self._failing = False
        return None


def _nothing() -> None:
    pass


def _bad_indexes(exc: ApiError, count: int) -> set[int]:
    if exc.status != 400:
        return set()
    errors: Any = exc.details.get("errors")
    if not isinstance(errors, list):
        return set()
    return {e["index"] for e in errors
            if isinstance(e, dict) and isinstance(e.get("index"), int) and 0 <= e["index"] < count}
