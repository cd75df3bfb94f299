#!/usr/bin/env python
"""Bundles (issue #13): import and export of a 10,000-span trace with 200 payload blobs and a run.

For each database (a fresh PostgreSQL database
``tracefoundry_bench_bundles``, ``--pg-db``, and/or a fresh SQLite file) a subprocess writes two
bundles in the format of ``bundles/format.py`` — each an agent trace of ``--spans`` spans (LLM and
tool calls under one agent span, OTLP JSON as an export writes it), ``--blobs`` distinct payload
blobs of about 20 KB that the LLM spans and run events refer to, and a finished run of
``--events`` events — then another, with Django set up against that database (so its peak RSS is
the import's, not the build's):

1. imports it with ``bundles.imports.bundle_import`` (the service behind the API, the page and
   the CLI: validation of every entry and hash, then run, blobs and spans in one transaction),
   timed, with the process's peak RSS before and after;
2. imports it again: "already imported", nothing stored (timed);
3. dry-replays it (``bundles.replay.bundle_dry_replay``, timed);
4. imports a second bundle of the same shape (another trace id) under ``tracemalloc``: the peak
   of Python allocations during an import.

Then, in a third process (``--only export`` skips the import figures, not the import):

5. the raw limit: the span rows and run events read with one query each (``cursor.fetchall``,
   no serialisation) and every blob read from storage;
6. exports the first trace, full (``bundles.exports.trace_export``, the service behind the
   API, the buttons and the CLI) to a file, timed, with the process's peak RSS before and
   after; then strict;
7. exports the second trace under ``tracemalloc`` (the peak of Python allocations: an export is
   spooled and streamed, never built whole), and dry-replays the first export (every hash).

Budget (PostgreSQL): the import takes <= 3 s, and the full export <= 3 s. Checked on both
databases: everything is stored (spans, blobs and their refs, events), the second import stores
nothing, and the export holds everything and dry-replays clean. Exit status: 0 all pass, 1 a
budget failed, 2 the bench failed.

    .venv/bin/python bench/bundles.py [--only import|export|both] [--db postgres|sqlite|both]
        [--spans 10000] [--blobs 200] [--events 1000] [--pg-db NAME] [--profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` (psycopg, concurrent.futures) would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import cProfile
import hashlib
import io
import json
import random
import resource
import time
import tracemalloc
import zipfile
from typing import Any

from common import (  # bench/ is not a package: this folder is on sys.path
    Checks,
    bench_db,
    db_title,
    print_checks,
    print_machine,
    profile_text,
    prose,
    run_bench,
    run_phase,
    setup_django,
)

BUDGET_IMPORT_S = 3.0
BUDGET_EXPORT_S = 3.0
PG_DB = "tracefoundry_bench_bundles"
TRACE_IDS = ("b0" * 16, "b2" * 16)
ORIGINAL_RUN = "run_01BENCHBUNDLE0000000000000"
WORDS = ("the", "agent", "reads", "repository", "plans", "a", "change", "runs", "tests", "and",
         "reports", "what", "failed", "because", "tool", "returned", "rows", "of", "cities",
         "weather", "data", "prices", "notes", "with", "three", "retries", "then", "answers")
NS = 1_000_000


# --- the bundle --------------------------------------------------------------------------------

def _kv(key: str, value: Any) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def build_bundle(trace_id: str, *, spans: int, blobs: int, events: int, seed: int) -> bytes:
    """A bundle as an export writes it (sorted JSON, fixed zip timestamps)."""
    from bundles import format as fmt

    rng = random.Random(seed)
    texts = [prose(rng, WORDS, 19_000, 21_000, prefix=f"prompt {i}:") for i in range(blobs)]
    payloads = {hashlib.sha256(t.encode()).hexdigest(): t.encode() for t in texts}
    digests = list(payloads)
    start = 1_700_000_000_000 * NS
    root = f"{1:016x}"
    out = [{"traceId": trace_id, "spanId": root, "name": "invoke_agent bench", "kind": 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + spans * 2 * NS),
            "attributes": [_kv("gen_ai.operation.name", "invoke_agent"),
                           _kv("gen_ai.agent.name", "bench"),
                           _kv("tracefoundry.run_id", ORIGINAL_RUN)],
            "status": {"code": 1}}]
    llm_calls = 0
    for i in range(1, spans):
        at = start + i * 2 * NS
        span_id = f"{i + 1:016x}"
        if i % 2:
            attributes = [_kv("gen_ai.operation.name", "chat"),
                          _kv("gen_ai.request.model", "gpt-4o-mini"),
                          _kv("gen_ai.usage.input_tokens", 900 + i % 50),
                          _kv("gen_ai.usage.output_tokens", 60 + i % 20),
                          _kv("tracefoundry.run_id", ORIGINAL_RUN)]
            if llm_calls < blobs:
                text = texts[llm_calls]
                attributes += [_kv("gen_ai.prompt", text[:512] + "…"),
                               _kv("tracefoundry.payload.prompt_ref",
                                   f"sha256:{digests[llm_calls]}")]
            else:
                attributes.append(_kv("gen_ai.prompt", prose(rng, WORDS, 200, 400)))
            llm_calls += 1
            name = "chat gpt-4o-mini"
        else:
            attributes = [_kv("gen_ai.operation.name", "execute_tool"),
                          _kv("gen_ai.tool.name", f"tool_{i % 7}"),
                          _kv("gen_ai.tool.call.result", prose(rng, WORDS, 100, 300)),
                          _kv("tracefoundry.run_id", ORIGINAL_RUN)]
            name = f"execute_tool tool_{i % 7}"
        out.append({"traceId": trace_id, "spanId": span_id, "parentSpanId": root, "name": name,
                    "kind": 1, "startTimeUnixNano": str(at),
                    "endTimeUnixNano": str(at + NS + i % 3 * NS), "attributes": attributes,
                    "status": {"code": 1}})
    spans_doc = {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", "bench-agent"),
                                    _kv("deployment.environment.name", "prod")]},
        "scopeSpans": [{"scope": {"name": "bench", "version": "1"}, "spans": out}],
    }]}
    run, run_events = _run(trace_id, events, digests, texts)
    entries = {
        fmt.README: b"A TraceFoundry bundle (bench/bundles.py).\n",
        fmt.SPANS: json.dumps(spans_doc, sort_keys=True, separators=(",", ":")).encode(),
        fmt.RUN: json.dumps(run, sort_keys=True).encode(),
        fmt.RUN_EVENTS: b"".join(json.dumps(e, sort_keys=True).encode() + b"\n"
                                 for e in run_events),
        **{fmt.PAYLOADS_DIR + digest: data for digest, data in sorted(payloads.items())},
    }
    manifest = {
        "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION,
        "created_at": "2025-01-01T00:00:00Z", "product_version": "bench", "git_commit": None,
        "environment": {}, "export_mode": "full", "redaction_mode": "standard",
        "trace_id": trace_id, "run_id": ORIGINAL_RUN,
        "counts": {"spans": spans, "run_events": len(run_events), "payloads": len(payloads)},
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in entries.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {fmt.MANIFEST: json.dumps(manifest, sort_keys=True).encode(),
                           **entries}.items():
            info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _run(trace_id: str, events: int, digests: list[str], texts: list[str]):
    at = "2025-01-01T00:{:02d}:{:02d}.{:06d}Z"

    def when(i: int) -> str:
        return at.format(i // 60_000_000 % 60, i // 1_000_000 % 60, i % 1_000_000)

    rows = [("run.created", "api", {"kind": "agent.bench", "name": "bench", "max_attempts": 1,
                                    "run_after": None}),
            ("run.started", "worker", {"attempt": 1, "worker_id": "w-bench"})]
    for i in range(events - 3):
        if i < len(digests):
            marker = {"truncated": True, "preview": texts[i][:512],
                      "payload_ref": f"sha256:{digests[i]}",
                      "size_bytes": len(texts[i].encode())}
            rows.append(("llm_request", "agent", {"model": "gpt-4o-mini", "text": marker}))
        else:
            rows.append(("log", "agent", {"text": f"step {i} done", "stream": "stdout"}))
    rows.append(("run.succeeded", "worker", {"output": {"ok": True}}))
    out = [{"seq": seq, "event_id": f"00000000-0000-4000-8000-{seq:012d}", "type": etype,
            "level": "info", "source": source, "created_at": when(seq * 1000), "step_id": None,
            "correlation_id": "bench", "causation_id": "", "payload": payload,
            "truncated": etype == "llm_request", "late": False, "run_id": ORIGINAL_RUN}
           for seq, (etype, source, payload) in enumerate(rows, start=1)]
    run = {"id": ORIGINAL_RUN, "kind": "agent.bench", "name": "bench", "input": {},
           "max_attempts": 1, "correlation_id": "bench", "trace_id": trace_id,
           "created_at": when(1000), "state": "succeeded"}
    return run, out


# --- the phase: inside Django, against the bench database ----------------------------------------

def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_build(args) -> None:
    setup_django()
    shape = {"spans": args.spans, "blobs": args.blobs, "events": args.events}
    for i, trace_id in enumerate(TRACE_IDS):
        data = build_bundle(trace_id, seed=args.seed + i, **shape)
        Path(args.out).with_name(f"bundle-{trace_id}.zip").write_bytes(data)
    Path(args.out).write_text("{}")


def phase_import(args) -> None:
    setup_django()
    from django.db import connection

    from bundles.imports import bundle_import
    from bundles.replay import bundle_dry_replay
    from payloads.models import PayloadBlob, PayloadRef
    from runs.models import Project, Run, RunEvent
    from traces.models import Span, Trace

    project = Project.objects.get(slug="default")
    # Written by the "build" phase: this process's peak RSS is the import's, not the build's.
    first, second = (Path(args.out).with_name(f"bundle-{t}.zip").read_bytes() for t in TRACE_IDS)
    connection.close()
    rss_before = _rss_mib()
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    report = bundle_import(project=project, file=io.BytesIO(first))
    if profiler:
        profiler.disable()
    import_s = time.perf_counter() - started
    rss_after = _rss_mib()
    started = time.perf_counter()
    again = bundle_import(project=project, file=io.BytesIO(first))
    again_s = time.perf_counter() - started
    started = time.perf_counter()
    replay = bundle_dry_replay(file=io.BytesIO(first))
    replay_s = time.perf_counter() - started
    trace = Trace.objects.get(trace_id=TRACE_IDS[0])
    run = Run.objects.get(pk=report.run_id)
    stored = {
        "spans": Span.objects.filter(trace=trace).count(),
        "span_count": trace.span_count, "trace_run": trace.run_id == run.id,
        "events": RunEvent.objects.filter(run=run).count(),
        "blobs": PayloadBlob.objects.count(),
        "span_refs": PayloadRef.objects.filter(span__trace=trace).count(),
        "event_refs": PayloadRef.objects.filter(run_event__run=run).count(),
    }
    tracemalloc.start()
    bundle_import(project=project, file=io.BytesIO(second))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {
        "bundle_bytes": len(first), "import_s": import_s, "again_s": again_s,
        "replay_s": replay_s, "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "traced_peak_mib": traced_peak / 2**20, "report": report.as_dict(),
        "again": again.as_dict(), "replay_ok": replay["ok"], "replay_calls": len(replay["calls"]),
        "stored": stored,
        "profile": profile_text(profiler, "bundle_import") if profiler else "",
    }
    Path(args.out).write_text(json.dumps(result))


def phase_export(args) -> None:
    setup_django()
    from django.db import connection

    from bundles.exports import trace_export
    from bundles.replay import bundle_dry_replay
    from payloads.models import PayloadBlob
    from payloads.store import payload_read
    from traces.models import Trace

    out = Path(args.out).with_name("export-full.zip")
    first = Trace.objects.get(trace_id=TRACE_IDS[0])
    connection.close()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT span_id, parent_span_id, name, attributes, events, links, "
                       "resource, scope FROM traces_span WHERE trace_id = %s "
                       "ORDER BY start_time_unix_nano, span_id", [first.pk])
        raw_spans = len(cursor.fetchall())
        cursor.execute("SELECT seq, payload FROM runs_runevent WHERE run_id = %s ORDER BY seq",
                       [first.run_id])
        raw_events = len(cursor.fetchall())
    raw_blob_bytes = sum(len(payload_read(b)) for b in PayloadBlob.objects.filter(
        refs__span__trace=first).distinct())
    raw_s = time.perf_counter() - started
    rss_before = _rss_mib()
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    with out.open("wb") as fh:
        size = trace_export(access=None, trace_id=TRACE_IDS[0], mode="full").write_to(fh)
    if profiler:
        profiler.disable()
    export_s = time.perf_counter() - started
    rss_after = _rss_mib()
    started = time.perf_counter()
    with Path(args.out).with_name("export-strict.zip").open("wb") as fh:
        strict_size = trace_export(access=None, trace_id=TRACE_IDS[0], mode="strict").write_to(fh)
    strict_s = time.perf_counter() - started
    tracemalloc.start()
    with Path(args.out).with_name("export-second.zip").open("wb") as fh:
        trace_export(access=None, trace_id=TRACE_IDS[1], mode="full").write_to(fh)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with out.open("rb") as fh:
        replay = bundle_dry_replay(file=fh)
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    result = {
        "raw_s": raw_s, "raw_spans": raw_spans, "raw_events": raw_events,
        "raw_blob_mib": raw_blob_bytes / 2**20, "export_s": export_s, "bytes": size,
        "strict_s": strict_s, "strict_bytes": strict_size, "rss_before_mib": rss_before,
        "rss_after_mib": rss_after, "traced_peak_mib": traced_peak / 2**20,
        "counts": manifest["counts"], "unavailable": manifest.get("payloads_unavailable", []),
        "replay_ok": replay["ok"], "replay_findings": replay["findings"][:3],
        "profile": profile_text(profiler, "trace_export") if profiler else "",
    }
    Path(args.out).write_text(json.dumps(result))


# --- the report ----------------------------------------------------------------------------------

def bench_one(kind: str, tmp: Path, redis_url: str | None, args) -> Checks:
    with bench_db(kind, tmp, redis_url, pg_db=args.pg_db, sqlite_name="bundles.sqlite3",
                  scopes="runs:read,runs:write") as (_, env, _key):
        shape = ["--spans", str(args.spans), "--blobs", str(args.blobs), "--events",
                 str(args.events), "--seed", str(args.seed)]
        print(f"[{kind}] build the bundles ...", file=sys.stderr, flush=True)
        run_phase(__file__, "build", tmp / "build.json", shape, env, profile=False, timeout=900)
        print(f"[{kind}] import ...", file=sys.stderr, flush=True)
        r = run_phase(__file__, "import", tmp / "import.json", shape, env,
                      profile=args.profile and args.only != "export", timeout=900)
        x = None
        if args.only != "import":
            print(f"[{kind}] export ...", file=sys.stderr, flush=True)
            x = run_phase(__file__, "export", tmp / "export.json", shape, env,
                          profile=args.profile and args.only == "export", timeout=900)
    print(f"{db_title(kind, args.pg_db)}")
    s, counts = r["stored"], r["report"]["counts"]
    print(f"  bundle: {args.spans:,} spans, {args.blobs} payload blobs, {args.events:,} run "
          f"events; {r['bundle_bytes'] / 2**20:.1f} MiB zipped")
    print(f"  import            {r['import_s']:6.2f} s   ({args.spans / r['import_s']:,.0f} "
          f"spans/s); peak RSS of the process {r['rss_before_mib']:.0f} MiB before, "
          f"{r['rss_after_mib']:.0f} MiB after")
    print(f"  import again      {r['again_s']:6.2f} s   (already imported: "
          f"{r['again']['already_imported']})")
    print(f"  dry replay        {r['replay_s']:6.2f} s   (ok: {r['replay_ok']}, "
          f"{r['replay_calls']:,} LLM/tool calls)")
    print(f"  tracemalloc peak of an import: {r['traced_peak_mib']:.0f} MiB")
    print(f"  stored: {s['spans']:,} spans, {s['events']:,} events, {s['blobs']} blobs, "
          f"{s['span_refs']} span refs, {s['event_refs']} event refs")
    if r["profile"]:
        print(r["profile"])
    checks = [] if args.only == "export" else [
        (f"every span, event and blob stored ({s['spans']:,} spans, {counts['payloads']} blobs)",
         s["spans"] == s["span_count"] == args.spans and s["trace_run"]
         and s["events"] == args.events and counts["payloads"] == args.blobs
         and s["span_refs"] == args.blobs and s["event_refs"] == args.blobs),
        ("a second import stores nothing",
         r["again"]["already_imported"] and not r["again"]["trace_imported"]),
    ]
    if kind == "postgres" and args.only != "export":
        checks.insert(0, (f"import {r['import_s']:.2f} s <= {BUDGET_IMPORT_S:.0f} s",
                          r["import_s"] <= BUDGET_IMPORT_S))
    if x is not None:
        checks += export_report(kind, x, args)
    return print_checks(kind, checks)


def export_report(kind: str, x: dict, args) -> list[tuple[str, bool]]:
    c = x["counts"]
    print(f"  raw limit         {x['raw_s']:6.2f} s   ({x['raw_spans']:,} span rows and "
          f"{x['raw_events']:,} events fetched, {x['raw_blob_mib']:.1f} MiB of blobs read; "
          f"no serialisation, no zip)")
    print(f"  export, full      {x['export_s']:6.2f} s   ({args.spans / x['export_s']:,.0f} "
          f"spans/s, {x['bytes'] / 2**20:.1f} MiB zip, {x['export_s'] / x['raw_s']:.1f}x the "
          f"raw limit); peak RSS of the process {x['rss_before_mib']:.0f} MiB before, "
          f"{x['rss_after_mib']:.0f} MiB after")
    print(f"  export, strict    {x['strict_s']:6.2f} s   ({x['strict_bytes'] / 2**20:.1f} MiB "
          f"zip, re-redacted, no blobs)")
    print(f"  tracemalloc peak of an export: {x['traced_peak_mib']:.0f} MiB")
    if x["profile"]:
        print(x["profile"])
    checks = [
        (f"the export holds everything ({c['spans']:,} spans, {c['run_events']:,} events, "
         f"{c['payloads']} blobs) and dry-replays clean",
         c["spans"] == args.spans and c["run_events"] == args.events
         and c["payloads"] == args.blobs and not x["unavailable"] and x["replay_ok"]),
    ]
    if kind == "postgres":
        checks.insert(0, (f"export {x['export_s']:.2f} s <= {BUDGET_EXPORT_S:.0f} s",
                          x["export_s"] <= BUDGET_EXPORT_S))
    return checks


def print_header(args, redis_url) -> None:
    print_machine("bundles: import and export of a large trace", args.db, load_average=True)
    print()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("import", "export", "both"), default="both",
                   help="which figures (export needs the imported trace: it always imports)")
    p.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    p.add_argument("--spans", type=int, default=10_000)
    p.add_argument("--blobs", type=int, default=200)
    p.add_argument("--events", type=int, default=1_000)
    p.add_argument("--pg-db", default=PG_DB,
                   help=f"the throwaway PostgreSQL database (created, then dropped; {PG_DB})")
    p.add_argument("--redis", choices=("auto", "on", "off"), default="off",
                   help="Redis for the channel layer (off: in memory)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--profile", action="store_true",
                   help="cProfile the import (with --only export: the export)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--_phase", dest="phase", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.events < args.blobs + 3:
        p.error("--events must be at least --blobs + 3 (each blob is an event's, too)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = {"build": phase_build, "import": phase_import, "export": phase_export}
    if args.phase in phases:
        phases[args.phase](args)
        return 0
    return run_bench(args, tmp_prefix="tf-bench-bundles-", order=("postgres", "sqlite"),
                     header=print_header,
                     bench_one=lambda kind, tmp, redis_url: bench_one(kind, tmp, redis_url,
                                                                      args))


if __name__ == "__main__":
    sys.exit(main())
