"""`tracefoundry import-bundle` and `tracefoundry dry-replay`, local and remote."""

from __future__ import annotations

import io
import json

import pytest

from runs.models import Run
from tests.bundles.builders import agent_bundle, zip_entries
from traces.models import Trace

TRACE = "ab" * 16


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def bundle_file(tmp_path):
    def write(data: bytes, name: str = "bundle.zip"):
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


@pytest.mark.django_db
def test_import_locally_with_plain_progress_lines(cli, bundle_file):
    path = bundle_file(agent_bundle(TRACE).zip())
    result = cli("import-bundle", path)
    assert result.code == 0, result.err
    run = Run.objects.get()
    assert result.lines == [
        "bundle validated",
        "payloads stored (3/3)",
        "run imported (8/8)",
        "spans ingested (4/4)",
        "Imported into project default",
        f"  trace     {TRACE} (4 spans, source bundle_import, environment offline)",
        f"  run       {run.id} (from {run.imported_from}; 8 events)",
        "  payloads  3 restored",
    ]
    again = cli("import-bundle", path)
    assert again.code == 0
    assert "Already imported into project default: nothing new was stored" in again.out
    assert Run.objects.count() == 1 and Trace.objects.count() == 1


@pytest.mark.django_db
def test_a_progress_bar_on_a_terminal_and_json_for_scripts(cli, bundle_file, other_project):
    path = bundle_file(agent_bundle(TRACE).zip())
    terminal = Terminal()
    result = cli("import-bundle", path, "--project", "other", stdout=terminal)
    assert result.code == 0, result.err
    assert "\r[" in result.out and "100% ingesting spans 4/4" in result.out
    assert "bundle validated" not in result.out  # the plain lines are for pipes
    assert Trace.objects.get().project == other_project
    scripted = cli("import-bundle", path, "--project", "other", "--json")
    report = json.loads(scripted.out)  # nothing but the report
    assert report["already_imported"] is True and report["project"] == "other"


@pytest.mark.django_db
def test_dry_replay_locally(cli, bundle_file, nothing_written):
    trace = agent_bundle(TRACE)
    path = bundle_file(trace.zip())
    with nothing_written():
        result = cli("dry-replay", path)
    assert result.code == 0, result.err
    assert "Dry replay of bundle.zip: OK, no findings" in result.out
    assert "tree      4 spans, depth 2, 1 root, 0 orphans, 0 cycles" in result.out
    assert "types     llm 2 · tool 1 · agent 1" in result.out
    calls = result.out.split("LLM and tool calls, in start order\n")[1].splitlines()
    assert calls[0].split() == ["#", "TYPE", "NAME", "MODEL/TOOL", "STATUS", "START", "DURATION"]
    assert calls[1].split() == ["1", "llm", "chat", "gpt-4o", "gpt-4o", "ok", "+10ms", "300ms"]
    assert calls[3].split()[3:6] == ["gpt-4o-mini", "gpt-4o-mini", "error"]
    listed = trace.manifest()
    entries = trace.entries()
    entries["spans.otlp.json"] = entries["spans.otlp.json"].replace(b"planner", b"plotter")
    broken = cli("dry-replay", bundle_file(zip_entries(entries, listed), "broken.zip"))
    assert broken.code == 1
    assert "Dry replay of broken.zip: 1 finding" in broken.out
    assert "hash_mismatch  spans.otlp.json" in broken.out


@pytest.mark.django_db
def test_refusals_are_errors(cli, bundle_file, nothing_written, tmp_path):
    path = bundle_file(b"not a zip")
    with nothing_written():
        refused = cli("import-bundle", path)
    assert refused.code == 1
    assert refused.err == "error: the upload is not a zip archive\n"
    missing = cli("import-bundle", str(tmp_path / "nope.zip"))
    assert missing.code == 1 and "cannot read" in missing.err


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_gives_the_local_reports(cli, bundle_file, remote, tmp_path):
    trace = agent_bundle(TRACE)
    path = bundle_file(trace.zip())
    local = cli("dry-replay", path)
    over_http = cli("dry-replay", path, *remote)
    assert over_http.code == 0, over_http.err
    assert over_http.out == local.out
    result = cli("import-bundle", path, *remote)
    assert result.code == 0, result.err
    assert result.lines[0] == "uploaded (" + result.lines[0].split("(")[1]
    assert result.lines[1] == "Imported into project default"
    run = Run.objects.get()
    assert run.imported_from == trace.run_id and Trace.objects.get().run_id == run.id
    terminal = Terminal()
    again = cli("import-bundle", path, *remote, stdout=terminal)
    assert "uploading" in again.out and "Already imported" in again.out
    refused = cli("import-bundle", bundle_file(b"junk", "junk.zip"), *remote)
    assert refused.code == 1 and refused.err == "error: the upload is not a zip archive\n"


def test_the_console_script_lists_the_bundle_commands():
    from tests.cli.test_console_script import tracefoundry
    from tests.livestack import ROOT

    here = {"PYTHONPATH": str(ROOT)}  # this checkout's code, whichever one installed the script
    top = tracefoundry("--help", **here)
    assert top.returncode == 0 and "import-bundle" in top.stdout and "dry-replay" in top.stdout
    usage = tracefoundry("import-bundle", "--help", **here)
    assert "--project SLUG" in usage.stdout and "--remote" in usage.stdout
    assert tracefoundry("dry-replay", **here).returncode == 2  # FILE.zip is required
