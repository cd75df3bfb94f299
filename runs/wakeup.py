"""Waking idle workers: PostgreSQL ``NOTIFY`` when a run becomes claimable, ``LISTEN`` in workers.

``NOTIFY`` is transactional: the notification leaves when the transaction that queued the run
commits, and never when it rolls back, so a woken worker always finds the run. Workers still poll
(TRACEFOUNDRY_WORKER_POLL_MS) for delayed runs and for databases without notifications (SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from django.db import connection

log = logging.getLogger(__name__)

QUEUE_CHANNEL = "tracefoundry_runs"


def workers_wake(*, kind: str) -> None:
    """Tell listening workers that a run of ``kind`` can be claimed (at commit, on PostgreSQL)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [QUEUE_CHANNEL, kind[:128]])


# How often a listening worker that filled its slots notices it and lets another one listen.
HANDOVER_CHECK_SECONDS = 0.02
# How long a worker waits for its turn to listen before it looks at its stop flag again.
TURN_WAIT_SECONDS = 1.0


class QueueListener:
    """A daemon thread holding its own autocommit connection: it calls ``on_wake(kind)`` for
    every notification while it listens. It reconnects after errors; the worker's polling covers
    the gap meanwhile.

    Of the idle workers that claim the same kinds, one listens at a time: the one whose
    connection holds the advisory lock of those kinds; the others wait for the lock. So a run
    wakes one worker, not every idle one to race for it (on a few cores, the losers' wake-ups
    and empty claims delay the winner and the next enqueues). A worker lets the lock go as soon
    as ``has_room`` is clear (every slot taken, or stopping): the next worker takes it, LISTENs
    and claims at once (``on_wake("")``), which picks up anything queued during the hand-over.
    """

    def __init__(self, on_wake: Callable[[str], None], stop: threading.Event, *,
                 kinds: Sequence[str], has_room: threading.Event) -> None:
        self.on_wake = on_wake
        self.stop = stop
        self.has_room = has_room
        # The lock of this set of kinds (the query names the channel: it shows in
        # pg_stat_activity as a worker waiting for its turn to listen).
        self.turn_sql = (f"SELECT pg_advisory_lock(hashtextextended('{QUEUE_CHANNEL} ' || %s, 0))")
        self.unlock_sql = self.turn_sql.replace("pg_advisory_lock", "pg_advisory_unlock")
        self.kinds_key = ",".join(sorted(kinds))
        self.thread = threading.Thread(target=self._main, name="tf-queue-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        import psycopg

        conninfo = _conninfo()
        while not self.stop.is_set():
            try:
                with psycopg.connect(**conninfo, autocommit=True) as conn:
                    conn.execute(f"SET lock_timeout = {round(TURN_WAIT_SECONDS * 1000)}")
                    while not self.stop.is_set():
                        if self.has_room.wait(TURN_WAIT_SECONDS) and self._take_turn(conn):
                            self._listen(conn)
            except Exception:
                log.warning("queue listener lost its connection; polling until it is back",
                            exc_info=True)
                self.stop.wait(2.0)

    def _take_turn(self, conn) -> bool:
        import psycopg

        try:
            conn.execute(self.turn_sql, [self.kinds_key])
        except psycopg.errors.LockNotAvailable:
            return False  # another worker listens for these kinds
        return True

    def _listen(self, conn) -> None:
        conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        try:
            self.on_wake("")  # anything queued while nobody of these kinds was listening
            while not self.stop.is_set() and self.has_room.is_set():
                for note in conn.notifies(timeout=HANDOVER_CHECK_SECONDS):
                    self.on_wake(note.payload)
        finally:
            conn.execute(f"UNLISTEN {QUEUE_CHANNEL}")
            conn.execute(self.unlock_sql, [self.kinds_key])


def _conninfo() -> dict:
    params = dict(connection.get_connection_params())
    for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(name, None)
    return params


def listener_supported() -> bool:
    return connection.vendor == "postgresql"
