"""Importing a bundle into a project: the service behind ``POST /api/v1/bundles/import``, the
import page and ``tracefoundry import-bundle``.

1. The upload is validated whole (``bundles.validation``: names, entry types, limits, manifest,
   every hash), and its spans, run and events are parsed and checked, before anything is
   stored: a bad bundle is an ``InvalidBundle`` (400) and leaves no row and no file.
2. The payload blobs are redacted under the receiving project's policy (as text: a blob that
   is not UTF-8 text is not restored) and addressed; a blob whose redaction changed it gets a
   new hash, and the references to it are rewritten.
3. In one transaction: the run through ``runs.imports.run_import`` (a new run id recording the
   original, its events in order, the projection computed from them), the blobs, then the
   spans through ``traces.imports.spans_import`` (the OTLP ingest service: redaction,
   GenAI extraction, summaries; ``source=bundle_import``, environment ``offline``, the run link
   pointing at the new run).

Idempotent: a trace this project already holds is not ingested again, and a run this project
imported already is not imported again; a bundle with nothing new is reported
``already_imported`` and stores nothing. A trace id another project holds is a 409 (trace ids
are unique on a server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import orjson
from django.db import transaction

from bundles import format as fmt
from bundles.validation import (
    Bundle,
    InvalidBundle,
    bundle_open,
    json_entry,
    jsonl_entry,
    spans_entry,
)
from payloads.redaction import Redactor, get_redactor
from payloads.store import PayloadBatch
from runs.imports import run_import, run_import_check, run_imported, run_payload_refs
from runs.models import Project
from tracefoundry.errors import Conflict, NotFound
from tracefoundry.roles import Access
from traces.imports import spans_import, spans_import_prepare
from traces.otlp_decode import SpanRecord
from traces.selectors import trace_get

# (stage, done, total): "validate", "payloads", "run", "spans", "done"
Progress = Callable[[str, int, int], None]
# Blobs are stored in groups of about this many bytes, so an import never holds every blob of
# a large bundle in memory at once.
STORE_GROUP_BYTES = 32 * 1024 * 1024
_SYSTEM = Access(user=None)


@dataclass
class ImportCounts:
    spans: int = 0  # spans ingested
    run_events: int = 0  # events stored for the run (with a closing run.canceled)
    payloads: int = 0  # blobs of the bundle restored here
    payloads_skipped: int = 0  # blobs not restored (not UTF-8 text)


@dataclass
class ImportReport:
    project: str
    trace_id: str | None
    run_id: str | None  # the imported run (new id), or the earlier import of it
    original_run_id: str | None
    already_imported: bool  # nothing was stored: everything was here already
    trace_imported: bool
    run_imported: bool
    run_closed: bool  # the run had not finished when exported: closed as canceled here
    source: str = fmt.SOURCE_TAG
    environment: str = fmt.ENVIRONMENT_TAG
    counts: ImportCounts = field(default_factory=ImportCounts)
    export_mode: str = ""
    redaction_mode: str = ""  # the bundle's; the import is redacted under the project's

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


def bundle_import(*, project: Project, file: IO[bytes],
                  progress: Progress | None = None) -> ImportReport:
    """Import the bundle in ``file`` (seekable, binary) into ``project``; see the module."""
    progress = progress or _quiet
    progress("validate", 0, 1)
    bundle = bundle_open(file)
    try:
        progress("validate", 1, 1)
        return _load(bundle, project, progress)
    finally:
        bundle.close()


@dataclass
class _Plan:
    records: list[SpanRecord] | None
    run: dict | None
    events: list | None
    trace_here: bool  # this project holds the trace already
    run_here: str | None  # the run this project imported from the bundle's already

    @property
    def nothing_new(self) -> bool:
        return (self.records is None or self.trace_here) and (self.run is None
                                                              or self.run_here is not None)


def _plan(bundle: Bundle, project: Project) -> _Plan:
    """Everything read and checked that can be before a write."""
    manifest = bundle.manifest
    decoded = spans_entry(bundle)
    records = None
    if manifest["trace_id"] is not None:
        if decoded is None:
            raise InvalidBundle(f"the manifest names a trace but {fmt.SPANS} is missing")
        _check_spans(decoded, manifest)
        records = decoded.spans
    run = json_entry(bundle, fmt.RUN) if manifest["run_id"] is not None else None
    events = jsonl_entry(bundle, fmt.RUN_EVENTS) if run is not None else None
    if events is not None and len(events) != manifest["counts"]["run_events"]:
        raise InvalidBundle(
            f"{fmt.RUN_EVENTS} holds {len(events)} events; the manifest counts "
            f"{manifest['counts']['run_events']}", details={"entry": fmt.RUN_EVENTS})
    run_here = None
    if run is not None:
        run_import_check(project=project, run=run, events=events)
        previous = run_imported(project=project, original_id=manifest["run_id"])
        run_here = previous.id if previous is not None else None
    trace_here = False
    if records is not None:
        try:
            trace = trace_get(trace_id=manifest["trace_id"], access=_SYSTEM)
        except NotFound:
            trace = None
        if trace is not None and trace.project_id != project.pk:
            raise Conflict(
                f"trace {manifest['trace_id']} already exists on this server in another "
                "project (trace ids are unique); delete it there to import it here",
                details={"trace_id": manifest["trace_id"]})
        trace_here = trace is not None
    return _Plan(records=records, run=run, events=events, trace_here=trace_here,
                 run_here=run_here)


def _check_spans(decoded, manifest: dict) -> None:
    if decoded.rejected:
        raise InvalidBundle(
            f"{fmt.SPANS}: {decoded.rejected} spans are not valid OTLP spans "
            f"({'; '.join(decoded.reasons)})", details={"entry": fmt.SPANS})
    foreign = sorted({r.trace_id for r in decoded.spans} - {manifest["trace_id"]})
    if foreign:
        raise InvalidBundle(
            f"{fmt.SPANS} holds spans of trace {foreign[0]}, not the manifest's "
            f"{manifest['trace_id']}", details={"entry": fmt.SPANS, "trace_id": foreign[0]})
    if not decoded.spans:
        raise InvalidBundle(f"the manifest names trace {manifest['trace_id']} but {fmt.SPANS} "
                            "holds no spans", details={"entry": fmt.SPANS})
    if len(decoded.spans) != manifest["counts"]["spans"]:
        raise InvalidBundle(
            f"{fmt.SPANS} holds {len(decoded.spans)} spans; the manifest counts "
            f"{manifest['counts']['spans']}", details={"entry": fmt.SPANS})


def _load(bundle: Bundle, project: Project, progress: Progress) -> ImportReport:
    manifest = bundle.manifest
    plan = _plan(bundle, project)
    redactor = get_redactor(project.redaction_policy or None)
    report = ImportReport(
        project=project.slug, trace_id=manifest["trace_id"], run_id=None,
        original_run_id=manifest["run_id"], already_imported=False, trace_imported=False,
        run_imported=False, run_closed=False, export_mode=manifest["export_mode"],
        redaction_mode=manifest["redaction_mode"],
    )
    if plan.nothing_new:
        report.already_imported = True
        report.run_id = plan.run_here
        progress("done", 1, 1)
        return report
    # Only the blobs something will refer to are stored (a strict project drops the span
    # references its allowlist would never have made).
    wanted = set()
    if plan.records is not None and not plan.trace_here:
        wanted |= spans_import_prepare(project=project, records=plan.records)
    if plan.run is not None and plan.run_here is None:
        wanted |= run_payload_refs(run=plan.run, events=plan.events)
    batch = PayloadBatch()
    refs = _restore(bundle, wanted, redactor, batch, report, progress)
    with transaction.atomic():
        run_ids: dict[str, str] = {}
        if plan.run is not None:
            progress("run", 0, len(plan.events or []))
            imported = run_import(project=project, run=plan.run, events=plan.events or [],
                                  trace_id=manifest["trace_id"] or "", payload_refs=refs,
                                  batch=batch)
            run_ids[manifest["run_id"]] = imported.run.id
            report.run_id, report.run_imported = imported.run.id, imported.created
            report.run_closed, report.counts.run_events = imported.closed, imported.events
            progress("run", len(plan.events or []), len(plan.events or []))
        batch.store()  # a no-op when run_import stored it
        if plan.records is not None and not plan.trace_here:
            progress("spans", 0, len(plan.records))
            result = spans_import(project=project, records=plan.records,
                                  environment=fmt.ENVIRONMENT_TAG, run_ids=run_ids,
                                  payload_refs=refs)
            report.trace_imported = True
            report.counts.spans = result.accepted
            progress("spans", len(plan.records), len(plan.records))
    report.already_imported = not (report.trace_imported or report.run_imported)
    progress("done", 1, 1)
    return report


def _restore(bundle: Bundle, wanted: set[str], redactor: Redactor, batch: PayloadBatch,
             report: ImportReport, progress: Progress) -> dict[str, str]:
    """Redact each payload blob of the bundle that is ``wanted`` under ``redactor`` and add it
    to ``batch`` (addressed, not stored); return bundle hash → hash here. Groups of
    STORE_GROUP_BYTES are stored as they fill, once the bundle has passed every check."""
    out: dict[str, str] = {}
    names = sorted(bundle.payloads & wanted)
    pending = 0
    for i, sha256 in enumerate(names):
        data = bundle.payload(sha256)
        redacted = _redacted(data, redactor) if data is not None else None
        if redacted is None:
            report.counts.payloads_skipped += 1
            continue
        stored = batch.add(data=redacted,
                           content_type=bundle.content_type(sha256) or _content_type(redacted),
                           redaction_mode=redactor.policy)
        out[sha256] = stored.sha256
        report.counts.payloads += 1
        pending += len(redacted)
        if pending >= STORE_GROUP_BYTES:
            batch.store()
            pending = 0
        progress("payloads", i + 1, len(names))
    return out


def _redacted(data: bytes, redactor: Redactor) -> bytes | None:
    """The blob redacted as text (unchanged bytes when nothing needed redacting); None for a
    blob that is not UTF-8 text, which the redaction could not vouch for."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    cleaned = redactor.text(text)
    return data if cleaned == text else cleaned.encode("utf-8")


def _content_type(data: bytes) -> str:
    """What the ingest would have named it: JSON for a JSON array or object, text otherwise."""
    if data[:1] in (b"[", b"{"):
        try:
            orjson.loads(data)
            return "application/json"
        except orjson.JSONDecodeError:
            pass
    return "text/plain; charset=utf-8"
