"""Batched span upserts and trace-summary updates, the fastest correct way per database.

``bulk_create(update_conflicts=True)`` and ``bulk_update`` spent most of an ingest batch
building model instances and giant CASE expressions. PostgreSQL gets the rows through COPY
into a session-local staging table and one ``INSERT … ON CONFLICT DO UPDATE``; SQLite gets one
``executemany`` upsert. Both must run inside the ingest transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


# --- PostgreSQL: streaming spans into the staging table while they are prepared ------------------

# The spans of a batch are COPYed into this table as the service prepares them, before their
# traces have primary keys (the traces' summaries need every span of the batch): the server
# parses the rows' JSON on its own core while this process redacts the next spans. ``seq`` is
# the span's position in the batch (the last copy of a span sent twice wins), ``trace_key`` its
# OTLP trace id; the upsert joins them to ``traces_trace``.
_STREAM = "tf_span_stream"
STREAM_COLUMNS = ("seq", "trace_key", *SPAN_COLUMNS[1:])
_STREAM_VALUES = ", ".join(SPAN_COLUMNS[1:])


@contextmanager
def span_stream() -> Iterator:
    """PostgreSQL only, inside the ingest transaction: a psycopg ``Copy`` into the staging
    table; ``write_row`` it tuples ordered as STREAM_COLUMNS (JSON columns as text). While it
    is open the connection runs nothing else."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STREAM} ON COMMIT DELETE ROWS AS "
            f"SELECT 0::integer AS seq, ''::text AS trace_key, {_STREAM_VALUES} "
            f"FROM traces_span WITH NO DATA"
        )
        with cursor.cursor.copy(
            f"COPY {_STREAM} ({', '.join(STREAM_COLUMNS)}) FROM STDIN"
        ) as copy:
            yield copy


def spans_upsert_streamed(*, trace_pks: list[int], dedupe: bool) -> dict[tuple[int, str], int]:
    """Upsert the spans ``span_stream`` staged whose traces are ``trace_pks`` (the others, of
    another project's traces, are dropped); return the span pks by (trace pk, span id).
    ``dedupe``: some span was staged twice, and its last copy (highest ``seq``) wins."""
    columns = ", ".join(SPAN_COLUMNS)
    if dedupe:
        source = (
            f"SELECT DISTINCT ON (s.trace_key, s.span_id) t.id, {_qualified('s')} "
            f"FROM {_STREAM} s JOIN traces_trace t ON t.trace_id = s.trace_key "
            f"WHERE t.id = ANY(%s) ORDER BY s.trace_key, s.span_id, s.seq DESC"
        )
    else:
        source = (
            f"SELECT t.id, {_qualified('s')} "
            f"FROM {_STREAM} s JOIN traces_trace t ON t.trace_id = s.trace_key "
            f"WHERE t.id = ANY(%s) ORDER BY s.seq"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO traces_span ({columns}) {source} "
            f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {_UPDATE} "
            f"RETURNING trace_id, span_id, id",
            [trace_pks],
        )
        ids = {(trace_pk, span_id): pk for trace_pk, span_id, pk in cursor.fetchall()}
        # The table empties itself at commit; this is for a caller's enclosing transaction.
        cursor.execute(f"TRUNCATE {_STREAM}")
    return ids


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in SPAN_COLUMNS[1:])


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

