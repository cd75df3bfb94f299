"""`tracefoundry runs enqueue`: input from a flag or stdin, idempotency keys, bad input."""

from __future__ import annotations

import json

import pytest

from runs.models import Run, RunEvent


@pytest.mark.django_db
def test_enqueue_creates_a_queued_run(cli):
    result = cli("runs", "enqueue", "script.pull", "--input", '{"url": "https://x"}',
                 "--max-attempts", "5")
    assert result.code == 0, result.err
    run = Run.objects.get()
    assert result.out == f"Enqueued {run.id} (kind script.pull, project default, queued)\n"
    assert (run.kind, run.state, run.input, run.max_attempts) == (
        "script.pull", "queued", {"url": "https://x"}, 5)
    assert RunEvent.objects.get(run=run).source == "cli"


@pytest.mark.django_db
def test_enqueue_json_is_the_api_run_shape(cli, other_project):
    result = cli("runs", "enqueue", "agent.session", "--project", "other", "--json")
    body = json.loads(result.out)
    run = Run.objects.get()
    assert body["id"] == run.id and body["project"] == "other" and body["input"] == {}
    assert body["links"] == {"self": f"/api/v1/runs/{run.id}",
                             "events": f"/api/v1/runs/{run.id}/events",
                             "steps": f"/api/v1/runs/{run.id}/steps"}


@pytest.mark.django_db
def test_enqueue_reads_input_from_stdin(cli):
    result = cli("runs", "enqueue", "script.pull", "--stdin", stdin='{"files": [1, 2]}\n')
    assert result.code == 0, result.err
    assert Run.objects.get().input == {"files": [1, 2]}


@pytest.mark.django_db
def test_idempotency_key_returns_the_existing_run(cli):
    first = cli("runs", "enqueue", "x", "--input", "[1]", "--idempotency-key", "k", "--json")
    again = cli("runs", "enqueue", "x", "--input", "[1]", "--idempotency-key", "k")
    run_id = json.loads(first.out)["id"]
    assert again.code == 0
    assert again.out == f"Idempotency key 'k' already names {run_id} (queued); nothing new was " \
                        "enqueued\n"
    clash = cli("runs", "enqueue", "x", "--input", "[2]", "--idempotency-key", "k")
    assert clash.code == 1
    assert clash.err == "error: this Idempotency-Key was already used with a different request\n"
    assert Run.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "stdin", "code", "message"),
    [
        (["--input", "{nope"], None, 2, "argument --input: not valid JSON"),
        (["--stdin"], "{nope", 2, "error: --stdin: not valid JSON"),
        (["--stdin"], "  ", 2, "error: --stdin: no input on stdin"),
        (["--input", "{}", "--stdin"], "{}", 2, "not allowed with argument"),
        (["--max-attempts", "0"], None, 2, "argument --max-attempts: must be between 1 and 100"),
        (["--project", "nope"], None, 1, "error: project 'nope' does not exist"),
    ],
)
def test_bad_input_is_reported_and_enqueues_nothing(cli, argv, stdin, code, message):
    result = cli("runs", "enqueue", "script.pull", *argv, stdin=stdin)
    assert result.code == code
    assert message in result.err
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_bad_kind_gets_the_servers_message(cli):
    result = cli("runs", "enqueue", "Bad Kind")
    assert result.code == 1
    assert result.err == "error: kind must match ^[a-z][a-z0-9_.:-]{0,127}$\n"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_enqueue_uses_the_api_and_its_idempotency(cli, remote):
    first = cli("runs", "enqueue", "script.pull", "--input", '{"n": 1}', "--idempotency-key",
                "rk", *remote)
    run = Run.objects.get()
    assert first.code == 0, first.err
    assert first.out == f"Enqueued {run.id} (kind script.pull, project default, queued)\n"
    assert RunEvent.objects.get(run=run).source == "api"
    again = cli("runs", "enqueue", "script.pull", "--input", '{"n": 1}', "--idempotency-key",
                "rk", "--json", *remote)
    assert json.loads(again.out) == json.loads(cli("runs", "status", run.id, "--json").out)
    clash = cli("runs", "enqueue", "script.pull", "--input", '{"n": 2}', "--idempotency-key",
                "rk", *remote)
    assert (clash.code, clash.err) == (
        1, "error: this Idempotency-Key was already used with a different request\n")
    assert cli("runs", "enqueue", "Bad Kind", *remote).code == 1
    assert Run.objects.count() == 1
