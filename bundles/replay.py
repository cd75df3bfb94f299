"""Dry replay: what a bundle holds and what is wrong with it, from the bundle alone. Nothing is
stored and nothing is read from the database: ``POST /api/v1/bundles/dry-replay``, the import
page's "Dry replay" button and ``tracefoundry dry-replay``.

The bundle goes through the import's validation in its lenient form: an archive that is unsafe
or unreadable (names, entry types, limits, manifest) is still refused, but a file whose hash or
size disagrees with the manifest, a payload whose bytes do not hash to its name, a listed file
that is missing and an unlisted one are *findings*. Then the span tree is rebuilt from
``spans.otlp.json``: roots, orphans (a parent the bundle does not hold), cycles, depth, spans
per type (as ``traces.genai`` classifies them for the ingest), the payload references the
spans, events and run make and which of them the bundle cannot satisfy, and the recorded LLM
and tool calls in start order.

The report is plain JSON (``bundles.api.serializers.DryReplayReportSerializer`` documents it);
the CLI renders it as text, the import page as tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import IO, Any

from bundles import format as fmt
from bundles.validation import (
    Bundle,
    Finding,
    InvalidBundle,
    bundle_open,
    json_entry,
    jsonl_entry,
    spans_entry,
)
from runs.imports import run_payload_refs
from traces.genai import SPAN_TYPES, extract
from traces.otlp_decode import SpanRecord
from traces.span_payloads import REF_PREFIX

CALL_TYPES = ("llm", "tool")
LIST_MAX = 100  # roots, orphans and cycles listed at most (the counts are always whole)
_SHA = "sha256:"


def bundle_dry_replay(*, file: IO[bytes]) -> dict[str, Any]:
    """The dry-replay report of the bundle in ``file``; raises InvalidBundle only for an
    archive that cannot be read safely at all."""
    bundle = bundle_open(file, lenient=True)
    try:
        return _report(bundle)
    finally:
        bundle.close()


def _report(bundle: Bundle) -> dict[str, Any]:
    manifest = bundle.manifest
    findings: list[Finding] = list(bundle.findings)
    records = _records(bundle, findings)
    tree = _tree(records, findings)
    run, events = _run(bundle, findings)
    refs = _references(records, run, events)
    payloads = _payloads(bundle, refs, findings)
    run_summary = _run_summary(run, events, findings)
    return {
        "ok": not findings,
        "trace_id": manifest["trace_id"],
        "run_id": manifest["run_id"],
        "manifest": {
            "format_version": manifest["format_version"],
            "created_at": manifest["created_at"].isoformat().replace("+00:00", "Z"),
            "product_version": manifest["product_version"],
            "git_commit": manifest["git_commit"] or None,
            "export_mode": manifest["export_mode"],
            "redaction_mode": manifest["redaction_mode"],
            "counts": dict(manifest["counts"]),
        },
        "findings": [f.as_dict() for f in findings],
        "hash_mismatches": [f.as_dict() for f in findings
                            if f.kind in ("hash_mismatch", "size_mismatch")],
        "tree": tree,
        "span_types": _span_types(records),
        "payloads": payloads,
        "calls": _calls(records),
        "run": run_summary,
    }


# --- spans and their tree ---------------------------------------------------------------------

def _records(bundle: Bundle, findings: list[Finding]) -> list[SpanRecord]:
    if fmt.SPANS not in bundle.contents:
        return []
    try:
        decoded = spans_entry(bundle)
    except InvalidBundle as exc:
        findings.append(Finding("unreadable_spans", fmt.SPANS, exc.message))
        return []
    if decoded is None:
        return []
    if decoded.rejected:
        findings.append(Finding(
            "invalid_spans", fmt.SPANS,
            f"{decoded.rejected} spans are not valid OTLP spans ({'; '.join(decoded.reasons)})"))
    trace_id = bundle.manifest["trace_id"]
    foreign = [r for r in decoded.spans if r.trace_id != trace_id]
    if foreign:
        findings.append(Finding(
            "foreign_spans", fmt.SPANS,
            f"{len(foreign)} spans belong to another trace than the manifest's",
            expected=trace_id, actual=foreign[0].trace_id))
    expected = bundle.manifest["counts"]["spans"]
    if len(decoded.spans) != expected:
        findings.append(Finding(
            "count_mismatch", fmt.SPANS,
            f"{fmt.SPANS} holds {len(decoded.spans)} spans; the manifest counts {expected}",
            expected=str(expected), actual=str(len(decoded.spans))))
    return decoded.spans


def _brief(record: SpanRecord) -> dict[str, Any]:
    return {"span_id": record.span_id, "name": record.name, "parent_span_id":
            record.parent_span_id or None}


def _tree(records: list[SpanRecord], findings: list[Finding]) -> dict[str, Any]:
    """Roots, orphans, cycles and depth of the span tree (iterative: a trace may be thousands
    of levels deep)."""
    by_id: dict[str, SpanRecord] = {}
    duplicates = []
    for record in sorted(records, key=lambda r: (r.start_ns, r.span_id)):
        if record.span_id in by_id:
            duplicates.append(record.span_id)
        by_id[record.span_id] = record
    if duplicates:
        findings.append(Finding("duplicate_spans", fmt.SPANS,
                                f"{len(duplicates)} span ids appear more than once",
                                actual=duplicates[0]))
    roots = [r for r in by_id.values() if not r.parent_span_id]
    orphans = [r for r in by_id.values()
               if r.parent_span_id and r.parent_span_id not in by_id]
    cycles = _cycles(by_id)
    children: dict[str, list[str]] = {}
    for record in by_id.values():
        if record.parent_span_id in by_id and record.parent_span_id != record.span_id:
            children.setdefault(record.parent_span_id, []).append(record.span_id)
    depth = 0
    stack = [(r.span_id, 1) for r in (*roots, *orphans)]
    reached = set()
    while stack:
        span_id, level = stack.pop()
        if span_id in reached:
            continue
        reached.add(span_id)
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in children.get(span_id, ()))
    if orphans:
        findings.append(Finding(
            "orphan_spans", fmt.SPANS,
            f"{len(orphans)} spans name a parent the bundle does not hold",
            actual=orphans[0].span_id))
    for cycle in cycles:
        findings.append(Finding("cycle", fmt.SPANS,
                                f"spans {' -> '.join(cycle)} are each other's ancestors",
                                actual=cycle[0]))
    return {
        "spans": len(by_id),
        "roots": [_brief(r) for r in roots[:LIST_MAX]],
        "root_count": len(roots),
        "orphans": [_brief(r) for r in orphans[:LIST_MAX]],
        "orphan_count": len(orphans),
        "cycles": cycles[:LIST_MAX],
        "unreachable": len(by_id) - len(reached),
        "depth": depth,
        "duplicates": duplicates[:LIST_MAX],
    }


def _cycles(by_id: dict[str, SpanRecord]) -> list[list[str]]:
    """Each cycle of parent links once, as the span ids along it (sorted ids start it)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []
    for start in sorted(by_id):
        path: list[str] = []
        node: str | None = start
        while node is not None and node in by_id and state.get(node) is None:
            state[node] = 1
            path.append(node)
            node = by_id[node].parent_span_id or None
        if node is not None and state.get(node) == 1:
            cycle = path[path.index(node):]
            first = cycle.index(min(cycle))
            cycles.append(cycle[first:] + cycle[:first])
        for item in path:
            state[item] = 2
    return sorted(cycles)


def _genai(record: SpanRecord):
    return extract(name=record.name, kind=record.kind, attributes=record.attributes,
                   events=record.events, status_code=record.status_code,
                   status_message=record.status_message)


def _span_types(records: list[SpanRecord]) -> dict[str, int]:
    counts = Counter(_genai(r).span_type for r in records)
    return {t: counts.get(t, 0) for t in SPAN_TYPES}


def _calls(records: list[SpanRecord]) -> list[dict[str, Any]]:
    """The recorded LLM and tool calls, in start order."""
    if not records:
        return []
    start = min(r.start_ns for r in records)
    calls = []
    for record in sorted(records, key=lambda r: (r.start_ns, r.span_id)):
        genai = _genai(record)
        if genai.span_type not in CALL_TYPES:
            continue
        calls.append({
            "span_id": record.span_id, "name": record.name, "type": genai.span_type,
            "model": genai.model or None, "tool": genai.tool_name or None,
            "status": record.status_code, "start_offset_ms": (record.start_ns - start) / 1e6,
            "duration_ms": (record.end_ns - record.start_ns) / 1e6,
            "input_tokens": genai.input_tokens, "output_tokens": genai.output_tokens,
        })
    return calls


# --- the run and its events -------------------------------------------------------------------

def _run(bundle: Bundle, findings: list[Finding]) -> tuple[dict | None, list | None]:
    try:
        run = json_entry(bundle, fmt.RUN)
        events = jsonl_entry(bundle, fmt.RUN_EVENTS)
    except InvalidBundle as exc:
        findings.append(Finding("unreadable_run", exc.details.get("entry", fmt.RUN),
                                exc.message))
        return None, None
    return (run if isinstance(run, dict) else None), events


def _run_summary(run: dict | None, events: list | None,
                 findings: list[Finding]) -> dict[str, Any] | None:
    if run is None and events is None:
        return None
    events = [e for e in events or [] if isinstance(e, dict)]
    seqs = sorted(e["seq"] for e in events if isinstance(e.get("seq"), int))
    gaps = [a + 1 for a, b in pairwise(seqs) if b - a > 1]  # the first seq each gap lacks
    if seqs and (seqs[0] != 1 or gaps or len(set(seqs)) != len(seqs)):
        findings.append(Finding("event_sequence", fmt.RUN_EVENTS,
                                "the events' seq numbers are not 1, 2, 3, … without gaps",
                                actual=str((gaps or seqs)[0])))
    types = Counter(str(e.get("type")) for e in events)
    return {
        "id": (run or {}).get("id"), "kind": (run or {}).get("kind"),
        "state": (run or {}).get("state"), "events": len(events),
        "errors": sum(1 for e in events if e.get("level") == "error"),
        "event_types": dict(sorted(types.items())), "seq_gaps": gaps[:LIST_MAX],
    }


# --- payload references -----------------------------------------------------------------------

def _references(records: list[SpanRecord], run: dict | None, events: list | None) -> set[str]:
    """Every blob the spans, events and run refer to."""
    found = run_payload_refs(run=run, events=events)
    for record in records:
        found.update(_span_refs(record.attributes))
        for event in record.events:
            found.update(_span_refs(event.get("attributes") or {}))
    return found


def _span_refs(attributes: dict) -> Iterator[str]:
    for key, value in attributes.items():
        if key.startswith(REF_PREFIX) and key.endswith("_ref") and isinstance(value, str) \
                and value.startswith(_SHA):
            yield value[len(_SHA):]


def _payloads(bundle: Bundle, refs: set[str], findings: list[Finding]) -> dict[str, Any]:
    corrupt = sorted(f.entry.removeprefix(fmt.PAYLOADS_DIR) for f in findings
                     if f.entry.startswith(fmt.PAYLOADS_DIR)
                     and f.kind in ("corrupt_payload", "hash_mismatch", "size_mismatch"))
    missing = sorted(refs - bundle.payloads - set(corrupt))
    left_out = bundle.manifest["counts"]["payloads"] == 0
    if missing and not left_out:
        findings.append(Finding(
            "missing_payloads", fmt.PAYLOADS_DIR,
            f"{len(missing)} payloads the spans or events refer to are not in the bundle",
            actual=missing[0]))
    return {
        "in_bundle": len(bundle.payloads),
        "referenced": len(refs),
        "missing": missing[:LIST_MAX],
        "missing_count": len(missing),
        "corrupt": corrupt[:LIST_MAX],
        # A strict export, or a full one without payloads, leaves every blob out by design.
        "left_out_by_export": left_out,
        "unreferenced": len(bundle.payloads - refs),
    }
