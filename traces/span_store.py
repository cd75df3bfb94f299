"""Batched span writes and trace-summary updates, the fastest correct way per database.

``bulk_create(update_conflicts=True)`` and ``bulk_update`` spent most of an ingest batch
building model instances and giant CASE expressions. On PostgreSQL, spans of traces the batch
creates are COPYed straight into ``traces_span`` (nothing can conflict with them); spans of
existing traces go through COPY into a session-local staging table and one ``INSERT … ON
CONFLICT DO UPDATE``. SQLite gets one ``executemany`` upsert. All must run inside the ingest
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from django.db import connection

from payloads.models import PayloadRef
from tracefoundry.jsonio import dumps

SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name",
    "start_time_unix_nano", "end_time_unix_nano", "duration_ms", "status_code",
    "status_message", "attributes", "events", "links", "resource", "scope", "span_type", "model",
    "input_tokens", "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout", "run_id",
    "received_at",
)
_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in SPAN_COLUMNS[2:])
_STAGE = "tf_span_stage"
_COLUMNS = ", ".join(SPAN_COLUMNS)
_RECEIVED_AT = SPAN_COLUMNS.index("received_at")
_COST = SPAN_COLUMNS.index("cost_usd")

# A span row is a tuple ordered as SPAN_COLUMNS, its JSON columns already serialised (see
# traces.services.span_row): built once, it goes into a COPY or an executemany as it is.


@contextmanager
def spans_copy() -> Iterator:
    """PostgreSQL only, inside the ingest transaction: a psycopg ``Copy`` straight into
    ``traces_span``; ``write_row`` it span rows. Only for spans that cannot exist yet (their
    trace is being created by this transaction): no upsert, no staging table. While the copy is
    open the connection runs nothing else."""
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY traces_span ({_COLUMNS}) FROM STDIN"
    ) as copy:
        yield copy


def spans_upsert(rows: list[tuple]) -> dict[tuple[int, str], int]:
    """Insert or update span ``rows`` (unique by (trace_id, span_id)); return the span primary
    keys by (trace pk, span id)."""
    if not rows:
        return {}
    if connection.vendor == "postgresql":
        return _upsert_postgresql(rows)
    return _upsert_sqlite(rows)


def _upsert_postgresql(rows: list[tuple]) -> dict[tuple[int, str], int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
            f"SELECT {_COLUMNS} FROM traces_span WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO traces_span ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGE} "
            f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {_UPDATE} "
            f"RETURNING trace_id, span_id, id"
        )
        ids = {(trace_pk, span_id): pk for trace_pk, span_id, pk in cursor.fetchall()}
        # The table empties itself at commit; this is for a caller's enclosing transaction.
        cursor.execute(f"TRUNCATE {_STAGE}")
    return ids


def _upsert_sqlite(rows: list[tuple]) -> dict[tuple[int, str], int]:
    adapt_dt = connection.ops.adapt_datetimefield_value
    params = []
    for row in rows:
        values = list(row)
        values[_RECEIVED_AT] = adapt_dt(values[_RECEIVED_AT])
        cost = values[_COST]
        values[_COST] = None if cost is None else str(cost)
        params.append(values)
    placeholders = ", ".join(["%s"] * len(SPAN_COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO traces_span ({_COLUMNS}) VALUES ({placeholders}) "
            f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {_UPDATE}",
            params,
        )
    return span_pks(sorted({row[0] for row in rows}))


_REF_INSERT = (
    "INSERT INTO {table} (blob_id, span_id, role, json_path, created_at) "
    "SELECT v.blob_id, s.id, v.role, v.json_path, %s FROM {values} "
    "JOIN traces_span s ON s.trace_id = v.trace_pk AND s.span_id = v.span_id"
)
_REF_VALUES_POSTGRESQL = (  # one array per column: one statement, whatever the number of refs
    "unnest(%s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[]) "
    "AS v(blob_id, trace_pk, span_id, role, json_path)"
)
_SQLITE_REFS_PER_INSERT = 1000  # 5 parameters each: far below SQLite's 32,766


def span_payload_refs_insert(refs: list[tuple[str, int, str, str, str]], *,
                             now: datetime) -> None:
    """Insert PayloadRef rows for spans named by (trace pk, span id), with one statement that
    finds the span primary keys itself: the spans COPYed in by the ingest need no query to
    fetch their keys first. ``refs``: (blob sha256, trace pk, span id, role, json path)."""
    if not refs:
        return
    table = PayloadRef._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                _REF_INSERT.format(table=table, values=_REF_VALUES_POSTGRESQL),
                [now, *(list(column) for column in zip(*refs, strict=True))],
            )
            return
        now = connection.ops.adapt_datetimefield_value(now)
        for start in range(0, len(refs), _SQLITE_REFS_PER_INSERT):
            part = refs[start:start + _SQLITE_REFS_PER_INSERT]
            values = ("(WITH v(blob_id, trace_pk, span_id, role, json_path) AS (VALUES "
                      + ", ".join(["(%s, %s, %s, %s, %s)"] * len(part))
                      + ") SELECT * FROM v) AS v")
            cursor.execute(_REF_INSERT.format(table=table, values=values),
                           [now, *(value for ref in part for value in ref)])


def span_pks(trace_pks: list[int]) -> dict[tuple[int, str], int]:
    """The primary keys of every span of these traces, by (trace pk, span id)."""
    if not trace_pks:
        return {}
    marks = ", ".join(["%s"] * len(trace_pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT trace_id, span_id, id FROM traces_span WHERE trace_id IN ({marks})",
            trace_pks,
        )
        return {(trace_pk, span_id): pk for trace_pk, span_id, pk in cursor.fetchall()}


def traces_lock(trace_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Lock ``trace_ids`` (sorted) for this transaction, existing or not: trace_id → (pk,
    project pk) of those that exist. Locked, their summaries can be re-aggregated without
    losing a concurrent writer's spans, and the missing ones can be created without a
    conflict: nobody else can create them before this transaction ends.

    PostgreSQL: a transaction advisory lock per trace id (a trace that does not exist has no
    row to lock), taken in sorted order so two writers cannot deadlock; then, in a second
    statement (whose snapshot sees whatever the writers waited for committed), FOR UPDATE on
    the rows that exist. Both go in one round trip. SQLite has one writer at a time."""
    if not trace_ids:
        return {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(t, 0))) "
                "FROM unnest(%s::text[]) AS t; "
                "SELECT trace_id, id, project_id FROM traces_trace WHERE trace_id = ANY(%s) "
                "ORDER BY id FOR UPDATE",
                [trace_ids, trace_ids],
            )
            cursor.cursor.nextset()  # Django's client-side binding cursor runs both at once
        else:
            marks = ", ".join(["%s"] * len(trace_ids))
            cursor.execute(
                f"SELECT trace_id, id, project_id FROM traces_trace WHERE trace_id IN ({marks})",
                trace_ids,
            )
        return {trace_id: (pk, project_id) for trace_id, pk, project_id in cursor.fetchall()}


def trace_pks_reserve(count: int) -> list[int]:
    """PostgreSQL: ``count`` fresh primary keys for traces_trace from its sequence, so spans can
    be COPYed before their trace row is written (the foreign key is checked at commit)."""
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('traces_trace', 'id')) "
            "FROM generate_series(1, %s)",
            [count],
        )
        return [pk for (pk,) in cursor.fetchall()]


SUMMARY_COLUMNS = (
    "span_count", "error_count", "status", "start_time", "end_time", "duration_ms",
    "input_tokens", "output_tokens", "cost_usd", "has_retry", "has_timeout", "run_id", "models",
    "tools", "root_span_name", "service_name", "environment", "updated_at",
)


_TRACE_DATETIMES = {"start_time", "end_time", "created_at", "updated_at"}


def _trace_params(values: dict, columns: tuple[str, ...]) -> list:
    """Column values of a trace row as the database driver wants them."""
    sqlite = connection.vendor == "sqlite"
    out = []
    for column in columns:
        value = values[column]
        if column in ("models", "tools"):
            value = dumps(value)
        elif sqlite and column in _TRACE_DATETIMES:
            value = connection.ops.adapt_datetimefield_value(value)
        elif sqlite and isinstance(value, Decimal):
            value = str(value)
        out.append(value)
    return out


def traces_update(summaries: dict[int, dict]) -> None:
    """Write the summary columns of each trace (trace pk → values) with one statement."""
    if not summaries:
        return
    params = [(*_trace_params(values, SUMMARY_COLUMNS), pk) for pk, values in summaries.items()]
    assignments = ", ".join(f"{c} = %s" for c in SUMMARY_COLUMNS)
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE traces_trace SET {assignments} WHERE id = %s", params)


def traces_insert_new(rows: list[dict]) -> dict[str, int]:
    """Insert traces that do not exist yet, complete with their summaries; return trace_id → pk
    for the rows actually inserted (a trace another writer created first is left alone and
    absent from the result).

    With an ``id`` in every row (pks from trace_pks_reserve, PostgreSQL) the caller holds
    ``traces_lock`` on them: nothing can conflict, and the rows go in by COPY, which costs
    half an INSERT of the same rows (no SQL text, no parameters to quote)."""
    if not rows:
        return {}
    columns = ("trace_id", "project_id", "source", "created_at", *SUMMARY_COLUMNS)
    if "id" in rows[0]:
        _copy_traces(rows, ("id", *columns))
        return {values["trace_id"]: values["id"] for values in rows}
    params = [value for values in rows for value in _trace_params(values, columns)]
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO traces_trace ({', '.join(columns)}) "
            f"VALUES {', '.join([row_sql] * len(rows))} "
            f"ON CONFLICT (trace_id) DO NOTHING RETURNING trace_id, id",
            params,
        )
        return dict(cursor.fetchall())


def _copy_traces(rows: list[dict], columns: tuple[str, ...]) -> None:
    # psycopg's own errors as Django's: the raw copy bypasses Django's cursor wrapper.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY traces_trace ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for values in rows:
            copy.write_row(_trace_params(values, columns))
