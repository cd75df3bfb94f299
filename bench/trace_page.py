#!/usr/bin/env python
"""Trace page: time to first render of a 10,000-span trace in headless Chromium (PRODUCT.md §14).

Builds its own deployment with ``tests/livestack.py`` (a fresh SQLite file, or a fresh database on
the PostgreSQL server of ``BENCH_PG_ADMIN_URL``; daphne; DEBUG=1 as in the browser tests), ingests
one trace of ``--spans`` spans (default 10,000) through the real ``POST /otlp/v1/traces`` with an
``ingest`` key, logs an engineer in through the login form, then opens ``/traces/<id>/``
``--loads`` times (default 5) in Debian's Chromium driven by Playwright and reads the marks the
page's own script sets (``static/tf/trace_detail.js``):

- ``window.__tfSpansLoaded``: the compact span list fetched and parsed (ms since navigation start);
- ``window.__tfFirstRender``: the first window of tree + waterfall rows in the DOM.

Then, on the loaded page: jumps to the middle and to the end of the tree (scrollTop set, time
until two animation frames later, i.e. the rows are drawn), and a smooth scroll of ``--steps``
frames of 240 px (frame interval p50/p95/max and the longest window redraw). DOM rows are counted
to show the tree is virtualised.

Budget: median time to first render <= 1.5 s. Exit status 0 pass, 1 a budget failed, 2 the bench
failed.

    .venv/bin/python bench/trace_page.py [--db sqlite|postgres|both] [--spans 10000] [--loads 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py: keep this folder behind the standard library on sys.path, or
# `import queue` (psycopg, concurrent.futures) would find the queue benchmark instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from common import (  # bench/ is not a package: this folder is on sys.path
    PG_ADMIN_URL,
    REPO,
    Checks,
    print_checks,
    print_machine,
    run_bench,
)

sys.path.insert(0, str(REPO))
from tests.browser.trace_helpers import ingest, large_trace
from tests.livestack import CHROMIUM, CHROMIUM_ARGS, LiveStack, login

BUDGET_FIRST_RENDER_MS = 1500.0
TRACE_ID = "be" * 16
SCROLL_STEP_PX = 240

JUMP = """async ([where]) => {
  const s = document.getElementById("td-scroll");
  const t0 = performance.now();
  s.scrollTop = where === "end" ? s.scrollHeight : s.scrollHeight / 2;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const rows = [...document.querySelectorAll(".tv-row")].map(r => Number(r.dataset.idx));
  return {ms: performance.now() - t0, rows: rows.length, max_idx: Math.max(...rows)};
}"""

LISTINGS = """async ([traceId]) => {
  const out = {};
  for (const fields of ["full", "compact"]) {
    const t0 = performance.now();
    const res = await fetch(`/api/v1/traces/${traceId}/spans?fields=${fields}`);
    const text = await res.text();
    JSON.parse(text);
    out[fields] = {ms: performance.now() - t0, kb: text.length / 1024};
  }
  return out;
}"""

SMOOTH = """async ([steps, px]) => {
  const s = document.getElementById("td-scroll");
  s.scrollTop = 0;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const frames = [], redraws = [];
  let last = performance.now(), renders = window.__tfRenders;
  for (let i = 0; i < steps; i++) {
    s.scrollTop += px;
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now();
    frames.push(now - last); last = now;
    if (window.__tfRenders !== renders) {
      redraws.push(window.__tfLastRenderMs); renders = window.__tfRenders;
    }
  }
  return {frames, redraws, rows: document.querySelectorAll(".tv-row").length};
}"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    p.add_argument("--spans", type=int, default=10_000)
    p.add_argument("--loads", type=int, default=5, help="page loads measured (after one warm-up)")
    p.add_argument("--steps", type=int, default=120, help="frames of the smooth scroll")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daphne logs)")
    args = p.parse_args(argv)
    args.redis = "off"  # the page does not use live messages
    return args


def stack_for(kind: str, tmp: Path) -> LiveStack:
    """A LiveStack on a fresh SQLite file, or a fresh database on the PostgreSQL server."""
    if kind == "postgres":
        os.environ["DATABASE_URL"] = PG_ADMIN_URL
    else:
        os.environ.pop("DATABASE_URL", None)
    workdir = tmp / kind
    workdir.mkdir()
    return LiveStack.create(workdir)


def measure(stack: LiveStack, args) -> dict:
    from playwright.sync_api import sync_playwright

    server = stack.server()
    key = stack.api_key("ingest")
    spans = large_trace(TRACE_ID, args.spans)
    started = time.perf_counter()
    ingest(stack, server, key, spans, service="bench-agent")
    ingest_s = time.perf_counter() - started
    password = stack.create_user("bench-engineer", "engineer")
    url = f"{server.url}/traces/{TRACE_ID}/"
    loads = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        login(page, server, "bench-engineer", password)
        for n in range(args.loads + 1):  # the first load warms caches and is not counted
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_function("window.__tfFirstRender !== undefined", timeout=60_000)
            figures = page.evaluate("""() => {
              const nav = performance.getEntriesByType("navigation")[0];
              const api = performance.getEntriesByType("resource").find(
                e => e.name.includes("/spans?fields=compact"));
              return {first_render: window.__tfFirstRender, spans_loaded: window.__tfSpansLoaded,
                      html: nav.responseEnd, dom_ready: nav.domContentLoadedEventEnd,
                      api_ms: api ? api.duration : null,
                      api_kb: api ? api.encodedBodySize / 1024 : null,
                      rows: document.querySelectorAll(".tv-row").length};
            }""")
            if n:
                loads.append(figures)
        listings = page.evaluate(LISTINGS, [TRACE_ID])
        middle = page.evaluate(JUMP, ["middle"])
        end = page.evaluate(JUMP, ["end"])
        smooth = page.evaluate(SMOOTH, [args.steps, SCROLL_STEP_PX])
        browser.close()
    return {"ingest_s": ingest_s, "loads": loads, "middle": middle, "end": end,
            "smooth": smooth, "listings": listings}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def report(kind: str, result: dict, args) -> Checks:
    loads = result["loads"]
    print(f"[{kind}] one trace of {args.spans:,} spans, ingested over OTLP/HTTP JSON in "
          f"{result['ingest_s']:.1f} s")
    print(f"  {'page load (ms since navigation start)':<44}{'median':>9}{'best':>9}{'worst':>9}")
    for label, key in (("HTML received", "html"), ("DOMContentLoaded", "dom_ready"),
                       ("GET …/spans?fields=compact (duration)", "api_ms"),
                       ("spans fetched + parsed", "spans_loaded"),
                       ("first render (tree + waterfall rows)", "first_render")):
        values = [load[key] for load in loads if load[key] is not None]
        if values:
            print(f"  {label:<44}{statistics.median(values):>9.0f}{min(values):>9.0f}"
                  f"{max(values):>9.0f}")
    print(f"  compact span list: {loads[-1]['api_kb']:.0f} KB on the wire; DOM rows after first "
          f"render: {loads[-1]['rows']} of {args.spans:,} spans")
    full, compact = result["listings"]["full"], result["listings"]["compact"]
    print(f"  span list fetched + parsed once more: full {full['kb']:.0f} KB in "
          f"{full['ms']:.0f} ms, compact {compact['kb']:.0f} KB in {compact['ms']:.0f} ms")
    jumps = (("jump to the middle", result["middle"]), ("jump to the end", result["end"]))
    for label, jump in jumps:
        print(f"  {label:<24} drawn {jump['ms']:6.1f} ms later (2 frames), {jump['rows']} rows, "
              f"last row index {jump['max_idx']}")
    frames, redraws = result["smooth"]["frames"], result["smooth"]["redraws"] or [0.0]
    print(f"  smooth scroll, {len(frames)} frames of {SCROLL_STEP_PX} px: frame interval "
          f"p50 {pct(frames, 50):.1f} / p95 {pct(frames, 95):.1f} / max {max(frames):.1f} ms; "
          f"{len(result['smooth']['redraws'])} window redraws, longest {max(redraws):.1f} ms")
    median = statistics.median(load["first_render"] for load in loads)
    checks = [
        (f"median time to first render {median:.0f} ms <= {BUDGET_FIRST_RENDER_MS:.0f} ms",
         median <= BUDGET_FIRST_RENDER_MS),
        (f"DOM rows after first render {loads[-1]['rows']} < 1% of spans (virtualised)",
         loads[-1]["rows"] < max(200, args.spans // 100)),
        (f"the end of the tree is drawn after a jump (last row {result['end']['max_idx']})",
         result["end"]["max_idx"] == args.spans - 1),
    ]
    return print_checks(kind, checks)


def bench_one(kind: str, tmp: Path, args) -> Checks:
    print(f"[{kind}] migrate, ingest, load ...", file=sys.stderr, flush=True)
    stack = stack_for(kind, tmp)
    try:
        return report(kind, measure(stack, args), args)
    finally:
        stack.close()


def print_header(args, redis_url) -> None:
    print_machine("trace page, first render of a large trace", args.db, load_average=True)
    print(f"  chromium    {CHROMIUM} (headless, Playwright); {args.loads} loads after a warm-up")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    return run_bench(args, tmp_prefix="tf-bench-trace-page-", order=("sqlite", "postgres"),
                     header=print_header,
                     bench_one=lambda kind, tmp, redis_url: bench_one(kind, tmp, args))


if __name__ == "__main__":
    sys.exit(main())
