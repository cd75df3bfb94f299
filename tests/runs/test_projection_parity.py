"""PostgreSQL's fast paths write the projection in SQL (runs/projection_sql.py) instead of going
through ``projections.apply_event``. Each must leave exactly the rows ``rebuild_projections``
computes from the events alone, and chain its lifecycle events as the Python path does.

Every test first proves its fast path ran (the statement is captured), so a change that quietly
sends the work down the general path cannot make it pass.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from runs import lifecycle as lc
from runs import services
from runs.models import Run, RunEvent, Step
from runs.projections import RUN_PROJECTED_FIELDS, STEP_PROJECTED_FIELDS
from tracefoundry.errors import IdempotencyConflict

pytestmark = pytest.mark.django_db

# What only each fast path's statement says (see runs/projection_sql.py and
# runs.services.ledger.insert_created).
ENQUEUE_SQL = "WITH new_run AS"
CLAIM_SQL = "FOR UPDATE SKIP LOCKED"
APPEND_SQL = "event_count = event_count +"
SUCCEED_SQL = "SET state = 'succeeded'"


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the SQL fast paths exist on PostgreSQL only")


def snapshot(run_ids: list[str]) -> tuple[dict, dict]:
    runs = {r["id"]: r for r in
            Run.objects.filter(pk__in=run_ids).values("id", *RUN_PROJECTED_FIELDS)}
    steps = {s["id"]: s for s in
             Step.objects.filter(run_id__in=run_ids).values("id", *STEP_PROJECTED_FIELDS)}
    return runs, steps


def assert_rebuild_changes_nothing(run_ids: list[str]) -> None:
    written = snapshot(run_ids)
    assert services.projections_rebuild(run_ids=run_ids) == len(run_ids)
    assert snapshot(run_ids) == written


def assert_lifecycle_chained(run_id: str) -> None:
    """Each lifecycle event is caused by the run's previous one; seq has no gaps."""
    events = list(RunEvent.objects.filter(run_id=run_id).order_by("id"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    previous = ""
    for event in events:
        if event.type in lc.LIFECYCLE_TYPES:
            assert event.causation_id == previous, event.type
            previous = str(event.event_id)


def ran(queries: CaptureQueriesContext, marker: str) -> bool:
    return any(marker in q["sql"] for q in queries.captured_queries)


def enqueue(project, n: int, **extra) -> list[str]:
    return [services.run_enqueue(project=project, kind="parity.job", name=f"parity {i}",
                                 input={"i": i, "topic": f"case-{i}"}, **extra)[0].id
            for i in range(n)]


def test_enqueue_statement_stores_the_run_as_its_run_created_event_projects_it(project):
    later = timezone.now() + timedelta(hours=1)
    with CaptureQueriesContext(connection) as queries:
        due, _ = services.run_enqueue(project=project, kind="parity.job", name="due",
                                      input={"topic": "case"}, max_attempts=2)
        delayed, _ = services.run_enqueue(project=project, kind="parity.job", name="later",
                                          run_after=later, idempotency_key="parity-key")
    assert sum(ENQUEUE_SQL in q["sql"] for q in queries.captured_queries) == 2
    # The same request again finds the run; another request with the key is refused.
    again, created = services.run_enqueue(project=project, kind="parity.job", name="later",
                                          run_after=later, idempotency_key="parity-key")
    assert (again.id, created) == (delayed.id, False)
    with pytest.raises(IdempotencyConflict):
        services.run_enqueue(project=project, kind="parity.job", name="other",
                             idempotency_key="parity-key")

    ids = [due.id, delayed.id]
    stored = Run.objects.get(pk=delayed.id)
    assert (stored.state, stored.event_count, stored.run_after) == ("queued", 1, later)
    event = RunEvent.objects.get(run_id=due.id)
    assert event.type == lc.RUN_CREATED and event.seq == 1
    assert event.payload == {"kind": "parity.job", "name": "due", "max_attempts": 2,
                             "run_after": None}
    assert_rebuild_changes_nothing(ids)
    for run_id in ids:
        assert_lifecycle_chained(run_id)
    # What the statement returned is the stored event: a claim chains its event to it.
    services.run_claim_next(worker_id="parity-w1", kinds=["parity.job"], limit=1)
    started = RunEvent.objects.get(run_id=due.id, type=lc.RUN_STARTED)
    assert started.causation_id == str(event.event_id)


@override_settings(TRACEFOUNDRY_RETRY_BASE_SECONDS=0)
def test_claim_statement_writes_the_projection_of_run_started(project):
    ids = enqueue(project, 3, max_attempts=3)
    with CaptureQueriesContext(connection) as queries:
        claimed = services.run_claim_next(worker_id="parity-w1", kinds=["parity.job"], limit=3)
    assert ran(queries, CLAIM_SQL) and len(claimed) == 3
    # A retried run is claimed again by the same statement: attempt 2, run_after cleared.
    services.run_fail(run_id=ids[0], error="flaky", retryable=True, worker_id="parity-w1")
    with CaptureQueriesContext(connection) as queries:
        again = services.run_claim_next(worker_id="parity-w2", kinds=["parity.job"], limit=1)
    assert ran(queries, CLAIM_SQL) and [r.id for r in again] == [ids[0]]
    assert Run.objects.get(pk=ids[0]).attempt == 2

    started = RunEvent.objects.filter(run_id=ids[0], type=lc.RUN_STARTED).order_by("id")
    assert [(e.payload["attempt"], e.payload["worker_id"]) for e in started] == [
        (1, "parity-w1"), (2, "parity-w2")]
    assert all(isinstance(e.payload["wait_ms"], int) and e.payload["wait_ms"] >= 0
               for e in started)
    assert_rebuild_changes_nothing(ids)
    for run_id in ids:
        assert_lifecycle_chained(run_id)


def test_append_statement_writes_the_projection_of_agent_events(project):
    ids = enqueue(project, 2)
    services.run_claim_next(worker_id="parity-w1", kinds=["parity.job"], limit=2)
    step = services.step_create(run_id=ids[0], name="plan")
    batches = [
        [{"type": "note", "payload": {"text": "thinking about case 0"}}],
        [{"type": "error", "level": "error", "payload": {"message": "tool crashed"}},
         {"type": "progress", "payload": {"current": 1, "total": 4}, "step_id": step.id},
         {"type": "llm_request", "payload": {"model": "m-1", "prompt": "case 0, try 2"}}],
        [{"type": "log", "payload": {"text": "line 1\nline 2", "stream": "stderr"},
          "level": "warn"}],
    ]
    for batch in batches:
        with CaptureQueriesContext(connection) as queries:
            services.event_append_batch(run_id=ids[0], events=batch, worker_id="parity-w1")
        assert ran(queries, APPEND_SQL)
    with CaptureQueriesContext(connection) as queries:
        services.event_append_batch(run_id=ids[1], events=[{"type": "error"}],
                                    worker_id="parity-w1")
    assert ran(queries, APPEND_SQL)

    run = Run.objects.get(pk=ids[0])
    assert run.error_count == 1 and run.event_count == RunEvent.objects.filter(run=run).count()
    assert_rebuild_changes_nothing(ids)


def test_succeed_statement_writes_the_projection_of_run_succeeded(project):
    ids = enqueue(project, 4)
    services.run_claim_next(worker_id="parity-w1", kinds=["parity.job"], limit=4)
    services.event_append_batch(run_id=ids[0], events=[{"type": "note"}], worker_id="parity-w1")
    with CaptureQueriesContext(connection) as queries:
        done = services.run_succeed_batch(
            results=[(run_id, {"answer": f"result {i}", "n": i}) for i, run_id in
                     enumerate(ids[:3])],
            worker_id="parity-w1")
    assert ran(queries, SUCCEED_SQL)
    assert all(isinstance(done[run_id], Run) for run_id in ids[:3])
    with CaptureQueriesContext(connection) as queries:
        services.run_succeed(run_id=ids[3], output={"answer": "single"}, worker_id="parity-w1")
    assert ran(queries, SUCCEED_SQL)

    assert set(Run.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"succeeded"}
    assert_rebuild_changes_nothing(ids)
    for run_id in ids:
        assert_lifecycle_chained(run_id)
