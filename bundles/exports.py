"""Exporting a trace (with its run) or a run (with its trace) as a bundle: the service behind
``GET /api/v1/traces/{trace_id}/export``, ``GET /api/v1/runs/{id}/export``, the Export buttons,
the admin actions and ``tracefoundry export-trace``.

Modes (PRODUCT.md §10, §12):

``full``
    What the server stored, payload blobs included (``payloads=False`` leaves them out). For
    engineers and admins, and keys with ``runs:read`` bound to one (``Cap.PAYLOADS``).
``strict``
    What a viewer may see and nothing more: every name, attribute, event payload, input,
    output and error re-redacted with the ``strict`` policy, span/resource/event/link
    attributes cut to the strict allowlist, and no payload blob. For every reader.

Without a mode, a reader gets the most they may have: ``full`` with ``Cap.PAYLOADS``, else
``strict``. Asking for ``full`` without it is a 403, not a quiet downgrade.

Two passes, so that the manifest (which names every other entry's SHA-256 and size) comes
first in the zip and nothing is built in memory whole:

1. ``bundle_prepare`` reads the rows (spans through ``.iterator()``, a chunk at a time) and the
   blobs, and writes every entry but the manifest into one spool (``SpooledTemporaryFile``: in
   memory up to ``SPOOL_MEMORY_BYTES``, then on disk), hashing as it writes. A blob that cannot
   be read, or whose bytes no longer hash to its name, is left out and named in the manifest's
   ``payloads_unavailable``: the export says what it could not include instead of failing.
2. ``PreparedBundle`` streams the zip from the spool: the manifest, then the entries in
   ``format.ENTRY_ORDER`` (payloads sorted by name), deflated, with the fixed zip timestamp.
   Streaming needs no seekable output (entries carry data descriptors).

The same trace exported twice gives byte-identical entries apart from ``created_at``: JSON
with sorted keys, spans in (start time, span id) order, events in ``seq`` order, run fields
from a fixed list (nothing that depends on when it is read, such as live worker status).
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import django
import orjson
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bundles import format as fmt
from bundles.streaming import Pipe
from payloads.allowlist import keep_allowed
from payloads.models import PayloadBlob, PayloadRef
from payloads.redaction import Redactor, current_policy, get_redactor
from payloads.store import payload_read
from runs.models import Run, RunEvent
from runs.wire import event_dict
from tracefoundry.errors import Forbidden, InvalidInput, NotFound
from tracefoundry.roles import Access, Cap
from traces.models import Span, Trace
from traces.otlp_decode import KINDS, STATUS_CODES

FULL, STRICT = fmt.EXPORT_MODES
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
CHUNK = 256 * 1024
SPAN_CHUNK = 2000
COMPRESS_LEVEL = 6
REF_PREFIX = "sha256:"
# run.json: the run's creation attributes and final state, in this order; nothing that changes
# with the time it is read (live worker status, links of this server).
RUN_FIELDS = (
    "id", "project", "kind", "name", "input", "state", "idempotency_key", "attempt",
    "max_attempts", "run_after", "claimed_by", "claimed_at", "heartbeat_at",
    "cancel_requested_at", "started_at", "finished_at", "created_at", "updated_at", "output",
    "output_ref", "error", "correlation_id", "trace_id", "imported_from", "steps_total",
    "steps_completed", "event_count", "error_count", "dropped_event_count", "latest_event_at",
)
# Under strict, every field of run.json and of an event is re-redacted except these, which are
# ids, states, times and counts the server wrote itself (a field added later is redacted until
# it is listed here: safe by default).
RUN_STRUCTURAL = frozenset({
    "id", "project", "kind", "state", "attempt", "max_attempts", "run_after", "claimed_at",
    "heartbeat_at", "cancel_requested_at", "started_at", "finished_at", "created_at",
    "updated_at", "output_ref", "trace_id", "imported_from", "steps_total", "steps_completed",
    "event_count", "error_count", "dropped_event_count", "latest_event_at",
})
# The span columns an export writes; under strict all but SPAN_STRUCTURAL are re-redacted
# (and attributes cut to the allowlist).
SPAN_COLUMNS = ("span_id", "parent_span_id", "name", "kind", "start_time_unix_nano",
                "end_time_unix_nano", "status_code", "status_message", "attributes", "events",
                "links", "resource", "scope")
SPAN_STRUCTURAL = frozenset({"span_id", "parent_span_id", "kind", "start_time_unix_nano",
                             "end_time_unix_nano", "status_code"})
EVENT_STRUCTURAL = frozenset({
    "id", "event_id", "run_id", "seq", "type", "level", "source", "step_id", "created_at",
    "payload_bytes", "truncated", "late",
})
_DUMPS = orjson.OPT_SORT_KEYS


# --- who may export what --------------------------------------------------------------------------

def export_mode_for(access: Access | None, requested: str | None) -> str:
    """The mode ``access`` gets when it asks for ``requested`` (None: the most it may have).
    ``access=None`` is the server's own operator (manage.py, the local CLI): everything."""
    if requested is not None and requested not in fmt.EXPORT_MODES:
        raise InvalidInput(f"mode must be one of {', '.join(fmt.EXPORT_MODES)}", field="mode")
    may_full = access is None or access.can(Cap.PAYLOADS)
    if requested is None:
        return FULL if may_full else STRICT
    if requested == FULL and not may_full:
        raise Forbidden("a full export (with payload contents) is for engineers and admins; "
                        "ask for mode=strict")
    return requested


def _visible(access: Access | None, project_id: int) -> bool:
    return access is None or access.can_see_project(project_id)


# --- entry points ---------------------------------------------------------------------------------

def trace_export(*, access: Access | None, trace_id: str, mode: str | None = None,
                 payloads: bool = True) -> PreparedBundle:
    """A bundle of the trace ``trace_id`` and, when it has one here, its run."""
    trace = Trace.objects.filter(trace_id=str(trace_id).lower()).select_related("project").first()
    if trace is None or not _visible(access, trace.project_id):
        raise NotFound(f"no trace {trace_id}")
    mode = export_mode_for(access, mode)
    run = None
    if trace.run_id:
        run = Run.objects.filter(pk=trace.run_id, project_id=trace.project_id).first()
    return bundle_prepare(trace=trace, run=run, mode=mode, payloads=payloads)


def run_export(*, access: Access | None, run_id: str, mode: str | None = None,
               payloads: bool = True) -> PreparedBundle:
    """A bundle of the run ``run_id`` and, when it has one here, its trace."""
    run = Run.objects.filter(pk=run_id).select_related("project").first()
    if run is None or not _visible(access, run.project_id):
        raise NotFound(f"no run {run_id}")
    mode = export_mode_for(access, mode)
    trace = None
    if run.trace_id:
        trace = Trace.objects.filter(trace_id=run.trace_id, project_id=run.project_id).first()
    if trace is None:  # a trace may name its run without the run naming it
        trace = Trace.objects.filter(run_id=run.id, project_id=run.project_id) \
            .order_by("start_time", "trace_id").first()
    return bundle_prepare(trace=trace, run=run, mode=mode, payloads=payloads, named_by="run")


# --- pass 1: the entries into a spool -------------------------------------------------------------

@dataclass
class _Entry:
    name: str
    offset: int
    size: int
    sha256: str
    content_type: str = ""


@dataclass
class PreparedBundle:
    """A bundle ready to stream: the spool holding its entries, and its manifest."""

    filename: str
    mode: str
    trace_id: str | None
    run_id: str | None
    manifest: dict[str, Any]
    _spool: IO[bytes]
    _entries: list[_Entry] = field(default_factory=list)

    @property
    def content_length(self) -> None:
        return None  # deflated as it streams: not known beforehand

    def chunks(self) -> Iterator[bytes]:
        """The zip, a chunk of about ``CHUNK`` bytes at a time; closes the spool at the end
        (or when abandoned)."""
        out = Pipe()
        try:
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED,
                                 compresslevel=COMPRESS_LEVEL) as archive:
                manifest = orjson.dumps(self.manifest, option=_DUMPS)
                with archive.open(_zip_info(fmt.MANIFEST, len(manifest)), "w") as member:
                    member.write(manifest)
                for entry in self._entries:
                    with archive.open(_zip_info(entry.name, entry.size), "w") as member:
                        for chunk in self._read(entry):
                            member.write(chunk)
                            if out.size >= CHUNK:
                                yield out.take()
            yield out.take()
        finally:
            self.close()

    def write_to(self, fh: IO[bytes]) -> int:
        """Write the zip to ``fh``; returns the bytes written."""
        total = 0
        for chunk in self.chunks():
            fh.write(chunk)
            total += len(chunk)
        return total

    def close(self) -> None:
        self._spool.close()

    def _read(self, entry: _Entry) -> Iterator[bytes]:
        left = entry.size
        self._spool.seek(entry.offset)
        while left > 0:
            chunk = self._spool.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"the export spool ended inside {entry.name}")
            left -= len(chunk)
            yield chunk


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    info.file_size = size
    return info


class _Spool:
    """Entries written one after the other into one temporary file, each hashed as written."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self.entries: dict[str, _Entry] = {}
        self._name: str | None = None
        self._hash = hashlib.sha256()
        self._start = 0

    def begin(self, name: str, content_type: str = "") -> None:
        self._name, self._hash, self._start = name, hashlib.sha256(), self.file.tell()
        self._content_type = content_type

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.file.write(data)

    def end(self) -> _Entry:
        size = self.file.tell() - self._start
        entry = _Entry(self._name, self._start, size, self._hash.hexdigest(),
                       self._content_type)
        self.entries[entry.name] = entry
        self._name = None
        return entry

    def put(self, name: str, data: bytes, content_type: str = "") -> _Entry:
        self.begin(name, content_type)
        self.write(data)
        return self.end()

    def rollback(self) -> None:
        """Forget the entry being written (its bytes stay, unreferenced)."""
        self._name = None


def bundle_prepare(*, trace: Trace | None, run: Run | None, mode: str,
                   payloads: bool = True, named_by: str = "trace") -> PreparedBundle:
    """Read a trace and/or a run into a spool and return the bundle, ready to stream; its file
    is named after the trace (or the run, with ``named_by="run"`` or without a trace)."""
    if trace is None and run is None:
        raise NotFound("nothing to export")
    project = (trace or run).project
    stored_policy = project.redaction_policy or current_policy()
    strict = get_redactor("strict") if mode == STRICT else None
    spool = _Spool()
    try:
        counts = {"spans": 0, "run_events": 0, "payloads": 0}
        shas: set[str] = set()
        spool.put(fmt.README, _readme(trace, run, mode, payloads).encode())
        if trace is not None:
            counts["spans"] = _spans_entry(spool, trace, strict)
            shas |= set(PayloadRef.objects.filter(span__trace=trace)
                        .values_list("blob_id", flat=True))
        if run is not None:
            counts["run_events"] = _run_entries(spool, run, strict)
            shas |= set(PayloadRef.objects.filter(run_event__run=run)
                        .values_list("blob_id", flat=True))
            if run.output_ref.startswith(REF_PREFIX):
                shas.add(run.output_ref[len(REF_PREFIX):])
        unavailable: list[str] = []
        if mode == FULL and payloads:
            counts["payloads"], unavailable = _payload_entries(spool, sorted(shas))
        manifest = _manifest(trace=trace, run=run, mode=mode, counts=counts,
                             redaction_mode=STRICT if strict else stored_policy,
                             entries=spool.entries, unavailable=unavailable)
    except BaseException:
        spool.file.close()
        raise
    ordered = [spool.entries[name] for name in fmt.ENTRY_ORDER if name in spool.entries]
    ordered += sorted((e for e in spool.entries.values()
                       if e.name.startswith(fmt.PAYLOADS_DIR)), key=lambda e: e.name)
    ident = run.id if run is not None and (named_by == "run" or trace is None) \
        else trace.trace_id
    suffix = "-strict" if mode == STRICT else ""
    return PreparedBundle(
        filename=f"tracefoundry-{ident}{suffix}.zip", mode=mode,
        trace_id=trace.trace_id if trace is not None else None,
        run_id=run.id if run is not None else None,
        manifest=manifest, _spool=spool.file, _entries=ordered,
    )


# --- spans.otlp.json ------------------------------------------------------------------------------

def _spans_entry(spool: _Spool, trace: Trace, strict: Redactor | None) -> int:
    """Write ``spans.otlp.json``: one ResourceSpans per (resource, scope) the spans carry, in
    the order they first appear; spans in (start, span id) order. Returns the span count.

    The spans are serialised once, one after the other, into a scratch spool (memory up to
    ``SPOOL_MEMORY_BYTES``, then disk), remembering where each lies and which group it is
    in; then each group's spans are copied out in order. Memory holds that index (a few
    integers a span) and the distinct resources and scopes, whatever their number."""
    groups: dict[tuple[bytes, bytes], int] = {}
    heads: list[tuple[dict, dict]] = []
    members: list[list[int]] = []  # per group, its spans' positions in ``where``
    where: list[tuple[int, int]] = []  # (offset, size) of each span in the scratch spool
    spans = (Span.objects.filter(trace=trace).order_by("start_time_unix_nano", "span_id")
             .values_list(*SPAN_COLUMNS))
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as scratch:
        for row in spans.iterator(chunk_size=SPAN_CHUNK):
            resource, scope = row[11] or {}, row[12] or {}
            if strict is not None:
                resource = keep_allowed(strict.value(resource))
                scope = strict.value(scope)
            key = (orjson.dumps(resource, option=_DUMPS), orjson.dumps(scope, option=_DUMPS))
            group = groups.get(key)
            if group is None:
                group = groups[key] = len(heads)
                heads.append((resource, scope))
                members.append([])
            data = orjson.dumps(_otlp_span(trace.trace_id, row, strict), option=_DUMPS)
            members[group].append(len(where))
            where.append((scratch.tell(), len(data)))
            scratch.write(data)
        spool.begin(fmt.SPANS, "application/json")
        spool.write(b'{"resourceSpans":[')
        for group, (resource, scope) in enumerate(heads):
            head = {"resource": {"attributes": _key_values(resource)},
                    "scopeSpans": [{"scope": _otlp_scope(scope), "spans": ["@"]}]}
            before, after = orjson.dumps(head, option=_DUMPS).split(b'"@"')
            spool.write((b"," if group else b"") + before)
            for n, index in enumerate(members[group]):
                offset, size = where[index]
                scratch.seek(offset)
                spool.write((b"," if n else b"") + scratch.read(size))
            spool.write(after)
        spool.write(b"]}")
        spool.end()
    return len(where)


def _otlp_span(trace_id: str, row: tuple, strict: Redactor | None) -> dict:
    (span_id, parent, name, kind, start, end, status, message, attributes, events, links,
     _resource, _scope) = row
    attributes, events, links = attributes or {}, events or [], links or []
    if strict is not None:
        name, message = strict.text(name), strict.text(message)
        attributes = keep_allowed(strict.value(attributes))
        events = [{**e, "name": strict.text(e.get("name", "")),
                   "attributes": keep_allowed(strict.value(e.get("attributes") or {}))}
                  for e in events]
        links = [{**ln, "attributes": keep_allowed(strict.value(ln.get("attributes") or {}))}
                 for ln in links]
    out = {
        "traceId": trace_id, "spanId": span_id, "name": name,
        "kind": KINDS.index(kind) if kind in KINDS else 0,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
        "attributes": _key_values(attributes),
        "events": [{"name": e.get("name", ""), "timeUnixNano": str(e.get("time_unix_nano", 0)),
                    "attributes": _key_values(e.get("attributes") or {})} for e in events],
        "links": [{"traceId": ln.get("trace_id", ""), "spanId": ln.get("span_id", ""),
                   "attributes": _key_values(ln.get("attributes") or {})} for ln in links],
        "status": {"code": STATUS_CODES.index(status) if status in STATUS_CODES else 0},
    }
    if parent:
        out["parentSpanId"] = parent
    if message:
        out["status"]["message"] = message
    return out


def _otlp_scope(scope: dict) -> dict:
    out: dict[str, Any] = {"name": str(scope.get("name") or "")}
    if scope.get("version"):
        out["version"] = str(scope["version"])
    if scope.get("attributes"):
        out["attributes"] = _key_values(scope["attributes"])
    return out


def _any_value(value: Any) -> dict:
    """An OTLP/JSON AnyValue (int64 as a decimal string, as the OTLP JSON mapping says)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _key_values(value)}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def _key_values(attributes: dict) -> list[dict]:
    return [{"key": str(k), "value": _any_value(v)} for k, v in sorted(attributes.items())]


# --- run.json and run_events.jsonl ----------------------------------------------------------------

def _run_entries(spool: _Spool, run: Run, strict: Redactor | None) -> int:
    doc = {name: _run_field(run, name) for name in RUN_FIELDS}
    if strict is not None:
        doc = _strict_fields(doc, strict, RUN_STRUCTURAL)
    spool.put(fmt.RUN, orjson.dumps(doc, option=_DUMPS), "application/json")
    spool.begin(fmt.RUN_EVENTS, "application/x-ndjson")
    count = 0
    events = RunEvent.objects.filter(run=run).order_by("seq")
    for event in events.iterator(chunk_size=SPAN_CHUNK):
        item = event_dict(event)
        if strict is not None:
            item = _strict_fields(item, strict, EVENT_STRUCTURAL)
        spool.write(orjson.dumps(item, option=_DUMPS | orjson.OPT_APPEND_NEWLINE))
        count += 1
    spool.end()
    return count


def _strict_fields(doc: dict, strict: Redactor, structural: frozenset[str]) -> dict:
    return {name: value if name in structural else strict.value(value)
            for name, value in doc.items()}


def _run_field(run: Run, name: str) -> Any:
    if name == "project":
        return run.project.slug
    value = getattr(run, name)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if name in ("trace_id", "imported_from"):
        return value or None
    return value


# --- payloads/<sha256> ----------------------------------------------------------------------------

def _payload_entries(spool: _Spool, shas: list[str]) -> tuple[int, list[str]]:
    """Each referenced blob's stored bytes under ``payloads/<sha256>``, checked against its
    hash; returns how many were written and the hashes that could not be (unreadable, or no
    longer matching)."""
    written, unavailable = 0, []
    blobs = PayloadBlob.objects.filter(sha256__in=shas).order_by("sha256")
    found = set()
    for blob in blobs.iterator(chunk_size=200):
        found.add(blob.sha256)
        try:
            data = payload_read(blob)
        except Exception:  # a missing file, a storage error, a corrupt frame: leave it out
            unavailable.append(blob.sha256)
            continue
        if hashlib.sha256(data).hexdigest() != blob.sha256:
            unavailable.append(blob.sha256)
            continue
        spool.put(fmt.PAYLOADS_DIR + blob.sha256, data, blob.content_type)
        written += 1
    unavailable.extend(sha for sha in shas if sha not in found)
    return written, sorted(unavailable)


# --- manifest.json and README.md ------------------------------------------------------------------

def _manifest(*, trace: Trace | None, run: Run | None, mode: str, counts: dict,
              redaction_mode: str, entries: dict[str, _Entry],
              unavailable: list[str]) -> dict[str, Any]:
    files = {}
    for name, entry in entries.items():
        files[name] = {"sha256": entry.sha256, "size": entry.size}
        if name.startswith(fmt.PAYLOADS_DIR) and entry.content_type:
            files[name]["content_type"] = entry.content_type
    doc = {
        "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION,
        "created_at": timezone.now().isoformat().replace("+00:00", "Z"),
        "product_version": product_version(), "git_commit": git_commit(),
        "environment": environment_fingerprint(),
        "export_mode": mode, "redaction_mode": redaction_mode,
        "trace_id": trace.trace_id if trace is not None else None,
        "run_id": run.id if run is not None else None,
        "counts": counts, "files": files,
    }
    if unavailable:
        doc["payloads_unavailable"] = unavailable
    return doc


def _readme(trace: Trace | None, run: Run | None, mode: str, payloads: bool) -> str:
    what = []
    if trace is not None:
        what.append(f"trace {trace.trace_id}")
    if run is not None:
        what.append(f"run {run.id}")
    if mode == STRICT:
        fidelity = ("A strict export: re-redacted with the strict policy (credentials and "
                    "personal data removed, attributes cut to the strict allowlist), without "
                    "payload blobs.")
    elif payloads:
        fidelity = "A full export: as the server stored it, payload blobs included."
    else:
        fidelity = "A full export without payload blobs (the references remain)."
    return (
        f"# TraceFoundry bundle\n\n"
        f"This zip holds {' and '.join(what)}. {fidelity}\n\n"
        f"- `manifest.json`: what the bundle holds, the SHA-256 and size of every other file.\n"
        f"- `spans.otlp.json`: the spans as OTLP/JSON (an ExportTraceServiceRequest); any OTLP "
        f"tool reads it.\n"
        f"- `run.json`, `run_events.jsonl`: the run and its events in order (when there is "
        f"a run).\n"
        f"- `payloads/<sha256>`: the large values the spans and events refer to "
        f"(`tracefoundry.payload.<role>_ref`, `payload_ref`, `output_ref`).\n\n"
        f"Import it with `tracefoundry import-bundle FILE.zip`, or check it without storing "
        f"anything with `tracefoundry dry-replay FILE.zip`.\n"
    )


def product_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tracefoundry")
    except PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str | None:
    """``TRACEFOUNDRY_GIT_COMMIT`` when set (a deployment knows what it deployed), else the
    checkout's HEAD when the server runs from one, else None."""
    configured = getattr(settings, "TRACEFOUNDRY_GIT_COMMIT", "")
    if configured:
        return str(configured)[:64]
    git = Path(settings.BASE_DIR) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.is_file():
                return path.read_text().strip()[:64] or None
            packed = (git / "packed-refs").read_text().splitlines()
            return next((line.split()[0] for line in packed if line.endswith(" " + ref)), None)
        return head[:64] or None
    except (OSError, IndexError):
        return None


def environment_fingerprint() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "database": connection.vendor,
        "platform": f"{sys.platform}-{platform.machine()}",
    }
