"""Succeeded jobs reported in batches (``services.run_succeed_batch``): every run still gets its own
``run.succeeded`` event, chained to its own ``run.started``, and projections rebuild equal."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from django.core.management import call_command

from payloads.models import PayloadBlob
from payloads.retention import UNREFERENCED_GRACE
from payloads.store import REUSE_REFRESH_AFTER
from runs import services
from runs.models import Run, RunEvent, Step
from runs.projections import RUN_PROJECTED_FIELDS, STEP_PROJECTED_FIELDS
from runs.services import run_claim_next
from tracefoundry.errors import DomainError
from tracefoundry.jsonio import dumps

pytestmark = pytest.mark.django_db


def enqueue(project, kind="system.noop", input=None) -> Run:
    return services.run_enqueue(project=project, kind=kind, input=input)[0]


def snapshot():
    runs = {r["id"]: r for r in Run.objects.values("id", *RUN_PROJECTED_FIELDS)}
    steps = {s["id"]: s for s in Step.objects.values("id", *STEP_PROJECTED_FIELDS)}
    return runs, steps


def lifecycle(run_id: str) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run_id=run_id).order_by("id"))


def assert_succeeded_once(run_id: str, output_ref: str) -> None:
    created, started, succeeded = lifecycle(run_id)
    assert [e.type for e in (created, started, succeeded)] == \
        ["run.created", "run.started", "run.succeeded"]
    assert [e.seq for e in (created, started, succeeded)] == [1, 2, 3]
    assert succeeded.causation_id == str(started.event_id)
    assert succeeded.correlation_id == created.correlation_id
    assert succeeded.payload == {"output_ref": output_ref}
    assert succeeded.source == "server" and succeeded.level == "info"
    run = Run.objects.get(pk=run_id)
    assert run.state == "succeeded" and run.output_ref == output_ref
    assert run.event_count == 3 and run.finished_at == succeeded.created_at


def test_runs_succeed_gives_each_run_its_own_event(project):
    runs = [enqueue(project, input={"n": i % 2}) for i in range(5)]
    claimed = run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=5)
    assert {r.id for r in claimed} == {r.id for r in runs}

    results = services.run_succeed_batch(
        results=[(r.id, {"n": i % 2}) for i, r in enumerate(runs)], worker_id="w-batch")

    assert set(results) == {r.id for r in runs}
    assert all(isinstance(r, Run) and r.state == "succeeded" for r in results.values())
    refs = {results[r.id].output_ref for r in runs}
    assert len(refs) == 2  # two distinct outputs: two blobs, each stored once
    assert PayloadBlob.objects.count() == 2
    for i, run in enumerate(runs):
        assert_succeeded_once(run.id, results[runs[i % 2].id].output_ref)


def test_projections_rebuild_equal_after_batch(project):
    runs = [enqueue(project) for _ in range(4)]
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=4)
    services.run_succeed_batch(results=[(r.id, {}) for r in runs], worker_id="w-batch")
    expected = snapshot()
    Run.objects.update(state="running", event_count=0, finished_at=None, output_ref="junk")
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == expected


def test_runs_not_held_get_the_error_run_succeed_raises(project):
    mine, theirs, queued = enqueue(project), enqueue(project), enqueue(project, "agent.x")
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=1)  # the oldest: ``mine``
    run_claim_next(worker_id="w-other", kinds=["system.noop"], limit=1)

    results = services.run_succeed_batch(
        results=[(mine.id, None), (theirs.id, None), (queued.id, None)], worker_id="w-batch")

    assert isinstance(results[mine.id], Run)
    assert_succeeded_once(mine.id, "")
    assert isinstance(results[theirs.id], DomainError)
    assert isinstance(results[queued.id], DomainError)
    assert Run.objects.get(pk=theirs.id).state == "running"
    assert Run.objects.get(pk=queued.id).state == "queued"
    assert not RunEvent.objects.filter(run_id__in=[theirs.id, queued.id],
                                       type="run.succeeded").exists()


def test_run_with_open_step_takes_the_general_path(project):
    run = enqueue(project)
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=1)
    step = services.step_create(run_id=run.id, name="left open")
    services.step_transition(run_id=run.id, step_id=step.id, action="start")

    results = services.run_succeed_batch(results=[(run.id, None)], worker_id="w-batch")

    assert results[run.id].state == "succeeded"
    types = [e.type for e in lifecycle(run.id)]
    assert types.count("run.succeeded") == 1
    expected = snapshot()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == expected


def test_worker_reports_a_claim_batch_at_once(project, make_worker):
    runs = [enqueue(project, input={"i": i}) for i in range(6)]
    worker = make_worker(concurrency=8, kinds=["system.noop"])
    assert worker.run_once() == 6
    assert worker.report_batches == 1
    for run in runs:
        run.refresh_from_db()
        assert run.state == "succeeded" and run.attempt == 1
        assert_succeeded_once(run.id, run.output_ref)


def test_recent_outputs_are_remembered_only_outside_transactions(project):
    # Inside a transaction (this test's) the blob is not committed yet: nothing is remembered.
    recent: dict = {}
    run = enqueue(project)
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=1)
    services.run_succeed_batch(results=[(run.id, {"same": 1})], worker_id="w-batch",
                          recent_outputs=recent)
    assert recent == {}


def test_recent_outputs_skip_the_lookup_until_they_expire(project):
    first, second = enqueue(project), enqueue(project)
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=2)
    data = dumps({"same": 1}).encode("utf-8")
    ref = "sha256:" + hashlib.sha256(data).hexdigest()
    # Remembered and fresh: no lookup, no store (the entry says the blob is there).
    recent = {data: (ref, time.monotonic() + 60)}
    services.run_succeed_batch(results=[(first.id, {"same": 1})], worker_id="w-batch",
                          recent_outputs=recent)
    assert_succeeded_once(first.id, ref)
    assert not PayloadBlob.objects.exists()
    # Expired: stored again (a blob retention deleted meanwhile comes back).
    recent[data] = (ref, time.monotonic() - 1)
    services.run_succeed_batch(results=[(second.id, {"same": 1})], worker_id="w-batch",
                          recent_outputs=recent)
    assert_succeeded_once(second.id, ref)
    assert PayloadBlob.objects.filter(sha256=ref.removeprefix("sha256:")).exists()


def test_reuse_window_is_far_inside_retention_grace():
    # The reasoning of services.OUTPUT_REUSE_SECONDS: a remembered blob cannot be collected.
    safe = (UNREFERENCED_GRACE - REUSE_REFRESH_AFTER).total_seconds()
    assert safe > services.OUTPUT_REUSE_SECONDS * 10
