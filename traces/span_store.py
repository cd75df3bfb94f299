"""Batched span upserts and trace-summary updates, the fastest correct way per database.

``bulk_create(update_conflicts=True)`` and ``bulk_update`` spent most of an ingest batch
building model instances and giant CASE expressions. PostgreSQL gets the rows through COPY
into a session-local staging table and one ``INSERT … ON CONFLICT DO UPDATE``; SQLite gets one
``executemany`` upsert. Both must run inside the ingest transaction.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import connection

from runs.envelope import dumps

SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name",
    "start_time_unix_nano", "end_time_unix_nano", "duration_ms", "status_code",
    "status_message", "attributes", "events", "links", "resource", "scope", "span_type", "model",
    "input_tokens", "output_tokens", "cost_usd", "tool_name", "is_retry", "is_timeout", "run_id",
    "received_at",
)
_JSON = {"attributes", "events", "links", "resource", "scope"}
_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in SPAN_COLUMNS[2:])
_STAGE = "tf_span_stage"


def _row(values: dict, texts: dict[int, str]) -> tuple:
    """One span as column values; JSON objects shared between spans (a resource, a scope)
    are serialised once per batch."""
    out = []
    for column in SPAN_COLUMNS:
        value = values[column]
        if column in _JSON:
            key = id(value)
            text = texts.get(key)
            if text is None:
                text = dumps(value)
                if column in ("resource", "scope"):
                    texts[key] = text
            value = text
        out.append(value)
    return tuple(out)


def spans_upsert(rows: list[dict]) -> dict[tuple[int, str], int]:
    """Insert or update ``rows`` (dicts keyed by SPAN_COLUMNS, unique by (trace_id, span_id));
    return the span primary keys by (trace pk, span id)."""
    if not rows:
        return {}
    if connection.vendor == "postgresql":
        return _upsert_postgresql(rows)
    return _upsert_sqlite(rows)


def _upsert_postgresql(rows: list[dict]) -> dict[tuple[int, str], int]:
    columns = ", ".join(SPAN_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM traces_span WITH NO DATA"
        )
        texts: dict[int, str] = {}
        with cursor.cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(_row(values, texts))
        cursor.execute(
            f"INSERT INTO traces_span ({columns}) SELECT {columns} FROM {_STAGE} "
            f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {_UPDATE} "
            f"RETURNING trace_id, span_id, id"
        )
        ids = {(trace_pk, span_id): pk for trace_pk, span_id, pk in cursor.fetchall()}
        cursor.execute(f"TRUNCATE {_STAGE}")
    return ids


def _upsert_sqlite(rows: list[dict]) -> dict[tuple[int, str], int]:
    adapt_dt = connection.ops.adapt_datetimefield_value
    params = []
    texts: dict[int, str] = {}
    for values in rows:
        row = list(_row(values, texts))
        row[SPAN_COLUMNS.index("received_at")] = adapt_dt(values["received_at"])
        cost = values["cost_usd"]
        row[SPAN_COLUMNS.index("cost_usd")] = None if cost is None else str(cost)
        params.append(row)
    placeholders = ", ".join(["%s"] * len(SPAN_COLUMNS))
    trace_pks = sorted({values["trace_id"] for values in rows})
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO traces_span ({', '.join(SPAN_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {_UPDATE}",
            params,
        )
        marks = ", ".join(["%s"] * len(trace_pks))
        cursor.execute(
            f"SELECT trace_id, span_id, id FROM traces_span WHERE trace_id IN ({marks})",
            trace_pks,
        )
        return {(trace_pk, span_id): pk for trace_pk, span_id, pk in cursor.fetchall()}


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
    """Insert the traces that do not exist yet, complete with their summaries; return
    trace_id → pk for the rows actually inserted (a trace another writer created first is
    left alone and absent from the result)."""
    if not rows:
        return {}
    columns = ("trace_id", "project_id", "source", "created_at", *SUMMARY_COLUMNS)
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
