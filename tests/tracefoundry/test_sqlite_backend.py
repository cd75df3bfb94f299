"""The SQLite backend hands closed connections to the next thread instead of reopening."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tracefoundry.db.sqlite3.base import DatabaseWrapper

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite backend only")


@pytest.fixture(autouse=True)
def _own_database(django_db_blocker):
    # These tests open their own database files, not the test database.
    with django_db_blocker.unblock():
        yield


def wrapper(path) -> DatabaseWrapper:
    settings = {**connection.settings_dict, "NAME": str(path)}
    return DatabaseWrapper(settings, alias="reuse-test")


def in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()))
    thread.start()
    thread.join()
    return out["value"]


def test_a_closed_connection_serves_the_next_thread(tmp_path):
    path = tmp_path / "reuse.sqlite3"

    def first():
        db = wrapper(path)
        with db.cursor() as cursor:
            cursor.execute("CREATE TABLE t (v INTEGER)")
            cursor.execute("INSERT INTO t VALUES (42)")
        raw = db.connection
        db.close()
        return raw

    def second():
        db = wrapper(path)
        with db.cursor() as cursor:
            cursor.execute("SELECT v FROM t")
            value = cursor.fetchone()[0]
        raw = db.connection
        db.close()
        return raw, value

    raw_first = in_thread(first)
    raw_second, value = in_thread(second)
    assert value == 42
    assert raw_second is raw_first


def test_a_connection_closed_inside_a_transaction_is_not_reused(tmp_path):
    path = tmp_path / "tx.sqlite3"

    def open_transaction():
        db = wrapper(path)
        db.ensure_connection()
        db.connection.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
        db.connection.execute("BEGIN")
        db.connection.execute("INSERT INTO t VALUES (1)")
        raw = db.connection
        db.close()
        return raw

    def fresh():
        db = wrapper(path)
        db.ensure_connection()
        raw = db.connection
        count = raw.execute("SELECT count(*) FROM t").fetchone()[0]
        db.close()
        return raw, count

    closed = in_thread(open_transaction)
    raw, count = in_thread(fresh)
    assert raw is not closed
    assert count == 0  # the unfinished transaction was rolled back with its connection
