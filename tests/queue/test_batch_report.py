"""Succeeded jobs reported in batches (``services.run_succeed_batch``): every run still gets its own
``run.succeeded`` event, chained to its own ``run.started``, and projections rebuild equal."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from payloads.models import PayloadBlob
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
    run = Run.objects.get(pk=run_id)
    # A small output is kept on the run, a large one is a blob (output_ref): never both.
    assert succeeded.payload == ({"output": run.output} if run.output is not None
                                 else {"output_ref": output_ref})
    assert succeeded.source == "server" and succeeded.level == "info"
    assert run.state == "succeeded" and run.output_ref == output_ref
    assert run.event_count == 3 and run.finished_at == succeeded.created_at


def big_output(n: int) -> dict:
    """Over TRACEFOUNDRY_INLINE_STRING_LIMIT: stored as a payload blob."""
    return {"n": n, "log": f"line {n}\n" * 2000}


def test_runs_succeed_gives_each_run_its_own_event(project):
    runs = [enqueue(project, input={"n": i % 2}) for i in range(5)]
    claimed = run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=5)
    assert {r.id for r in claimed} == {r.id for r in runs}

    results = services.run_succeed_batch(
        results=[(r.id, big_output(i % 2)) for i, r in enumerate(runs)], worker_id="w-batch")

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


def test_small_outputs_stay_on_the_run_redacted(project):
    runs = [enqueue(project) for _ in range(3)]
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=3)
    secret = "sk-ant-api03-" + "A1b2C3d4" * 10
    services.run_succeed_batch(results=[
        (runs[0].id, {"answer": 1}), (runs[1].id, {"token": secret}), (runs[2].id, None),
    ], worker_id="w-batch")
    first, second, third = (Run.objects.get(pk=r.id) for r in runs)
    assert first.output == {"answer": 1} and first.output_ref == ""
    assert second.output_ref == "" and secret not in dumps(second.output)
    assert third.output is None and third.output_ref == ""
    assert not PayloadBlob.objects.exists()
    for run in (first, second, third):
        assert_succeeded_once(run.id, "")


def test_a_batch_stores_each_large_output_once(project):
    runs = [enqueue(project) for _ in range(4)]
    run_claim_next(worker_id="w-batch", kinds=["system.noop"], limit=4)
    results = services.run_succeed_batch(
        results=[(r.id, big_output(i % 2)) for i, r in enumerate(runs)], worker_id="w-batch")
    refs = [results[r.id].output_ref for r in runs]
    assert refs[0] == refs[2] != refs[1] == refs[3]
    assert PayloadBlob.objects.count() == 2
    expected = snapshot()
    call_command("rebuild_projections", stdout=io.StringIO())
    assert snapshot() == expected
