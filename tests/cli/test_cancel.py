"""`runs cancel`: confirmation, queued and running runs, refusals."""

from __future__ import annotations

import json

import pytest

from runs.models import Run
from tests.runs.factories import RunFactory


def state(run: Run) -> str:
    run.refresh_from_db()
    return run.state


@pytest.mark.django_db
def test_yes_cancels_a_queued_run(cli):
    run = RunFactory()
    result = cli("runs", "cancel", run.id, "--yes", "--reason", "not needed")
    assert (result.code, result.out) == (0, f"Canceled {run.id}\n")
    assert state(run) == "canceled"
    assert run.events.last().payload["reason"] == "not needed"


@pytest.mark.django_db
@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_confirming_at_the_prompt_cancels(cli, answer):
    run = RunFactory()
    result = cli("runs", "cancel", run.id, tty=True, stdin=answer)
    assert result.code == 0
    assert result.err == f"Cancel run {run.id}? [y/N] "
    assert state(run) == "canceled"


@pytest.mark.django_db
@pytest.mark.parametrize("answer", ["\n", "n\n", "maybe\n", ""])
def test_anything_else_at_the_prompt_aborts(cli, answer):
    run = RunFactory()
    result = cli("runs", "cancel", run.id, tty=True, stdin=answer)
    assert (result.code, result.out) == (1, "")
    assert result.err.endswith("error: aborted; nothing was canceled\n")
    assert state(run) == "queued"


@pytest.mark.django_db
def test_no_terminal_and_no_yes_refuses(cli):
    run = RunFactory()
    result = cli("runs", "cancel", run.id, stdin="y\n")  # piped: not a terminal
    assert result.code == 1
    assert result.err == ("error: refusing to cancel without confirmation: stdin is not a "
                          "terminal (pass --yes)\n")
    assert state(run) == "queued"


@pytest.mark.django_db
def test_running_run_is_asked_to_stop_unless_forced(cli):
    run = RunFactory(state="running")
    asked = cli("runs", "cancel", run.id, "--yes")
    assert asked.code == 0
    assert asked.out.startswith(f"Cancel requested for {run.id} (running)")
    assert state(run) == "running" and run.cancel_requested_at is not None
    forced = cli("runs", "cancel", run.id, "--yes", "--force", "--json")
    assert json.loads(forced.out)["state"] == "canceled"


@pytest.mark.django_db
def test_finished_or_unknown_runs_cannot_be_canceled(cli):
    run = RunFactory(state="succeeded")
    result = cli("runs", "cancel", run.id, "--yes")
    assert (result.code, result.err) == (1, "error: cannot cancel a run that is succeeded\n")
    unknown = cli("runs", "cancel", "run_01NOPE", tty=True, stdin="y\n")
    assert unknown.err == "error: run run_01NOPE does not exist\n"  # before any prompt


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_cancel(cli, remote):
    queued, running, done = RunFactory(), RunFactory(state="running"), RunFactory(state="failed")
    assert cli("runs", "cancel", queued.id, "--yes", *remote).out == f"Canceled {queued.id}\n"
    asked = cli("runs", "cancel", running.id, "--yes", "--json", *remote)
    assert json.loads(asked.out)["cancel_requested_at"] is not None
    refused = cli("runs", "cancel", done.id, *remote, stdin="y\n")
    assert refused.code == 1 and "pass --yes" in refused.err
    finished = cli("runs", "cancel", done.id, "--yes", *remote)
    assert finished.err == "error: cannot cancel a run that is failed\n"
    assert [state(r) for r in (queued, running, done)] == ["canceled", "running", "failed"]
