"""For tests that race two PostgreSQL connections: wait until one of them blocks on a lock."""

from __future__ import annotations

import threading
import time

from django.db import connection


def waiting_on_a_lock() -> bool:
    """Whether some session of this database waits for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


def wait_until_blocked(thread: threading.Thread, timeout: float = 30) -> bool:
    """Poll until ``thread`` has finished or some session waits for a lock; True when the
    thread is still running then (blocked, presumably on the lock)."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline and not waiting_on_a_lock():
        time.sleep(0.01)
    return thread.is_alive()
