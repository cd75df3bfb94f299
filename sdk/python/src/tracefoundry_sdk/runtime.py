"""The SDK's process-wide state: the settings, the run API client, the event sender and the
tracer; ``configure``, ``flush`` and ``shutdown``.

Nothing here raises into the agent: a failure is logged at WARNING on the ``tracefoundry_sdk``
logger and the SDK carries on with what works (spans without runs, or nothing at all).
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from opentelemetry import trace

from tracefoundry_sdk import config as config_module
from tracefoundry_sdk import tracing
from tracefoundry_sdk.api_client import ApiClient
from tracefoundry_sdk.config import Config
from tracefoundry_sdk.event_sender import EventSender

logger = logging.getLogger("tracefoundry_sdk")


class State:
    def __init__(self, config: Config, tracer: trace.Tracer, client: ApiClient | None,
                 sender: EventSender | None) -> None:
        self.config = config
        self.tracer = tracer
        self.client = client
        self.sender = sender


_lock = threading.RLock()
_state: State | None = None
_atexit_registered = False


def configure(**kwargs: Any) -> None:
    """(Re)configure the SDK; see ``tracefoundry_sdk.configure`` for the arguments."""
    global _state, _atexit_registered
    try:
        with _lock:
            old = _state
            if old is not None and old.sender is not None:
                old.sender.close(old.config.flush_timeout_s)
            config = config_module.load(**kwargs)
            tracer = tracing.setup(
                config, timeout_s=old.config.flush_timeout_s if old is not None else 5.0)
            client = sender = None
            if config.api_url:
                client = ApiClient(config.api_url, config.api_key,
                                   timeout_s=config.request_timeout_s)
                sender = EventSender(client, batch_max_events=config.batch_max_events,
                                     batch_interval_s=config.batch_interval_s,
                                     queue_max_events=config.queue_max_events)
            else:
                logger.warning("tracefoundry_sdk: TRACEFOUNDRY_API_URL is not set: agent runs "
                               "and their events are not recorded (spans are still exported)")
            _state = State(config, tracer, client, sender)
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True
    except Exception:
        logger.warning("tracefoundry_sdk: configure failed; tracing is off", exc_info=True)
        _state = State(config_module.load(api_url=None), trace.NoOpTracer(), None, None)


def state() -> State:
    """The current state, configured from the environment on first use."""
    current = _state
    if current is None:
        with _lock:
            if _state is None:
                configure()
            current = _state
    assert current is not None
    return current


def flush(timeout_s: float = 5.0) -> bool:
    """Send every queued run event and finished span now, waiting at most ``timeout_s``;
    whether everything was sent."""
    try:
        current = _state
        if current is None:
            return True
        ok = True
        if current.sender is not None:
            ok = current.sender.flush(timeout_s)
        return tracing.flush(timeout_s) and ok
    except Exception:
        logger.warning("tracefoundry_sdk: flush failed", exc_info=True)
        return False


def shutdown(timeout_s: float = 5.0) -> None:
    """Flush (at most ``timeout_s``) and stop the background threads; later events and spans
    are dropped until the next ``configure``."""
    global _state
    try:
        with _lock:
            current = _state
            if current is None:
                return
            if current.sender is not None:
                current.sender.close(timeout_s)
            tracing.shutdown(timeout_s)
            _state = State(current.config, trace.NoOpTracer(), None, None)
    except Exception:
        logger.warning("tracefoundry_sdk: shutdown failed", exc_info=True)


def stats() -> dict[str, int]:
    """Counters of the run event sender: ``sent``, ``dropped`` (queue full or shut down),
    ``rejected`` (refused by the server) and ``pending``."""
    current = _state
    sender = current.sender if current is not None else None
    if sender is None:
        return {"sent": 0, "dropped": 0, "rejected": 0, "pending": 0}
    return {"sent": sender.sent, "dropped": sender.dropped, "rejected": sender.rejected,
            "pending": sender.pending()}


def _at_exit() -> None:
    current = _state
    if current is not None:
        shutdown(current.config.flush_timeout_s)
