"""`runs tail`: print a run's events, the stored ones and then new ones as they arrive, until the
run finishes. Polls the backend's event page by ``after_id``, so an event is never skipped or
printed twice, whichever backend serves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tracefoundry.cli.backend import EventDict, RunDict, RunsBackend

FINISHED_STATES = frozenset({"succeeded", "failed", "canceled"})
PAGE_LIMIT = 1000  # the API's largest event page
POLL_SECONDS = 0.3  # between polls that found nothing new


@dataclass
class TailResult:
    run: RunDict | None  # None: the timeout ran out first
    last_state: str


def follow(
    backend: RunsBackend,
    run_id: str,
    *,
    on_event: Callable[[EventDict], None],
    timeout: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> TailResult:
    run = backend.get(run_id)  # an unknown run fails here, before anything is printed
    deadline = None if timeout is None else time.monotonic() + timeout
    after_id = 0
    while True:
        events, after_id = backend.events(run_id, after_id=after_id, limit=PAGE_LIMIT)
        for event in events:
            on_event(event)
        if len(events) == PAGE_LIMIT:
            continue  # catching up: more are waiting
        if run["state"] in FINISHED_STATES and not events:
            # Its final event is committed with the state, so the read above saw every event.
            return TailResult(run=run, last_state=run["state"])
        if not events:
            if deadline is not None and time.monotonic() >= deadline:
                return TailResult(run=None, last_state=run["state"])
            time.sleep(poll_seconds)
        run = backend.get(run_id)
