"""The projection written in SQL: PostgreSQL's one-statement hot paths (claim, append, succeed)
do what ``runs.projections.apply_event`` does in Python for the events they write. Every statement
here names the function it mirrors; tests/runs/test_projection_parity.py checks that the rows each
one writes equal what ``rebuild_projections`` computes from the events.
"""

from __future__ import annotations

# The event_id of a run's latest lifecycle event: the causation of the next one, read in the
# same statement that changes the run (``r`` is the run's alias in that statement).
PREVIOUS_LIFECYCLE_SQL = (
    "(SELECT e.event_id FROM runs_runevent e WHERE e.run_id = r.id "
    "AND e.type = ANY(%(lifecycle_types)s) ORDER BY e.id DESC LIMIT 1)"
)

# Inserts the lifecycle event of every run the statement's ``changed`` CTE returns; ``text`` is
# its payload as compact JSON (what jsonio.dumps writes), built by the ``payloads`` CTE.
LIFECYCLE_INSERT_SQL = (
    "INSERT INTO runs_runevent (event_id, run_id, step_id, seq, type, level, source, created_at,"
    " correlation_id, causation_id, payload, payload_bytes, truncated, late) "
    "SELECT gen_random_uuid(), c.id, NULL, c.event_count, %(etype)s, 'info', %(source)s, %(at)s,"
    " c.correlation_id, COALESCE(c.previous_event_id::text, ''), p.text::jsonb,"
    " octet_length(p.text), false, false "
    "FROM changed c JOIN payloads p ON p.run_id = c.id "
    "RETURNING id AS event_pk, event_id AS new_event_id, run_id"
)


# --- agent events: projections.apply_agent_events ----------------------------------------------

# The run's fresh state after an append: what the caller needs to number and broadcast the rows.
APPEND_RETURNING = (
    "id", "project_id", "state", "attempt", "correlation_id", "event_count", "error_count",
    "dropped_event_count", "steps_total", "steps_completed", "latest_event_at",
    "cancel_requested_at", "started_at", "finished_at", "updated_at",
)


def append_counters_sql(*, project_scoped: bool) -> str:
    """Lock a run that takes events and has room for ``n`` more, and move its counters as
    ``projections.apply_agent_events`` does (event and error counts, latest event time). No row
    comes back for finished runs, late events or a full run: the caller takes the general path."""
    scope = " AND project_id = %(project_id)s" if project_scoped else ""
    return (
        "UPDATE runs_run SET event_count = event_count + %(n)s,"
        " error_count = error_count + %(errors)s,"
        " latest_event_at = GREATEST(COALESCE(latest_event_at, %(at)s), %(at)s),"
        " updated_at = %(at)s"
        " WHERE id = %(run_id)s AND state IN ('queued', 'running')"
        f" AND event_count + %(n)s <= %(limit)s{scope}"
        f" RETURNING {', '.join(APPEND_RETURNING)}"
    )


# --- run.started: projections.apply_event (the claim) -------------------------------------------

def claim_sql(*, by_kind: bool, project_scoped: bool) -> str:
    """Claim up to ``limit`` due queued runs, oldest first, skipping rows other claimers hold;
    do what ``projections.apply_event`` does for ``run.started`` and insert each run's event."""
    filters = ""
    if by_kind:
        filters += " AND kind = ANY(%(kinds)s)"
    if project_scoped:
        filters += " AND project_id = %(project_id)s"
    return (
        "WITH picked AS (SELECT id, COALESCE(run_after, updated_at) AS due_at FROM runs_run"
        " WHERE state = 'queued' AND (run_after IS NULL OR run_after <= %(at)s)" + filters +
        " ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
        "changed AS (UPDATE runs_run r SET state = 'running', attempt = r.attempt + 1,"
        " claimed_by = %(worker_id)s, claimed_at = %(at)s, heartbeat_at = %(at)s,"
        " run_after = NULL, started_at = COALESCE(r.started_at, %(at)s),"
        " event_count = r.event_count + 1,"
        " latest_event_at = GREATEST(COALESCE(r.latest_event_at, %(at)s), %(at)s),"
        " updated_at = %(at)s FROM picked WHERE r.id = picked.id RETURNING r.*,"
        " GREATEST(0, round(extract(epoch FROM %(at)s - picked.due_at) * 1000))::bigint"
        f" AS wait_ms, {PREVIOUS_LIFECYCLE_SQL} AS previous_event_id), "
        # The run.started payload as jsonio.dumps writes it: {"attempt", "worker_id",
        # "wait_ms"}, compact.
        "payloads AS (SELECT id AS run_id, format('{\"attempt\":%%s,\"worker_id\":%%s,"
        "\"wait_ms\":%%s}', attempt, to_json(%(worker_id)s::text), wait_ms) AS text"
        " FROM changed), "
        f"events AS ({LIFECYCLE_INSERT_SQL})"
    )


# --- run.succeeded: projections.apply_event (one or a batch) ------------------------------------

def succeed_sql(*, holder_only: bool) -> str:
    """Finish the running runs in ``ids`` that have no open step (locked in id order), do what
    ``projections.apply_event`` does for ``run.succeeded`` — the output (``output`` inline, or
    ``output_ref``) is read from each event's payload ``texts`` — and insert each run's event.
    ``holder_only``: only runs held by nobody or by ``worker_id``."""
    holder = " AND (r.claimed_by = '' OR r.claimed_by = %(worker_id)s)" if holder_only else ""
    return (
        "WITH input AS (SELECT i.id, i.text, i.text::jsonb AS payload"
        " FROM unnest(%(ids)s::text[], %(texts)s::text[]) AS i(id, text)), "
        "locked AS MATERIALIZED (SELECT r.id FROM runs_run r WHERE r.id = ANY(%(ids)s::text[])"
        " ORDER BY r.id FOR UPDATE), "
        "changed AS (UPDATE runs_run r SET state = 'succeeded', finished_at = %(at)s,"
        " output_ref = COALESCE(i.payload ->> 'output_ref', ''),"
        " output = i.payload -> 'output', event_count = r.event_count + 1,"
        " latest_event_at = GREATEST(COALESCE(r.latest_event_at, %(at)s), %(at)s),"
        " updated_at = %(at)s FROM input i WHERE r.id = i.id"
        " AND r.id IN (SELECT id FROM locked) AND r.state = 'running'"
        f" AND r.steps_completed = r.steps_total{holder}"
        f" RETURNING r.*, {PREVIOUS_LIFECYCLE_SQL} AS previous_event_id), "
        "payloads AS (SELECT id AS run_id, text FROM input), "
        f"events AS ({LIFECYCLE_INSERT_SQL})"
    )
