"""Waking idle workers: PostgreSQL ``NOTIFY`` when a run becomes claimable, ``LISTEN`` in workers.

``NOTIFY`` is transactional: the notification leaves when the transaction that queued the run
commits, and never when it rolls back, so a woken worker always finds the run. Workers still poll
(TRACEFOUNDRY_WORKER_POLL_MS) for delayed runs and for databases without notifications (SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connection

log = logging.getLogger(__name__)

QUEUE_CHANNEL = "tracefoundry_runs"


def workers_wake(*, kind: str) -> None:
    """Tell listening workers that a run of ``kind`` can be claimed (at commit, on PostgreSQL)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [QUEUE_CHANNEL, kind[:128]])


class QueueListener:
    """A daemon thread holding its own autocommit connection on ``LISTEN``: it calls
    ``on_wake(kind)`` for every notification. It reconnects after errors; the worker's polling
    covers the gap meanwhile."""

    def __init__(self, on_wake: Callable[[str], None], stop: threading.Event) -> None:
        self.on_wake = on_wake
        self.stop = stop
        self.thread = threading.Thread(target=self._main, name="tf-queue-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        import psycopg

        conninfo = _conninfo()
        while not self.stop.is_set():
            try:
                with psycopg.connect(**conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    self.on_wake("")  # anything queued while we were not listening
                    while not self.stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.on_wake(note.payload)
            except Exception:
                log.warning("queue listener lost its connection; polling until it is back",
                            exc_info=True)
                self.stop.wait(2.0)


def _conninfo() -> dict:
    params = dict(connection.get_connection_params())
    for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(name, None)
    return params


def listener_supported() -> bool:
    return connection.vendor == "postgresql"
