"""``tracefoundry import-bundle FILE [--project SLUG]`` and ``tracefoundry dry-replay FILE``.

Local (the server's database through ``bundles.imports``/``bundles.replay``, as manage.py) or
remote (``--remote``: a multipart upload to ``/api/v1/bundles/import`` or ``/dry-replay``);
both print the same report. On a terminal the import draws a progress bar (local: the stages
of the import; remote: the upload); when stdout is not a terminal it prints one plain line per
stage instead, and nothing but the report with ``--json``. A dry replay prints its report
alone (a bar only on a terminal).

``tracefoundry export-trace TRACE_ID`` and ``tracefoundry export-run RUN_ID`` write a bundle:
locally through ``bundles.exports`` as the server's operator (any mode), remotely by streaming
``GET /api/v1/traces/{id}/export`` (``/runs/{id}/export``) to the file, where the API key's
rights decide the mode. The zip goes to a temporary file next to the target, renamed when it is
complete, so a failed export leaves nothing behind; ``-o -`` streams it to stdout. One line
then says where it went, its size, its mode and what it holds (read from its manifest).

Exit status: 0 on success (a dry replay without findings), 1 when the bundle is refused, the
import fails, the dry replay has findings, or the export fails (no such trace or run, a mode
the key may not have, a broken download).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from tracefoundry.cli import render
from tracefoundry.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError

REMOTE_TIMEOUT_SECONDS = 600.0  # a large bundle takes a while to store
BAR_WIDTH = 30
_STAGES = {"validate": "validating", "payloads": "storing payloads", "run": "importing the run",
           "spans": "ingesting spans", "upload": "uploading", "prepare": "preparing the bundle",
           "write": "writing", "download": "downloading"}
_BYTES = frozenset({"upload", "write", "download"})  # counted in bytes, not items
DOWNLOAD_CHUNK = 64 * 1024
EXPORT_MODES = ("full", "strict")
TRACE_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")  # what the API's export URLs accept
RUN_ID_RE = re.compile(r"^run_[0-9A-Za-z]{1,36}$")
MANIFEST = "manifest.json"  # bundles/format.py; not imported: remote mode runs without Django
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
ZIP_DEFLATED = 8  # zipfile.ZIP_DEFLATED: the zip method number of deflate
_ENDED = {"validate": "bundle validated", "payloads": "payloads stored", "run": "run imported",
          "spans": "spans ingested", "upload": "uploaded"}
_COUNTED = frozenset({"payloads", "run", "spans", "upload"})

Progress = Callable[[str, int, int], None]


class BundleBackend(Protocol):
    def import_bundle(self, file: IO[bytes], *, project: str | None,
                      progress: Progress) -> dict[str, Any]: ...

    def dry_replay(self, file: IO[bytes], *, progress: Progress) -> dict[str, Any]: ...

    def export(self, what: str, ident: str, *, mode: str | None, payloads: bool,
               progress: Progress) -> Export: ...

    def close(self) -> None: ...


@dataclass
class Export:
    """A bundle on its way: where it comes from, the name it would have, its mode, and its bytes
    (``chunks``, read once; ``close`` releases them, read or not). ``manifest`` is known
    beforehand locally; remotely it is read from the zip's first entry as it streams."""

    filename: str
    mode: str | None
    manifest: dict[str, Any] | None
    chunks: Iterator[bytes]
    close: Callable[[], None]
    asked: str | None = None  # the mode asked for (None: the most the caller may have)
    remote: bool = False


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
    for what, ident, other in (("trace", "TRACE_ID", "run"), ("run", "RUN_ID", "trace")):
        exp = groups.add_parser(
            f"export-{what}", parents=[common], help=f"export a {what} (with its {other}) as a "
            "bundle (zip)",
            description=(
                f"Write a bundle of the {what} {ident} and, when it has one, its {other}. "
                "Locally you are the server's operator and get any mode; remotely the API "
                "key's rights decide: without --strict or --full the server gives the most the "
                "key may have (full for engineers' and admins' keys, else strict) and the "
                "output says which. The zip is written to a temporary file next to FILE.zip "
                "and renamed when complete."),
        )
        exp.add_argument("ident", metavar=ident)
        exp.add_argument("-o", "--output", metavar="FILE.zip",
                         help="where to write the zip; a directory, or `-` for stdout "
                              "(default: the bundle's own name in the current directory)")
        fidelity = exp.add_mutually_exclusive_group()
        fidelity.add_argument("--strict", dest="mode", action="store_const", const="strict",
                              help="re-redact with the strict policy; no payload contents")
        fidelity.add_argument("--full", dest="mode", action="store_const", const="full",
                              help="what the server stored, or an error when the key may not "
                                   "have it (instead of a strict export)")
        exp.add_argument("--no-payloads", dest="payloads", action="store_false",
                         help="leave payload contents out of a full export (the references "
                              "stay)")
        exp.set_defaults(handler=cmd_export, open_backend=open_bundle_backend, what=what)


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

    def export(self, what: str, ident: str, *, mode: str | None, payloads: bool,
               progress: Progress) -> Export:
        from bundles.exports import run_export, trace_export
        from tracefoundry.cli.local import _ledger_errors

        progress("prepare", 0, 0)
        with _ledger_errors():  # the operator (access=None): every project, any mode
            if what == "trace":
                bundle = trace_export(access=None, trace_id=ident, mode=mode, payloads=payloads)
            else:
                bundle = run_export(access=None, run_id=ident, mode=mode, payloads=payloads)
        return Export(filename=bundle.filename, mode=bundle.mode, manifest=bundle.manifest,
                      chunks=bundle.chunks(), close=bundle.close, asked=mode)

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

    def export(self, what: str, ident: str, *, mode: str | None, payloads: bool,
               progress: Progress) -> Export:
        pattern = TRACE_ID_RE if what == "trace" else RUN_ID_RE
        if not pattern.match(ident):  # no such URL: the local wording for what cannot exist
            raise CliError(f"no {what} {ident}")
        params = {"mode": mode} if mode else {}
        if not payloads:
            params["payloads"] = "0"
        progress("prepare", 0, 0)  # the server reads it all before the first byte
        try:
            resp = self.remote._stream(
                "GET", f"/{what}s/{ident}/export", params=params,
                headers={"Accept": "application/zip, application/json"},
                timeout=REMOTE_TIMEOUT_SECONDS,
            )
        except CliError as exc:
            if mode == "full" and "full export" in exc.message:
                exc.message += " (leave out --full for the most this key may have, or pass " \
                               "--strict)"
            raise
        got = resp.headers.get("X-TraceFoundry-Export-Mode")
        ident = ident.lower() if what == "trace" else ident  # run ids are case-sensitive
        fallback = f"tracefoundry-{ident}{'-strict' if got == 'strict' else ''}.zip"
        return Export(
            filename=_attachment_name(resp.headers.get("Content-Disposition", "")) or fallback,
            mode=got if got in EXPORT_MODES else None, manifest=None,
            chunks=self._download(resp), close=resp.close, asked=mode, remote=True,
        )

    def _download(self, resp) -> Iterator[bytes]:
        import httpx

        try:
            yield from resp.iter_bytes(DOWNLOAD_CHUNK)
        except httpx.TransportError as exc:
            raise CliError(f"the download from {self.remote.base_url} broke off: "
                           f"{exc or type(exc).__name__}") from None
        finally:
            resp.close()

    def close(self) -> None:
        self.remote.close()


def _attachment_name(header: str) -> str | None:
    """The file name of ``Content-Disposition: attachment; filename="…"``, reduced to a plain
    name (no directory, nothing hidden), or None."""
    found = re.search(r'filename="?([^";]+)"?', header)
    if not found:
        return None
    name = Path(found.group(1).replace("\\", "/")).name.strip()
    if not re.fullmatch(r"[\w.+-]{1,200}", name) or name.startswith("."):
        return None
    return name


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
        if total <= 0:  # no end known (a streamed zip): a counter instead of a bar
            line = f"{_STAGES.get(stage, stage)} {_size(done) if done else ''}".rstrip()
        else:
            share = min(done / total, 1.0)
            filled = int(BAR_WIDTH * share)
            line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} "
                    f"{_STAGES.get(stage, stage)} {_counts(stage, done, total)}")
        self.out.write("\r" + line.ljust(BAR_WIDTH + 60))
        self.out.flush()
        self.drawn = True


def _counts(stage: str, done: int, total: int) -> str:
    return f"{_size(done)}/{_size(total)}" if stage in _BYTES else f"{done}/{total}"


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


def cmd_export(args: argparse.Namespace, backend: BundleBackend) -> int:
    to_stdout = args.output == "-"
    if to_stdout and sys.stdout.isatty():
        raise CliError("refusing to write a zip to a terminal: redirect stdout or pass -o "
                       "FILE.zip", exit_code=EXIT_USAGE)
    report_out = sys.stderr if to_stdout else sys.stdout  # never mixed into the zip
    progress = ProgressBar(report_out, enabled=not args.json and report_out.isatty())
    try:
        export = backend.export(args.what, args.ident, mode=args.mode, payloads=args.payloads,
                                progress=progress)
        target, size, manifest = _save(args.output, export, progress)
    finally:
        progress("done", 1, 1)  # wipe the bar, whether the report or an error follows
    report = export_report(target, size, export, manifest)
    if args.json:
        render.write_json(report_out, report)
    else:
        report_out.write(export_text(report, export))
    report_out.flush()
    return EXIT_OK


def _save(output: str | None, export: Export,
          progress: Progress) -> tuple[str, int, dict[str, Any]]:
    """Write the bundle where ``-o`` says; returns where, its size and its manifest."""
    reader = ManifestReader() if export.manifest is None else None
    stage = "download" if export.remote else "write"

    def counted() -> Iterator[bytes]:
        done = 0
        try:
            for chunk in export.chunks:
                if reader is not None:
                    reader.feed(chunk)
                done += len(chunk)
                progress(stage, done, 0)
                yield chunk
        except OSError as exc:  # reading the spool (a write error is the caller's)
            raise CliError(f"the export failed: {exc}") from None
        if reader is not None and reader.manifest is None:
            raise CliError("the server's response ended before the bundle's manifest")

    try:
        if output == "-":
            target, size = "-", _write_stdout(counted())
        else:
            path = _target(output, export.filename)
            target, size = str(path), _write_atomically(path, counted())
    finally:
        export.close()
    return target, size, export.manifest if reader is None else reader.manifest


def _target(output: str | None, filename: str) -> Path:
    """``-o``, or the bundle's own name in the current directory (or in ``-o DIR``)."""
    if output is None:
        return Path(filename)
    path = Path(output)
    return path / filename if path.is_dir() else path


def _write_atomically(path: Path, chunks: Iterator[bytes]) -> int:
    """Write ``chunks`` to a temporary file next to ``path`` and rename it to ``path`` once
    complete; on any failure (or Ctrl-C) the temporary file is removed and ``path`` is left as
    it was. Returns the bytes written."""
    for _ in range(100):
        part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            # 0o666 less the umask, as any new file; O_EXCL: never someone else's file.
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    else:
        raise CliError(f"cannot write {path}: no free temporary name next to it")
    try:
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(part, path)
        except OSError as exc:  # the source's errors arrive as CliError (counted())
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    return size


def _write_stdout(chunks: Iterator[bytes]) -> int:
    sink = getattr(sys.stdout, "buffer", None)
    if sink is None:
        raise CliError("stdout takes no bytes here: pass -o FILE.zip")
    sys.stdout.flush()
    size = 0
    for chunk in chunks:
        sink.write(chunk)
        size += len(chunk)
    sink.flush()
    return size


class ManifestReader:
    """``manifest.json`` read from a bundle's first bytes as they stream past: the zip's first
    entry (a local file header, then deflated data ending on its own), so what a remote export
    holds is known without keeping or re-reading the zip (``-o -`` cannot be re-read)."""

    NOT_A_BUNDLE = f"the server did not send a bundle (a zip starting with {MANIFEST})"

    def __init__(self) -> None:
        self.manifest: dict[str, Any] | None = None
        self._head = b""
        self._inflate: Any = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self.manifest is not None:
            return
        if self._inflate is None:
            self._head += chunk
            if len(self._head) < 30:
                return
            (signature, _, _, method, _, _, _, _, _, name_len,
             extra_len) = struct.unpack("<4sHHHHHIIIHH", self._head[:30])
            if signature != b"PK\x03\x04":
                raise CliError(self.NOT_A_BUNDLE)
            start = 30 + name_len + extra_len
            if len(self._head) < start:
                return
            if self._head[30:30 + name_len] != MANIFEST.encode() or method != ZIP_DEFLATED:
                raise CliError(self.NOT_A_BUNDLE)
            self._inflate = zlib.decompressobj(-15)
            chunk, self._head = self._head[start:], b""
        try:
            data = self._inflate.decompress(chunk, MANIFEST_MAX_BYTES + 1 - self._size)
        except zlib.error:
            raise CliError(self.NOT_A_BUNDLE) from None
        self._size += len(data)
        self._parts.append(data)
        if self._size > MANIFEST_MAX_BYTES:
            raise CliError(f"the bundle's {MANIFEST} is over {_size(MANIFEST_MAX_BYTES)}")
        if self._inflate.eof:
            try:
                manifest = orjson.loads(b"".join(self._parts))
            except orjson.JSONDecodeError:
                manifest = None
            if not isinstance(manifest, dict) or not isinstance(manifest.get("counts"), dict):
                raise CliError(f"the bundle's {MANIFEST} is not a bundle manifest")
            self.manifest, self._parts = manifest, []


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


def export_report(path: str, size: int, export: Export, manifest: dict[str, Any]) -> dict:
    counts = manifest.get("counts") or {}
    return {
        "path": path, "bytes": size, "mode": export.mode or manifest.get("export_mode"),
        "trace_id": manifest.get("trace_id"), "run_id": manifest.get("run_id"),
        "counts": {k: counts.get(k, 0) for k in ("spans", "run_events", "payloads")},
        "payloads_unavailable": manifest.get("payloads_unavailable") or [],
    }


def export_text(r: dict[str, Any], export: Export) -> str:
    c = r["counts"]
    mode = f"{r['mode']} export"
    if export.remote and export.asked is None:
        mode += " (the most this key may have)"
    payloads = f"{c['payloads']} payload{'s' if c['payloads'] != 1 else ''}"
    if r["payloads_unavailable"]:
        payloads += f" ({len(r['payloads_unavailable'])} unavailable on the server)"
    where = "stdout" if r["path"] == "-" else r["path"]
    return (f"{where}: {r['bytes']} bytes, {mode}, {c['spans']} spans, {c['run_events']} run "
            f"events, {payloads}\n")


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
