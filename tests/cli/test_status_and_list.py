"""`runs status` and `runs list`: tables, JSON, filters, and the same output local and remote."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from runs import services
from tests.conftest import client_for
from tests.runs.factories import RunFactory


@pytest.mark.django_db
def test_status_shows_a_run(cli):
    run = RunFactory(kind="script.pull", name="nightly pull", state="failed")
    result = cli("runs", "status", run.id)
    assert result.code == 0, result.err
    fields = dict(line.split(None, 1) for line in result.lines)
    assert fields["id"] == run.id and fields["state"] == "failed"
    assert fields["kind"] == "script.pull" and fields["name"] == "nightly pull"
    assert fields["attempt"] == "1/3" and fields["error"] == "boom"
    assert fields["events"] == "3 (1 errors)"


@pytest.mark.django_db
def test_status_says_when_no_worker_serves_a_queued_run(cli, project):
    run, _ = services.run_enqueue(project=project, kind="script.pull")
    result = cli("runs", "status", run.id)
    assert result.code == 0, result.err
    fields = dict(line.split(None, 1) for line in result.lines)
    assert fields["state"] == "queued"
    assert fields["waiting"] == "no worker online serves kind script.pull"
    services.run_cancel(run_id=run.id, reason="x")
    assert "waiting" not in cli("runs", "status", run.id).out


@pytest.mark.django_db
def test_status_json_is_what_the_api_returns(cli, viewer):
    run = RunFactory(state="succeeded", input={"a": [1, "b"]})
    result = cli("runs", "status", run.id, "--json")
    api = client_for(viewer).get(f"/api/v1/runs/{run.id}").json()
    assert json.loads(result.out) == api


@pytest.mark.django_db
def test_unknown_run_is_an_error(cli):
    result = cli("runs", "status", "run_01NOPE")
    assert (result.code, result.out) == (1, "")
    assert result.err == "error: run run_01NOPE does not exist\n"


@pytest.mark.django_db
def test_list_is_newest_first_and_limited_to_20(cli):
    made = [RunFactory().id for _ in range(22)]
    result = cli("runs", "list")
    assert result.code == 0, result.err
    header, *rows = result.lines
    assert header.split() == ["ID", "STATE", "KIND", "PROJECT", "ATTEMPT", "CREATED", "DURATION",
                              "EVENTS"]
    assert [row.split()[0] for row in rows] == made[::-1][:20]
    assert len(json.loads(cli("runs", "list", "--limit", "21", "--json").out)) == 21


@pytest.mark.django_db
def test_list_filters(cli, other_project):
    a = RunFactory(kind="agent.session", state="running")
    b = RunFactory(kind="script.pull", state="succeeded")
    c = RunFactory(kind="script.pull", project=other_project)

    def ids(*argv: str) -> list[str]:
        result = cli("runs", "list", "--json", *argv)
        assert result.code == 0, result.err
        return [r["id"] for r in json.loads(result.out)]

    assert ids() == [c.id, b.id, a.id]
    assert ids("--project", "other") == [c.id]
    assert ids("--state", "running") == [a.id]
    assert ids("--state", "running,succeeded") == [b.id, a.id]
    assert ids("--state", "running", "--state", "queued") == [c.id, a.id]
    assert ids("--kind", "script.pull") == [c.id, b.id]
    assert ids("--kind", "script.pull", "--project", "default") == [b.id]
    future = (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ids("--since", future) == []
    assert ids("--since", "2000-01-01") == [c.id, b.id, a.id]
    assert ids("--since", "2000-01-01T00:00:00+02:00") == [c.id, b.id, a.id]


@pytest.mark.django_db
def test_list_without_runs(cli):
    assert cli("runs", "list").out == "No runs.\n"
    assert cli("runs", "list", "--json").out == "[]\n"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday"], "argument --since: not an ISO-8601 date or date-time: "
                                   "'yesterday'"),
        (["--state", "sleeping"], "argument --state: unknown state 'sleeping'"),
        (["--limit", "0"], "argument --limit: must be at least 1"),
    ],
)
def test_bad_list_arguments_are_usage_errors(cli, argv, message):
    result = cli("runs", "list", *argv)
    assert result.code == 2 and result.out == ""
    assert message in result.err


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_local_and_remote_print_the_same(cli, remote):
    queued = RunFactory(kind="script.pull", input={"q": 1})
    failed = RunFactory(state="failed")
    done = RunFactory(state="succeeded")
    services.step_create(run_id=queued.id, name="fetch")
    for run in (queued, failed, done):
        for argv in (["status", run.id], ["status", run.id, "--json"]):
            local, far = cli("runs", *argv), cli("runs", *argv, *remote)
            assert (local.code, local.out, local.err) == (far.code, far.out, far.err)
    for argv in ([], ["--json"], ["--state", "failed,succeeded"], ["--limit", "2", "--json"],
                 ["--kind", "script.pull"], ["--since", "2000-01-01T00:00:00Z"]):
        local, far = cli("runs", "list", *argv), cli("runs", "list", *argv, *remote)
        assert local.code == 0 and local.out == far.out
    local, far = cli("runs", "status", "run_01NOPE"), cli("runs", "status", "run_01NOPE", *remote)
    assert (far.code, far.err) == (local.code, local.err) == (1, local.err)
    assert cli("runs", "status", "not-a-run-id", *remote).err == (
        "error: run not-a-run-id does not exist\n")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_list_pages_past_the_api_page_size(cli, remote):
    for _ in range(102):
        RunFactory()
    local = cli("runs", "list", "--limit", "101", "--json")
    far = cli("runs", "list", "--limit", "101", "--json", *remote)
    assert len(json.loads(far.out)) == 101
    assert far.out == local.out
