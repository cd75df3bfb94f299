"""Writing batches of run events: the fastest correct path each database offers.

The ORM's ``bulk_create`` spends most of a 1,000-event append building model instances and
adapting parameters (PRODUCT.md §14 asks for tens of thousands of events/s). Here rows are plain
slotted objects: PostgreSQL gets them through ``COPY`` with ids reserved from the table's
sequence, SQLite through one ``executemany`` with ids taken under the write lock the append
transaction already holds. Callers must hold the run's lock inside ``transaction.atomic()``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.db import connection

from runs.models import RUN_EVENT_FIELDS, RunEvent

COLUMNS = RUN_EVENT_FIELDS


@dataclass(slots=True)
class EventRow:
    """One stored event; attribute names match RunEvent so projections and wire shapes apply."""

    run_id: str
    seq: int
    type: str
    level: str
    source: str
    created_at: datetime
    payload: Any
    payload_json: str
    payload_bytes: int
    step_id: str | None = None
    correlation_id: str = ""
    causation_id: str = ""
    truncated: bool = False
    late: bool = False
    event_id: uuid.UUID | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.event_id is None:
            self.event_id = uuid.uuid4()

    @property
    def pk(self) -> int | None:
        return self.id


def events_insert(rows: list[EventRow]) -> None:
    """Insert ``rows`` and set their ``id`` (increasing in list order)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        _insert_postgresql(rows)
    elif connection.vendor == "sqlite":
        _insert_sqlite(rows)
    else:  # any other backend: the ORM's generic path
        created = RunEvent.objects.bulk_create([_model(r) for r in rows])
        for row, obj in zip(rows, created, strict=True):
            row.id = obj.id


def _table() -> str:
    return connection.ops.quote_name(RunEvent._meta.db_table)


# Every column but ``id`` (the database or the caller assigns it), as stored: the payload goes in
# as the JSON text the append path already wrote, not as the Python value.
_values = attrgetter(*("payload_json" if c == "payload" else c for c in COLUMNS[1:]))
_SQLITE_ADAPT = {  # the adaptations Django's SQLite backend would make, by column position
    COLUMNS.index("event_id"): lambda v: v.hex,
    COLUMNS.index("truncated"): int,
    COLUMNS.index("late"): int,
}
_CREATED_AT = COLUMNS.index("created_at")


# Below this many rows one INSERT … RETURNING (one round trip) beats reserving ids and COPY
# (three round trips); above it COPY's cheaper per-row cost wins.
COPY_THRESHOLD = 64


def _insert_postgresql(rows: list[EventRow]) -> None:
    if len(rows) < COPY_THRESHOLD:
        row_sql = "(" + ", ".join(["%s"] * (len(COLUMNS) - 1)) + ")"
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_table()} ({', '.join(COLUMNS[1:])}) "
                f"VALUES {', '.join([row_sql] * len(rows))} RETURNING id",
                [value for r in rows for value in _values(r)],
            )
            for row, (new_id,) in zip(rows, cursor.fetchall(), strict=True):
                row.id = new_id
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [RunEvent._meta.db_table, len(rows)],
        )
        for row, (new_id,) in zip(rows, sorted(cursor.fetchall()), strict=True):
            row.id = new_id
        columns = ", ".join(COLUMNS)
        with cursor.cursor.copy(f"COPY {_table()} ({columns}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r.id, *_values(r)))


def _insert_sqlite(rows: list[EventRow]) -> None:
    table = RunEvent._meta.db_table
    adapt_dt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        # AUTOINCREMENT keeps the highest id ever used in sqlite_sequence; the append
        # transaction holds SQLite's write lock, so nobody else can take these ids meanwhile.
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        found = cursor.fetchone()
        start = found[0] if found else 0
        params = []
        stamps: dict[datetime, str] = {}  # a batch's events mostly share one timestamp
        for offset, r in enumerate(rows, start=1):
            r.id = start + offset
            values = [r.id, *_values(r)]
            for position, adapt in _SQLITE_ADAPT.items():
                values[position] = adapt(values[position])
            stamp = stamps.get(r.created_at)
            if stamp is None:
                stamp = stamps[r.created_at] = adapt_dt(r.created_at)
            values[_CREATED_AT] = stamp
            params.append(values)
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        cursor.executemany(
            f"INSERT INTO {_table()} ({', '.join(COLUMNS)}) VALUES ({placeholders})", params
        )


def _model(r: EventRow) -> RunEvent:
    return RunEvent(**{name: getattr(r, name) for name in COLUMNS[1:]})
