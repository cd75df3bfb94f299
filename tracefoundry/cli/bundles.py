"""``tracefoundry import-bundle FILE [--project SLUG]`` and ``tracefoundry dry-replay FILE``.

Local (the server's database through ``bundles.imports``/``bundles.replay``, as manage.py) or
remote (``--remote``: a multipart upload to ``/api/v1/bundles/import`` or ``/dry-replay``);
both print the same report. On a terminal the import draws a progress bar (local: the stages
of the import; remote: the upload); when stdout is not a terminal it prints one plain line per
stage instead, and nothing but the report with ``--json``. A dry replay prints its report
alone (a bar only on a terminal).

Exit status: 0 on success (a dry replay without findings), 1 when the bundle is refused, the
import fails, or the dry replay has findings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from tracefoundry.cli import render
from tracefoundry.cli.errors import EXIT_ERROR, EXIT_OK, CliError

REMOTE_TIMEOUT_SECONDS = 600.0  # a large bundle takes a while to store
BAR_WIDTH = 30
_STAGES = {"validate": "validating", "payloads": "storing payloads", "run": "importing the run",
           "spans": "ingesting spans", "upload": "uploading"}
_ENDED = {"validate": "bundle validated", "payloads": "payloads stored", "run": "run imported",
          "spans": "spans ingested", "upload": "uploaded"}
_COUNTED = frozenset({"payloads", "run", "spans", "upload"})

Progress = Callable[[str, int, int], None]


class BundleBackend(Protocol):
    def import_bundle(self, file: IO[bytes], *, project: str | None,
                      progress: Progress) -> dict[str, Any]: ...

    def dry_replay(self, file: IO[bytes], *, progress: Progress) -> dict[str, Any]: ...

    def close(self) -> None: ...


def add_commands(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    imp = groups.add_parser(
        "import-bundle", parents=[common], help="import a bundle (zip) into a project",
        description=(
            "Import a bundle written by an export: its trace through the ingest (redacted under "
            "the project's policy, source=bundle_import, environment offline) and its run under "
            "a new id. Importing it again changes nothing."),
    )
    imp.add_argument("file", metavar="FILE.zip", type=Path)
    imp.add_argument("--project", metavar="SLUG",
                     help="project slug (default: `default`, or the API key's project)")
    imp.set_defaults(handler=cmd_import_bundle, open_backend=open_bundle_backend)
    dry = groups.add_parser(
        "dry-replay", parents=[common], help="check a bundle and rebuild its span tree",
        description=(
            "Check a bundle and rebuild its span tree from the bundle alone: roots, orphans, "
            "cycles, depth, spans per type, missing or corrupt payloads, hash mismatches and "
            "the recorded LLM/tool calls. Nothing is stored. Exit 1 when there are findings."),
    )
    dry.add_argument("file", metavar="FILE.zip", type=Path)
    dry.set_defaults(handler=cmd_dry_replay, open_backend=open_bundle_backend)


# --- backends ----------------------------------------------------------------------------------

def open_bundle_backend(args: argparse.Namespace) -> BundleBackend:
    """The runs backend the same options would open (one rule for local or remote), turned to
    bundles."""
    from tracefoundry.cli.main import open_backend
    from tracefoundry.cli.remote import RemoteBackend

    runs = open_backend(args)
    if isinstance(runs, RemoteBackend):
        return RemoteBundles(runs)
    runs.close()
    return LocalBundles()


class LocalBundles:
    def import_bundle(self, file: IO[bytes], *, project: str | None,
                      progress: Progress) -> dict[str, Any]:
        from bundles.imports import bundle_import
        from runs.selectors import DEFAULT_PROJECT_SLUG, project_get
        from tracefoundry.cli.local import _ledger_errors

        with _ledger_errors():
            target = project_get(slug=project or DEFAULT_PROJECT_SLUG)
            report = bundle_import(project=target, file=file, progress=progress)
        return orjson.loads(orjson.dumps(report.as_dict()))

    def dry_replay(self, file: IO[bytes], *, progress: Progress) -> dict[str, Any]:
        from bundles.replay import bundle_dry_replay
        from tracefoundry.cli.local import _ledger_errors

        with _ledger_errors():
            progress("validate", 0, 1)
            report = bundle_dry_replay(file=file)
            progress("done", 1, 1)
        return orjson.loads(orjson.dumps(report))

    def close(self) -> None:
        pass


class _Counted:
    """A binary file that reports how much of it has been read (the upload's progress)."""

    def __init__(self, file: IO[bytes], progress: Progress) -> None:
        self.file, self.progress = file, progress
        self.total = os.fstat(file.fileno()).st_size
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.done += len(chunk)
        self.progress("upload", self.done, self.total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.file.seek(offset, whence)
        if whence == 0 and offset == 0:
            self.done = 0
        return position

    def tell(self) -> int:
        return self.file.tell()

    def fileno(self) -> int:
        return self.file.fileno()


class RemoteBundles:
    def __init__(self, remote) -> None:
        self.remote = remote

    def _upload(self, path: str, file: IO[bytes], progress: Progress,
                params: dict | None = None) -> dict[str, Any]:
        counted = _Counted(file, progress)
        resp = self.remote._request(
            "POST", path, params=params,
            files={"file": (Path(getattr(file, "name", "bundle.zip")).name, counted,
                            "application/zip")},
            timeout=REMOTE_TIMEOUT_SECONDS,
        )
        progress("done", 1, 1)
        return resp.json()

    def import_bundle(self, file: IO[bytes], *, project: str | None,
                      progress: Progress) -> dict[str, Any]:
        return self._upload("/bundles/import", file, progress,
                            {"project": project} if project else None)

    def dry_replay(self, file: IO[bytes], *, progress: Progress) -> dict[str, Any]:
        return self._upload("/bundles/dry-replay", file, progress)

    def close(self) -> None:
        self.remote.close()


# --- progress ------------------------------------------------------------------------------------

class ProgressBar:
    """On a terminal, one line redrawn in place; otherwise a plain line as each stage ends."""

    def __init__(self, out: IO[str], *, enabled: bool) -> None:
        self.out, self.enabled = out, enabled
        self.tty = enabled and out.isatty()
        self.drawn = False
        self.finished: set[str] = set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage in self.finished:
            return
        ended = stage == "done" or (total > 0 and done >= total)
        if self.tty:
            self._draw(stage, done, total)
        elif ended and stage in _ENDED:
            counts = f" ({_counts(stage, done, total)})" if stage in _COUNTED else ""
            self.out.write(f"{_ENDED[stage]}{counts}\n")
            self.out.flush()
        if ended:
            self.finished.add(stage)

    def _draw(self, stage: str, done: int, total: int) -> None:
        if stage == "done":
            if self.drawn:  # wipe the bar: the report follows
                self.out.write("\r" + " " * (BAR_WIDTH + 60) + "\r")
                self.out.flush()
            return
        share = min(done / total, 1.0) if total else 0.0
        filled = int(BAR_WIDTH * share)
        line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} "
                f"{_STAGES.get(stage, stage)} {_counts(stage, done, total)}")
        self.out.write("\r" + line.ljust(BAR_WIDTH + 60))
        self.out.flush()
        self.drawn = True


def _counts(stage: str, done: int, total: int) -> str:
    return f"{_size(done)}/{_size(total)}" if stage == "upload" else f"{done}/{total}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} MiB"


# --- commands ----------------------------------------------------------------------------------

def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def cmd_import_bundle(args: argparse.Namespace, backend: BundleBackend) -> int:
    progress = ProgressBar(sys.stdout, enabled=not args.json)
    with _open(args.file) as file:
        report = backend.import_bundle(file, project=args.project, progress=progress)
    _emit(args, report, import_text(report))
    return EXIT_OK


def cmd_dry_replay(args: argparse.Namespace, backend: BundleBackend) -> int:
    # The report is the output: a bar on a terminal while it comes, no lines before it.
    progress = ProgressBar(sys.stdout, enabled=not args.json and sys.stdout.isatty())
    with _open(args.file) as file:
        report = backend.dry_replay(file, progress=progress)
    _emit(args, report, dry_replay_text(report, name=args.file.name))
    return EXIT_OK if report["ok"] else EXIT_ERROR


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        render.write_json(sys.stdout, data)
    else:
        sys.stdout.write(text)


# --- reports as text ----------------------------------------------------------------------------

def import_text(r: dict[str, Any]) -> str:
    c = r["counts"]
    if r["already_imported"]:
        head = f"Already imported into project {r['project']}: nothing new was stored\n"
    else:
        head = f"Imported into project {r['project']}\n"
    lines = [head]
    if r["trace_id"]:
        what = (f"{c['spans']} spans, source {r['source']}, environment {r['environment']}"
                if r["trace_imported"] else "held already")
        lines.append(f"  trace     {r['trace_id']} ({what})\n")
    if r["run_id"]:
        what = (f"{c['run_events']} events" if r["run_imported"] else "imported before")
        lines.append(f"  run       {r['run_id']} (from {r['original_run_id']}; {what})\n")
    if not r["already_imported"]:
        skipped = f", {c['payloads_skipped']} skipped" if c["payloads_skipped"] else ""
        lines.append(f"  payloads  {c['payloads']} restored{skipped}\n")
    if r["run_closed"]:
        lines.append("  note      the run had not finished when exported: closed here as "
                     "canceled\n")
    return "".join(lines)


def dry_replay_text(r: dict[str, Any], *, name: str = "the bundle") -> str:
    t, p, m = r["tree"], r["payloads"], r["manifest"]
    n = len(r["findings"])
    verdict = "OK, no findings" if r["ok"] else f"{n} finding{'s' if n != 1 else ''}"
    types = " · ".join(f"{k} {v}" for k, v in r["span_types"].items() if v) or "-"
    out = [
        f"Dry replay of {name}: {verdict}\n",
        f"  trace     {r['trace_id'] or '-'}\n",
        f"  run       {r['run_id'] or '-'}\n",
        f"  bundle    format {m['format_version']}, {m['export_mode']} export, redaction "
        f"{m['redaction_mode']}, exported {m['created_at']} by {m['product_version']}\n",
        f"  tree      {t['spans']} spans, depth {t['depth']}, {t['root_count']} "
        f"root{'s' if t['root_count'] != 1 else ''}, {t['orphan_count']} orphans, "
        f"{len(t['cycles'])} cycles\n",
        f"  types     {types}\n",
        f"  payloads  {p['in_bundle']} in the bundle, {p['referenced']} referred to, "
        f"{p['missing_count']} missing, {len(p['corrupt'])} corrupt"
        + (" (the export left them out)" if p["left_out_by_export"] else "") + "\n",
    ]
    for root in t["roots"]:
        out.append(f"  root      {root['name']} ({root['span_id']})\n")
    if r["findings"]:
        out.append("\nFindings\n")
        out.append(_indent(render.table(
            [(f["kind"], f["entry"], f["message"]) for f in r["findings"]],
            ("KIND", "ENTRY", "WHAT"))))
    if r["calls"]:
        out.append("\nLLM and tool calls, in start order\n")
        out.append(_indent(render.table(
            [(str(i), c["type"], c["name"], c["model"] or c["tool"] or "-", c["status"],
              f"+{c['start_offset_ms']:.0f}ms", f"{c['duration_ms']:.0f}ms")
             for i, c in enumerate(r["calls"], start=1)],
            ("#", "TYPE", "NAME", "MODEL/TOOL", "STATUS", "START", "DURATION"))))
    run = r["run"]
    if run:
        kinds = ", ".join(f"{k} {v}" for k, v in run["event_types"].items())
        out.append(f"\nRun {run['id'] or '-'} ({run['kind'] or '-'}, {run['state'] or '-'}): "
                   f"{run['events']} events, {run['errors']} errors\n  {kinds}\n")
    return "".join(out)


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
