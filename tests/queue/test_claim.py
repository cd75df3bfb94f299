"""run_claim_next: what is claimed, in which order, what it records, and never twice."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs import services
from runs.models import Run, RunEvent
from runs.projections import RUN_PROJECTED_FIELDS
from runs.services import run_claim_next
from tests.runs.factories import RunFactory
from tracefoundry.errors import InvalidInput


def enqueue(project, kind="test.job", **kwargs) -> Run:
    return services.run_enqueue(project=project, kind=kind, **kwargs)[0]


@pytest.mark.django_db
class TestClaim:
    def test_claims_oldest_due_runs_first(self, project):
        runs = [enqueue(project, input={"n": n}) for n in range(3)]
        claimed = run_claim_next(worker_id="w-1", limit=2)
        assert [r.id for r in claimed] == [runs[0].id, runs[1].id]
        for run in claimed:
            assert run.state == "running" and run.attempt == 1 and run.claimed_by == "w-1"
            assert run.heartbeat_at == run.claimed_at and run.started_at
            assert run.input in ({"n": 0}, {"n": 1})
        assert [r.id for r in run_claim_next(worker_id="w-2", limit=5)] == [runs[2].id]
        assert run_claim_next(worker_id="w-3") == []

    def test_future_run_after_is_not_claimed(self, project):
        later = enqueue(project, run_after=timezone.now() + timedelta(hours=1))
        due = enqueue(project, run_after=timezone.now() - timedelta(seconds=1))
        assert [r.id for r in run_claim_next(worker_id="w", limit=10)] == [due.id]
        later.refresh_from_db()
        assert later.state == "queued"

    def test_kinds_filter(self, project):
        a = enqueue(project, kind="kind.a")
        b = enqueue(project, kind="kind.b")
        claimed = run_claim_next(worker_id="w", kinds=["kind.b", "kind.c"], limit=10)
        assert [r.id for r in claimed] == [b.id]
        assert [r.id for r in run_claim_next(worker_id="w", kinds=[], limit=10)] == [a.id]

    def test_project_confinement(self, project, other_project):
        enqueue(other_project)
        mine = enqueue(project)
        claimed = run_claim_next(worker_id="w", limit=10, project_id=project.id)
        assert [r.id for r in claimed] == [mine.id]

    def test_records_a_started_event_chained_to_the_previous_one(self, project):
        run = enqueue(project)
        run_claim_next(worker_id="w-9")
        events = list(RunEvent.objects.filter(run=run).order_by("id"))
        assert [e.type for e in events] == ["run.created", "run.started"]
        started = events[1]
        assert started.seq == 2 and started.source == "worker"
        assert started.causation_id == str(events[0].event_id)
        assert started.correlation_id == run.correlation_id
        assert started.payload["attempt"] == 1 and started.payload["worker_id"] == "w-9"
        assert started.payload["wait_ms"] >= 0

    def test_a_retried_run_is_claimed_again_with_the_next_attempt(self, project, settings):
        settings.TRACEFOUNDRY_RETRY_BASE_SECONDS = 0
        run = enqueue(project, max_attempts=3)
        run_claim_next(worker_id="w-1")
        services.run_fail(run_id=run.id, error="flaky", retryable=True, worker_id="w-1")
        (again,) = run_claim_next(worker_id="w-2")
        assert again.id == run.id and again.attempt == 2 and again.claimed_by == "w-2"
        types = list(RunEvent.objects.filter(run=run).order_by("id").values_list("type",
                                                                                 flat=True))
        assert types == ["run.created", "run.started", "run.retrying", "run.started"]

    def test_projection_matches_a_rebuild(self, project):
        for n in range(4):
            enqueue(project, input={"n": n})
        claimed = run_claim_next(worker_id="w", limit=3)
        services.run_succeed(run_id=claimed[0].id, output={"ok": 1}, worker_id="w")
        services.run_fail(run_id=claimed[1].id, error="x", worker_id="w")
        before = list(Run.objects.order_by("id").values("id", *RUN_PROJECTED_FIELDS))
        services.projections_rebuild()
        assert list(Run.objects.order_by("id").values("id", *RUN_PROJECTED_FIELDS)) == before

    def test_only_queued_runs_are_claimed(self, project):
        for state in ("running", "succeeded", "failed", "canceled"):
            RunFactory(state=state, kind="test.job")
        assert run_claim_next(worker_id="w", limit=10) == []

    @pytest.mark.parametrize("args", [
        {"worker_id": ""}, {"worker_id": "w" * 201}, {"worker_id": "w", "limit": 0},
        {"worker_id": "w", "limit": 101},
    ])
    def test_bad_arguments(self, project, args):
        with pytest.raises(InvalidInput):
            run_claim_next(**args)


RACE_RUNS = 2000
RACE_THREADS = 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_claimers_never_share_a_run(project):
    """Many claimers at once on PostgreSQL (FOR UPDATE SKIP LOCKED): every claim counted."""
    created = {enqueue(project, kind="race.job").id for _ in range(RACE_RUNS)}
    enqueue(project, kind="race.other")  # not asked for
    claims: list[list[tuple[str, str]]] = [[] for _ in range(RACE_THREADS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(RACE_THREADS)

    def claimer(i: int) -> None:
        rng = random.Random(i)
        try:
            barrier.wait()
            empty = 0
            while empty < 2:
                got = run_claim_next(worker_id=f"w-{i}", kinds=["race.job"],
                                     limit=rng.choice([1, 2, 5, 10]))
                claims[i] += [(f"w-{i}", r.id) for r in got]
                empty = 0 if got else empty + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(RACE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    all_claims = list(itertools.chain.from_iterable(claims))
    claimed_ids = [run_id for _, run_id in all_claims]
    assert len(claimed_ids) == RACE_RUNS
    assert set(claimed_ids) == created
    assert sum(1 for c in claims if c) > 1  # the claimers really competed
    holders = dict(Run.objects.filter(kind="race.job").values_list("id", "claimed_by"))
    assert holders == {run_id: worker for worker, run_id in all_claims}
    assert set(Run.objects.filter(kind="race.job").values_list("state", "attempt")) == {
        ("running", 1)}
    starts = RunEvent.objects.filter(run__kind="race.job", type="run.started")
    assert starts.count() == RACE_RUNS
    assert Run.objects.get(kind="race.other").state == "queued"
