"""`runs tail`: stored events, then live ones until the run finishes; exit status by outcome."""

from __future__ import annotations

import json

import pytest

from runs import services
from runs.models import Run
from tests.cli.conftest import WatchedOutput
from tests.runs.factories import RunFactory

LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def columns(line: str) -> list[str]:
    """time, level, type, step and text of one event line."""
    return line.split(None, 4)


def work_on(run: Run, out: WatchedOutput, finish) -> None:
    """What a worker does while the CLI tails its run: log, report progress, finish."""
    assert out.wait_for("run.started"), "the stored events were never printed"
    step = services.step_create(run_id=run.id, name="fetch")
    services.event_append(run_id=run.id, type="log", step_id=step.id,
                          payload={"stream": "stdout", "text": "hello\nworld\n"})
    services.event_append(run_id=run.id, type="progress",
                          payload={"completed": 1, "total": 2, "message": "half way"})
    assert out.wait_for("half way")
    finish()


@pytest.mark.django_db
def test_tail_of_a_finished_run_prints_its_events_and_output_ref(cli):
    run = RunFactory(state="running")
    services.event_append(run_id=run.id, type="note", payload={"text": "thinking"})
    run = services.run_succeed(run_id=run.id, output={"answer": 42, "notes": "n" * 9000})
    result = cli("runs", "tail", run.id)
    assert result.code == 0, result.err
    assert [columns(line)[1:4] for line in result.lines[:-1]] == [
        ["info", "run.created", "-"], ["info", "run.started", "-"], ["info", "note", "-"],
        ["info", "run.succeeded", "-"]]
    assert columns(result.lines[2])[4] == "thinking"
    assert result.lines[-1] == f"output_ref: {run.output_ref}"
    assert run.output_ref.startswith("sha256:")


@LIVE
def test_tail_follows_a_run_until_it_succeeds(cli, in_thread):
    run = RunFactory(state="running")
    out = WatchedOutput()
    in_thread(lambda: work_on(run, out, lambda: services.run_succeed(
        run_id=run.id, output={"answer": 42, "notes": "n" * 9000})))
    result = cli("runs", "tail", run.id, "--timeout", "120", stdout=out)
    assert result.code == 0, result.err
    run.refresh_from_db()
    assert [columns(line)[2] for line in result.lines[:-1]] == [
        "run.created", "run.started", "step.created", "log", "progress", "run.succeeded"]
    log_line = next(columns(line) for line in result.lines if " log " in line)
    assert log_line[3].startswith("step_") and log_line[4] == "[stdout] hello ⏎ world"
    assert "1/2 half way" in result.out
    assert result.lines[-1] == f"output_ref: {run.output_ref}" and run.output_ref


@LIVE
def test_tail_exits_1_when_the_run_fails(cli, in_thread):
    run = RunFactory(state="running")
    out = WatchedOutput()
    in_thread(lambda: work_on(run, out, lambda: services.run_fail(
        run_id=run.id, error="tool crashed")))
    result = cli("runs", "tail", run.id, "--timeout", "120", stdout=out)
    assert result.code == 1
    assert result.err == "error: tool crashed\n"
    assert columns(result.lines[-1])[1:3] == ["error", "run.failed"]


@LIVE
def test_remote_tail_follows_until_canceled(cli, remote, in_thread):
    run = RunFactory(state="running")
    out = WatchedOutput()
    in_thread(lambda: work_on(run, out, lambda: services.run_cancel(
        run_id=run.id, reason="user asked", force=True)))
    result = cli("runs", "tail", run.id, "--timeout", "120", *remote, stdout=out)
    assert result.code == 1
    assert result.err == f"error: run {run.id} was canceled\n"
    assert "[stdout] hello ⏎ world" in result.out and "1/2 half way" in result.out
    assert columns(result.lines[-1])[2:] == ["run.canceled", "-", "user asked"]
    assert cli("runs", "tail", run.id).out == result.out  # the same lines from the database


@LIVE
def test_remote_tail_json_lines(cli, remote, in_thread):
    run = RunFactory(state="running")
    out = WatchedOutput()
    in_thread(lambda: work_on(run, out, lambda: services.run_succeed(run_id=run.id)))
    result = cli("runs", "tail", run.id, "--json", "--timeout", "120", *remote, stdout=out)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.lines]
    events = [line["event"] for line in lines[:-1]]
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})  # no repeats
    assert events[0]["type"] == "run.created" and events[-1]["type"] == "run.succeeded"
    assert lines[-1]["run"]["state"] == "succeeded"
    local = cli("runs", "tail", run.id, "--json")
    assert local.out == result.out


@pytest.mark.django_db
def test_tail_gives_up_after_its_timeout(cli):
    run = RunFactory()
    result = cli("runs", "tail", run.id, "--timeout", "0.5")
    assert result.code == 124
    assert result.err == f"error: timed out after 0.5s; run {run.id} is still queued\n"
    assert columns(result.lines[0])[2] == "run.created"


@pytest.mark.django_db
def test_tail_of_an_unknown_run(cli):
    result = cli("runs", "tail", "run_01NOPE")
    assert (result.code, result.out, result.err) == (
        1, "", "error: run run_01NOPE does not exist\n")


@pytest.mark.django_db
def test_tail_of_a_run_with_a_small_output_prints_it(cli):
    run = RunFactory(state="running")
    services.run_succeed(run_id=run.id, output={"answer": 42})
    result = cli("runs", "tail", run.id)
    assert result.code == 0, result.err
    assert columns(result.lines[-2])[2] == "run.succeeded"
    assert result.lines[-1] == 'output: {"answer":42}'
