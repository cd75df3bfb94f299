"""Fuzz the REST API with schemathesis against a live deployment; exit non-zero on a finding.

``python -m tests.fuzz.run_schemathesis [--max-examples N]``. A fresh database (PostgreSQL when
``DATABASE_URL`` says so, as in CI; else SQLite) behind a real daphne process, started the way
the end-to-end tests start theirs (tests/livestack.py). It is seeded with a run with steps and
events and a trace with spans, whose ids schemathesis uses for most path parameters, and the
requests carry an admin's API key, so operations are exercised rather than answered 401/404.

Every check runs (5xx, schema conformance of status, headers, content type and body, negative
data accepted, positive data rejected, ignored auth, …); response times are not asserted.
Prints the operations, requests sent, 5xx responses and the failures per check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.livestack import ROOT, LiveStack
from tests.traces.otlp_builders import json_request, json_span

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
FAILURE_TITLE = re.compile(r"^- (ST\d+ .+)$", re.MULTILINE)
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_IDS = ("eee19b7ec3c1b174", "eee19b7ec3c1b175", "eee19b7ec3c1b176")


def seed(stack: LiveStack, url: str, key: str) -> dict[str, list[str]]:
    """Runs in several states with steps and events, and a trace with spans: their ids."""

    def call(method: str, path: str, body=None, expect=(200, 201, 202)) -> dict:
        code, data = stack.request(method, f"{url}/api/v1{path}", key=key, body=body)
        assert code in expect, (method, path, code, data)
        return data or {}

    runs, steps = [], []
    for n in range(3):
        run = call("POST", "/runs", {"kind": "fuzz.seed", "name": f"seed {n}",
                                     "input": {"n": n}})
        runs.append(run["id"])
    call("POST", f"/runs/{runs[0]}/start", {"worker_id": "seed-worker"})
    for name in ("plan", "act"):
        steps.append(call("POST", f"/runs/{runs[0]}/steps", {"name": name})["id"])
    call("POST", f"/runs/{runs[0]}/events", [
        {"type": "log", "payload": {"text": "hello"}, "step_id": steps[0]},
        {"type": "tool_call", "level": "warn", "payload": {"big": "x" * 10_000}},
    ])
    call("POST", f"/runs/{runs[1]}/start", {"worker_id": "seed-worker"})
    big_output = {"ok": True, "log": "x" * 9000}  # over the inline limit: a payload blob
    output_ref = call("POST", f"/runs/{runs[1]}/succeed", {"output": big_output})["output_ref"]
    spans = [json_span(TRACE_ID, SPAN_IDS[0], "agent.run"),
             json_span(TRACE_ID, SPAN_IDS[1], "llm", parent=SPAN_IDS[0],
                       attributes={"gen_ai.request.model": "gpt-4o",
                                   "gen_ai.usage.input_tokens": 12}),
             json_span(TRACE_ID, SPAN_IDS[2], "tool", parent=SPAN_IDS[0], status=2)]
    code, _ = otlp(url, key, json_request(spans))
    assert code == 200, code
    return {"run_id": runs, "step_id": steps, "trace_id": [TRACE_ID], "span_id": list(SPAN_IDS),
            "sha256": [output_ref.removeprefix("sha256:")]}


def otlp(url: str, key: str, body: bytes) -> tuple[int, bytes]:
    import urllib.request

    req = urllib.request.Request(f"{url}/otlp/v1/traces", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read()


def config(ids: dict[str, list[str]]) -> str:
    """schemathesis.toml: real ids for the path parameters most of the time. Unknown query
    parameters and headers are ignored, as HTTP APIs do, so they are not generated."""
    # The event stream of an unfinished run stays open (keepalive comments): read the run
    # snapshot and the first event of each response, then hang up.
    lines = ["max-stream-events = 2", "", "[generation]", "allow-extra-parameters = false", ""]
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    # Cursors are tokens the server hands out (in `next`/`previous`); a made-up one is a 400 by
    # design (tests/tracefoundry/test_bad_input.py forges them), so the lists get no cursor.
    lines += ["[dictionaries.cursor]", 'values = [""]', ""]
    lines.append("[parameters]")
    lines.append('"query.cursor" = { dictionary = "cursor", probability = 1.0 }')
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.8 }}')
    # What OpenAPI 3.0 cannot say about an event: a `log` needs `payload.text`, a `step_id` must
    # name a step of the run. A schema-valid event may be a 400 for these reasons alone.
    lines += ["", "[[operations]]", 'include-operation-id = "runs_events_append"',
              "[operations.checks.positive_data_acceptance]",
              'expected-statuses = ["2xx", "400", "401", "403", "404", "409"]']
    # Nor that an `output_ref` must name a payload the run's project already refers to (a key
    # must not reach another project's blob through it): a well-formed unknown ref is a 400.
    for operation in ("runs_succeed_create", "runs_complete_create"):
        lines += ["", "[[operations]]", f'include-operation-id = "{operation}"',
                  "[operations.checks.positive_data_acceptance]",
                  'expected-statuses = ["2xx", "400", "401", "403", "404", "409"]']
    # Nor that the uploaded file must be a sound bundle (a zip in the format of
    # bundles/format.py): schema-valid bytes are a 400 `invalid_bundle`.
    for operation in ("bundles_import", "bundles_dry_replay"):
        lines += ["", "[[operations]]", f'include-operation-id = "{operation}"',
                  "[operations.checks.positive_data_acceptance]",
                  'expected-statuses = ["2xx", "400", "401", "403", "404", "409"]']
    return "\n".join(lines) + "\n"


def summary(har_path: Path, junit_path: Path) -> dict:
    import xml.etree.ElementTree as ET

    entries = json.loads(har_path.read_text())["log"]["entries"] if har_path.exists() else []
    statuses = Counter(e["response"]["status"] for e in entries)
    failures: Counter = Counter()
    operations = set()
    if junit_path.exists():
        for case in ET.parse(junit_path).getroot().iter("testcase"):
            if case.get("name", "").split(" ")[0] in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                operations.add(case.get("name"))
            for failure in [*case.iter("failure"), *case.iter("error")]:
                titles = FAILURE_TITLE.findall(failure.text or "") or [failure.get("message")]
                failures.update(titles)
    return {
        "operations": len(operations),
        "requests": len(entries),
        "server_errors": sum(n for code, n in statuses.items() if code >= 500),
        # the response, its status, content type or headers disagree with the schema
        "schema_violations": sum(n for title, n in failures.items()
                                 if "violates schema" in title or "Undocumented" in title),
        "statuses": dict(sorted(statuses.items())),
        "failures": dict(failures),
    }


def stack_logs(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("daphne-*.log"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None)
    # One worker: hypothesis is not thread-safe on Python 3.11 (its lambda descriptions call
    # ast.parse, which fails with "AST constructor recursion depth mismatch" in two threads).
    parser.add_argument("--workers", default="1")
    parser.add_argument("--report-dir", default=None, help="Keep the reports here.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tf-fuzz-") as tmp:
        workdir = Path(tmp)
        reports = Path(args.report_dir).resolve() if args.report_dir else workdir / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        stack = LiveStack.create(workdir)
        try:
            stack.create_user("fuzz-admin", "admin")
            key = stack.manage("apikey", "create", "--scopes", "runs:read,runs:write,ingest,worker",
                               "--user", "fuzz-admin").stdout.strip().splitlines()[-1].strip()
            url = stack.server().url
            ids = seed(stack, url, key)
            (workdir / "schemathesis.toml").write_text(config(ids))
            command = [
                SCHEMATHESIS, "--config-file", str(workdir / "schemathesis.toml"), "run",
                f"{url}/api/schema/", "--url", url, "--checks", "all",
                "--max-examples", str(args.max_examples), "--workers", args.workers,
                "--header", f"Authorization: Bearer {key}",
                "--report", "har,junit", "--report-dir", str(reports),
                "--output-truncate", "false", "--suppress-health-check", "all",
            ]
            if args.seed is not None:
                command += ["--seed", str(args.seed)]
            started = time.monotonic()
            result = subprocess.run(command, cwd=workdir, env={**os.environ, "NO_COLOR": "1"})
            figures = summary(next(reports.glob("har-*.json"), reports / "none"),
                              next(reports.glob("junit-*.xml"), reports / "none"))
            figures["seconds"] = round(time.monotonic() - started)
            print(json.dumps(figures, indent=2))
            log_lines = stack.servers["web"].log().splitlines()
            server_errors = [i for i, line in enumerate(log_lines)
                             if "Traceback" in line or "unhandled error" in line]
            if server_errors:
                print(f"server log: {len(server_errors)} unhandled errors", file=sys.stderr)
                for i in server_errors[:5]:  # what they were, for whoever reads CI's output
                    print("\n".join(log_lines[max(0, i - 2):i + 25]), file=sys.stderr)
            return result.returncode or (1 if figures["server_errors"] else 0)
        finally:
            stack.close()
            for server in stack_logs(workdir):
                (reports / server.name).write_bytes(server.read_bytes())


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
