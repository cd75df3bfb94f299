"""The installed `tracefoundry` console script, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runs.models import Run
from tests.runs.factories import RunFactory

SCRIPT = Path(sys.executable).with_name("tracefoundry")


def tracefoundry(*argv: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEFOUNDRY_API_")}
    return subprocess.run(
        [str(SCRIPT), *argv], input=stdin, capture_output=True, text=True, timeout=120,
        env={**clean, **env},
    )


def test_help_lists_the_run_commands():
    result = tracefoundry("runs", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("enqueue", "status", "list", "cancel", "tail"):
        assert command in result.stdout
    assert tracefoundry("--version").stdout.startswith("tracefoundry ")
    assert tracefoundry("runs", "explode").returncode == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_commands_from_the_environment(cli, live_server, api_key):
    env = {"TRACEFOUNDRY_API_URL": live_server.url + "/api/v1/", "TRACEFOUNDRY_API_KEY": api_key}
    enqueued = tracefoundry("runs", "enqueue", "script.pull", "--stdin", "--json",
                            stdin='{"from": "stdin"}', **env)
    assert enqueued.returncode == 0, enqueued.stderr
    run = Run.objects.get(pk=json.loads(enqueued.stdout)["id"])
    assert run.input == {"from": "stdin"}

    status = tracefoundry("runs", "status", run.id, "--json", **env)
    assert status.stdout == cli("runs", "status", run.id, "--json").out
    listed = tracefoundry("runs", "list", **env)
    assert listed.stdout == cli("runs", "list").out

    refused = tracefoundry("runs", "cancel", run.id, stdin="y\n", **env)  # a pipe, not a TTY
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert tracefoundry("runs", "cancel", run.id, "--yes", **env).returncode == 0
    tail = tracefoundry("runs", "tail", run.id, **env)
    assert tail.returncode == 1
    assert tail.stderr == f"error: run {run.id} was canceled\n"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_local_flag_wins_over_the_environment(cli, live_server, api_key, monkeypatch):
    run = RunFactory()
    monkeypatch.setenv("TRACEFOUNDRY_API_URL", "http://127.0.0.1:9")  # nothing listens there
    assert cli("runs", "status", run.id).code == 1
    assert cli("runs", "status", run.id, "--local").code == 0
