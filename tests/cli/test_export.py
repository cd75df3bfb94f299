"""`tracefoundry export-trace` / `export-run` (local and `--remote`) and `make export-trace`.

The trace is ingested the live way (OTLP with a key, the run services, event appends), with
three payload blobs: a long prompt on a span, a long event payload and a large run output.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.db import connection

from runs import services
from runs.models import Run
from tests.conftest import client_for
from tests.livestack import ROOT
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import NOW, json_request, json_span
from traces.models import Trace

TRACE = "5e" * 16
MISSING = "0f" * 16
MS = 1_000_000


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class BinaryStdout(io.StringIO):
    """A piped stdout: text goes to the StringIO, bytes to ``.buffer``."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()


def _ingest(make_key) -> Run:
    run = RunFactory(state="running", kind="agent.session", input={"goal": "report"})
    services.event_append_batch(run_id=run.id, events=[
        {"type": "llm_request", "payload": {"model": "gpt-4o",
                                            "text": "thinking about the plan " * 1000}},
        {"type": "tool_call", "payload": {"tool": "sql_query"}},
    ])
    services.run_succeed(run_id=run.id, output={"rows": list(range(3000))})
    attrs = {"tracefoundry.run_id": run.id}
    spans = [
        json_span(TRACE, "1" * 16, "invoke_agent planner", start=NOW, duration_ms=900,
                  attributes={"gen_ai.operation.name": "invoke_agent", **attrs}, status=1),
        json_span(TRACE, "2" * 16, "chat gpt-4o", parent="1" * 16, start=NOW + 10 * MS,
                  duration_ms=300, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.prompt": "Plan the next careful step. " * 600, **attrs}),
        json_span(TRACE, "3" * 16, "execute_tool sql_query", parent="1" * 16,
                  start=NOW + 320 * MS, duration_ms=200, attributes={
                      "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sql_query",
                      **attrs}),
    ]
    _, key = make_key("ingest")
    resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces", json_request(spans),
                                           content_type="application/json")
    assert resp.status_code == 200, resp.content
    run = Run.objects.get(pk=run.id)
    assert Trace.objects.get(trace_id=TRACE).run_id == run.id
    return run


@pytest.fixture
def live_run(make_key) -> Run:
    return _ingest(make_key)


@pytest.fixture
def out(tmp_path) -> Path:
    """Where the bundles go (tmp_path itself holds the payload store)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def _bundle(data: bytes | Path) -> tuple[zipfile.ZipFile, dict]:
    archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert archive.namelist()[0] == "manifest.json"
    assert archive.testzip() is None
    return archive, json.loads(archive.read("manifest.json"))


def _payload_entries(archive: zipfile.ZipFile) -> list[str]:
    return [n for n in archive.namelist() if n.startswith("payloads/")]


def _summary(path: Path | str, mode: str, *, events: int, payloads: int,
             note: str = "") -> str:
    size = Path(path).stat().st_size
    return (f"{path}: {size} bytes, {mode} export{note}, 3 spans, {events} run events, "
            f"{payloads} payload{'s' if payloads != 1 else ''}\n")


# --- local ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_full_local_export_with_payloads(cli, live_run, out, monkeypatch):
    target = out / "trace.zip"
    result = cli("export-trace", TRACE, "-o", str(target))
    assert result.code == 0, result.err
    events = live_run.event_count
    assert result.out == _summary(target, "full", events=events, payloads=3)
    assert os.listdir(out) == ["trace.zip"]  # the temporary file was renamed
    archive, manifest = _bundle(target)
    assert manifest["export_mode"] == "full"
    assert (manifest["trace_id"], manifest["run_id"]) == (TRACE, live_run.id)
    assert manifest["counts"] == {"spans": 3, "run_events": events, "payloads": 3}
    assert len(_payload_entries(archive)) == 3
    assert b"Plan the next careful step." in b"".join(
        archive.read(n) for n in _payload_entries(archive))
    assert len(archive.read("run_events.jsonl").splitlines()) == events

    # No -o: the bundle's own name in the current directory; -o DIR: that name in DIR.
    here = out / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli("export-trace", TRACE).code == 0
    assert os.listdir(here) == [f"tracefoundry-{TRACE}.zip"]
    into = out / "into"
    into.mkdir()
    listed = cli("export-trace", TRACE.upper(), "-o", str(into), "--strict")
    assert listed.code == 0, listed.err
    assert os.listdir(into) == [f"tracefoundry-{TRACE}-strict.zip"]
    assert listed.out.startswith(f"{into / f'tracefoundry-{TRACE}-strict.zip'}: ")


@pytest.mark.django_db
def test_strict_and_no_payloads(cli, live_run, out):
    strict = out / "strict.zip"
    result = cli("export-trace", TRACE, "-o", str(strict), "--strict")
    assert result.code == 0, result.err
    assert result.out == _summary(strict, "strict", events=live_run.event_count, payloads=0)
    archive, manifest = _bundle(strict)
    assert (manifest["export_mode"], manifest["redaction_mode"]) == ("strict", "strict")
    assert manifest["counts"]["payloads"] == 0 and not _payload_entries(archive)
    assert b"gen_ai.prompt" not in archive.read("spans.otlp.json")  # cut to the allowlist

    bare = out / "bare.zip"
    result = cli("export-trace", TRACE, "-o", str(bare), "--no-payloads", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report == {"path": str(bare), "bytes": bare.stat().st_size, "mode": "full",
                      "trace_id": TRACE, "run_id": live_run.id,
                      "counts": {"spans": 3, "run_events": live_run.event_count,
                                 "payloads": 0},
                      "payloads_unavailable": []}
    archive, manifest = _bundle(bare)
    assert manifest["export_mode"] == "full" and not _payload_entries(archive)
    assert b"tracefoundry.payload.prompt_ref" in archive.read("spans.otlp.json")  # refs stay


@pytest.mark.django_db
def test_export_run_and_stdout(cli, live_run, out):
    target = out / "run.zip"
    result = cli("export-run", live_run.id, "-o", str(target))
    assert result.code == 0, result.err
    assert result.out == _summary(target, "full", events=live_run.event_count, payloads=3)
    _, manifest = _bundle(target)
    assert (manifest["trace_id"], manifest["run_id"]) == (TRACE, live_run.id)

    piped = BinaryStdout()
    result = cli("export-run", live_run.id, "-o", "-", "--strict", stdout=piped)
    assert result.code == 0, result.err
    assert piped.getvalue() == ""  # nothing but the zip on stdout
    data = piped.buffer.getvalue()
    _, manifest = _bundle(data)
    assert manifest["export_mode"] == "strict"
    assert result.err == (f"stdout: {len(data)} bytes, strict export, 3 spans, "
                          f"{live_run.event_count} run events, 0 payloads\n")
    refused = cli("export-run", live_run.id, "-o", "-", stdout=Terminal())
    assert refused.code == 2 and "refusing to write a zip to a terminal" in refused.err


@pytest.mark.django_db
def test_a_counter_on_a_terminal(cli, live_run, out):
    terminal = Terminal()
    target = out / "t.zip"
    result = cli("export-trace", TRACE, "-o", str(target), stdout=terminal)
    assert result.code == 0, result.err
    assert "\rpreparing the bundle" in result.out and "\rwriting " in result.out
    assert result.out.endswith("\r" + _summary(target, "full", events=live_run.event_count,
                                                payloads=3))
    missing = cli("export-trace", MISSING, "-o", str(out / "m.zip"), stdout=Terminal())
    assert missing.code == 1 and missing.err == f"error: no trace {MISSING}\n"
    assert missing.out.startswith("\rpreparing the bundle") and missing.out.endswith(" \r")


@pytest.mark.django_db
def test_unknown_ids_and_bad_usage(cli, live_run, out, nothing_written):
    target = out / "x.zip"
    with nothing_written():
        missing = cli("export-trace", MISSING, "-o", str(target))
        assert (missing.code, missing.err) == (1, f"error: no trace {MISSING}\n")
        assert cli("export-trace", "not-a-trace", "-o", str(target)).err == \
            "error: no trace not-a-trace\n"
        run = cli("export-run", "run_nope", "-o", str(target))
        assert (run.code, run.err) == (1, "error: no run run_nope\n")
        nowhere = cli("export-trace", TRACE, "-o", str(out / "no" / "x.zip"))
        assert nowhere.code == 1
        assert nowhere.err == f"error: cannot write {out / 'no' / 'x.zip'}: " \
                              "No such file or directory\n"
        assert cli("export-trace").code == 2  # TRACE_ID is required
        assert cli("export-trace", TRACE, "--strict", "--full").code == 2
    assert os.listdir(out) == []


# --- remote ---------------------------------------------------------------------------------------

def _remote(live_server, raw_key: str) -> list[str]:
    return ["--remote", "--api-url", live_server.url, "--api-key", raw_key]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_keys_get_what_their_rights_allow(cli, live_run, live_server, make_key, engineer,
                                                 viewer, other_project, out):
    _, engineer_key = make_key("runs:read", user=engineer)
    _, viewer_key = make_key("runs:read", user=viewer)
    _, service_key = make_key("runs:read")
    events = live_run.event_count
    most = " (the most this key may have)"

    full = out / "full.zip"
    result = cli("export-trace", TRACE, "-o", str(full), *_remote(live_server, engineer_key))
    assert result.code == 0, result.err
    assert result.out == _summary(full, "full", events=events, payloads=3, note=most)
    local = out / "local.zip"
    assert cli("export-trace", TRACE, "-o", str(local)).code == 0
    archive, manifest = _bundle(full)
    same, _ = _bundle(local)
    assert archive.namelist() == same.namelist() and len(_payload_entries(archive)) == 3
    for name in archive.namelist()[1:]:  # all but the manifest (its created_at)
        assert archive.read(name) == same.read(name), name
    asked = cli("export-run", live_run.id, "-o", str(out / "run.zip"), "--full",
                *_remote(live_server, engineer_key), stdout=Terminal())
    assert "\rdownloading " in asked.out
    bare = cli("export-trace", TRACE, "-o", str(out / "bare.zip"), "--no-payloads",
               *_remote(live_server, engineer_key))
    assert bare.out == _summary(out / "bare.zip", "full", events=events, payloads=0, note=most)
    assert asked.out.endswith("\r" + _summary(out / "run.zip", "full", events=events,
                                               payloads=3))

    # A viewer's key: strict when it asks for nothing, a clear refusal when it asks for full.
    strict = out / "strict.zip"
    result = cli("export-trace", TRACE, "-o", str(strict), *_remote(live_server, viewer_key))
    assert result.code == 0, result.err
    assert result.out == _summary(strict, "strict", events=events, payloads=0, note=most)
    archive, manifest = _bundle(strict)
    assert manifest["export_mode"] == "strict" and not _payload_entries(archive)
    for key in (viewer_key, service_key):
        refused = cli("export-trace", TRACE, "-o", str(out / "no.zip"), "--full",
                      *_remote(live_server, key))
        assert refused.code == 1
        assert refused.err.startswith("error: a full export (with payload contents) is for "
                                      "engineers and admins")
        assert "leave out --full for the most this key may have, or pass --strict" in refused.err
    assert not (out / "no.zip").exists()
    service = cli("export-trace", TRACE, "-o", "-", "--json", *_remote(live_server, service_key),
                  stdout=BinaryStdout())
    assert service.code == 0 and json.loads(service.err)["mode"] == "strict"

    # The viewer's strict bundle imports into another project (once the trace id is free).
    Trace.objects.filter(trace_id=TRACE).delete()
    _, importer = make_key("runs:write", project_obj=other_project, user=engineer)
    imported = cli("import-bundle", str(strict), "--project", "other",
                   *_remote(live_server, importer))
    assert imported.code == 0, imported.err
    assert "Imported into project other" in imported.out
    back = Trace.objects.get(trace_id=TRACE)
    assert back.project == other_project and back.span_count == 3
    assert Run.objects.get(pk=back.run_id).imported_from == live_run.id
    assert os.listdir(out).count("no.zip") == 0
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_remote_errors(cli, live_run, live_server, make_key, out):
    _, key = make_key("runs:read")
    _, ingest_only = make_key("ingest")
    target = str(out / "x.zip")
    missing = cli("export-trace", MISSING, "-o", target, *_remote(live_server, key))
    assert (missing.code, missing.err) == (1, f"error: no trace {MISSING}\n")
    run = cli("export-run", "run_0NOPE", "-o", target, *_remote(live_server, key))
    assert (run.code, run.err) == (1, "error: no run run_0NOPE\n")
    bad = cli("export-trace", "xyz", "-o", target, *_remote(live_server, key))
    assert (bad.code, bad.err) == (1, "error: no trace xyz\n")  # never sent
    forbidden = cli("export-trace", TRACE, "-o", target, *_remote(live_server, ingest_only))
    assert forbidden.code == 1
    assert forbidden.err == "error: your role or key scope does not allow this (read)\n"
    anonymous = cli("export-trace", TRACE, "-o", target, "--remote", "--api-url",
                    live_server.url)
    assert anonymous.code == 1 and "set TRACEFOUNDRY_API_KEY or pass --api-key" in anonymous.err
    assert os.listdir(out) == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_failed_write_leaves_no_file(live_run, live_server, make_key, out):
    """A real process whose file size limit (RLIMIT_FSIZE) stops the zip half-way: the error
    is reported and neither the target nor its temporary file is left."""
    _, key = make_key("runs:read")
    complete = out / "complete.zip"
    argv = [sys.executable, "-m", "tracefoundry.cli", "export-trace", TRACE,
            "--remote", "--api-url", live_server.url, "--api-key", key]
    ok = subprocess.run([*argv, "-o", str(complete)], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    limit = complete.stat().st_size // 2
    complete.unlink()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    target = out / "cut.zip"
    cut = subprocess.run([*argv, "-o", str(target)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, preexec_fn=small_files)
    assert cut.returncode == 1
    assert cut.stderr == f"error: cannot write {target}: File too large\n"
    assert os.listdir(out) == []


# --- make export-trace ----------------------------------------------------------------------------

def _make(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``make`` in this checkout with the test's own virtualenv, never (re)building it."""
    venv = f"VENV={sys.prefix}"
    stamp = subprocess.run(
        ["make", "-s", "--no-print-directory", venv, "--eval", "print-stamp: ; @echo $(STAMP)",
         "print-stamp"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return subprocess.run(["make", "--no-print-directory", venv, "-o", stamp, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_make_export_trace_needs_trace():
    result = _make("export-trace")
    assert result.returncode == 2
    assert ("*** TRACE is missing: make export-trace TRACE=<trace id> [OUT=file.zip] "
            "[STRICT=1].  Stop.") in result.stderr
    assert result.stdout == ""  # nothing ran


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_make_export_trace_exports_from_the_local_database(live_run, out, payload_dir):
    env = {"DATABASE_URL": _database_url(), "TRACEFOUNDRY_PAYLOAD_DIR": str(payload_dir)}
    target = out / "made.zip"
    result = _make("export-trace", f"TRACE={TRACE}", f"OUT={target}", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(_summary(target, "full", events=live_run.event_count,
                                           payloads=3))
    strict = out / "strict.zip"
    result = _make("export-trace", f"TRACE={TRACE}", f"OUT={strict}", "STRICT=1", **env)
    assert result.returncode == 0, result.stderr
    assert _bundle(strict)[1]["export_mode"] == "strict"
