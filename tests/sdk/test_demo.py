"""The demo agent (``python -m tracefoundry_sdk.demo``) against live servers: every scenario
with the run outcome, trace summary and paired events it promises; the same seed giving the
same traces on a fresh database, another seed other ids; sending again adding no run; and the
exit status when the server is missing."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections import Counter

import pytest

from tests.livestack import LiveStack, free_port
from tests.sdk.conftest import SDK_SRC

SUCCEEDS = {"happy_path", "slow_tool", "retry_storm", "patch_and_test"}


def demo(url: str, key: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OTEL_", "TRACEFOUNDRY_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tracefoundry_sdk.demo", *args], capture_output=True, text=True,
        timeout=300, env={**clean, "PYTHONPATH": str(SDK_SRC), "TRACEFOUNDRY_API_URL": url,
                          "TRACEFOUNDRY_API_KEY": key})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def sent(result: subprocess.CompletedProcess) -> list[dict]:
    return json.loads(result.stdout)["traces"]


class Project:
    """A project of its own on a live stack, and a key for it (what the demo needs, plus
    runs:read for the test)."""

    def __init__(self, stack: LiveStack, slug: str) -> None:
        stack.shell("from runs.models import Project\n"
                    f"Project.objects.get_or_create(slug={slug!r}, defaults={{'name': {slug!r}}})")
        self.stack = stack
        self.slug = slug
        self.url = stack.server().url
        self.key = stack.api_key("runs:read,runs:write,ingest", project=slug)

    def get(self, path: str) -> dict:
        status, body = self.stack.request("GET", f"{self.url}{path}", key=self.key)
        assert status == 200, (path, status, body)
        return body

    def traces(self) -> dict[str, dict]:
        return {t["trace_id"]: t
                for t in self.get(f"/api/v1/traces?project={self.slug}&limit=100")["results"]}

    def runs(self) -> dict[str, dict]:
        return {r["id"]: r for r in self.get(f"/api/v1/runs?project={self.slug}&limit=100")
                ["results"]}

    def spans(self, trace_id: str) -> list[dict]:
        return self.get(f"/api/v1/traces/{trace_id}/spans")["spans"]

    def events(self, run_id: str) -> list[dict]:
        return [e for e in self.get(f"/api/v1/runs/{run_id}/events?limit=1000")["events"]
                if not e["type"].startswith(("run.", "step."))]


def shape(project: Project, traces: list[dict]) -> list[tuple]:
    """What must not change from one database to another: per trace, its id and its spans' ids,
    parents and names in order (the LLM and tool call sequence), and its run events' types."""
    return [(t["trace_id"],
             [(s["span_id"], s["parent_span_id"], s["name"])
              for s in project.spans(t["trace_id"])],
             [(e["type"], e["correlation_id"] if e["type"].startswith(("llm_", "tool_")) else "")
              for e in project.events(t["run_id"])])
            for t in traces]


@pytest.fixture(scope="module")
def project(live_stack) -> Project:
    return Project(live_stack, "demo-load")


@pytest.fixture(scope="module")
def seven(project) -> list[dict]:
    """Twelve traces of seed 7: each scenario twice."""
    return sent(demo(project.url, project.key, "--count", "12", "--seed", "7", "--json"))


def test_twelve_traces_cover_every_scenario_as_it_says(project, seven):
    assert Counter(t["scenario"] for t in seven) == {
        "happy_path": 2, "slow_tool": 2, "retry_storm": 2, "llm_error": 2, "timeout": 2,
        "patch_and_test": 2}
    traces = project.traces()
    assert set(traces) == {t["trace_id"] for t in seven}
    assert set(project.runs()) == {t["run_id"] for t in seven}
    runs = {t["run_id"]: project.get(f"/api/v1/runs/{t['run_id']}") for t in seven}
    llm_errors = iter([("succeeded", 1), ("failed", 2)])  # recovered, then not
    for sent_trace in seven:
        scenario = sent_trace["scenario"]
        summary, run = traces[sent_trace["trace_id"]], runs[sent_trace["run_id"]]
        assert summary["run_id"] == run["id"] and run["trace_id"] == summary["trace_id"]
        assert (summary["service_name"], summary["environment"]) == \
            ("tracefoundry-demo-agent", "demo")
        assert summary["root_span_name"] == f"invoke_agent {run['name']}"
        assert run["kind"] == "agent.session" and run["input"]["scenario"] == scenario
        errors = summary["error_count"]
        if scenario in SUCCEEDS:
            assert (run["state"], sent_trace["outcome"]) == ("succeeded", "succeeded")
            assert summary["has_timeout"] is False
            assert summary["has_retry"] is (scenario == "retry_storm")
            assert errors == 0 and summary["status"] == "ok"
            assert run["output"]["answer"]
        elif scenario == "timeout":
            assert run["state"] == "failed" and run["error"].startswith(
                "tracefoundry_sdk.demo.agent.ToolTimeout: sql_query did not answer")
            assert summary["has_timeout"] is True
            assert errors == 3  # both tool calls and the run
        else:
            state, llm_failures = next(llm_errors)
            assert run["state"] == sent_trace["outcome"] == state
            assert summary["has_timeout"] is False
            assert errors == llm_failures + (state == "failed")
        assert summary["input_tokens"] > 0 and summary["models"] and summary["tools"]

    # Every run's LLM and tool events come in pairs, one per span of its trace.
    for sent_trace in seven:
        events = project.events(sent_trace["run_id"])
        spans = {s["span_id"]: s for s in project.spans(sent_trace["trace_id"])}
        pairs = Counter()
        for e in events:
            if e["type"] in ("llm_request", "llm_response", "tool_call", "tool_result"):
                pairs[e["correlation_id"]] += 1
                kind = "chat " if e["type"].startswith("llm_") else "execute_tool "
                assert spans[e["correlation_id"]]["name"].startswith(kind)
        assert pairs and set(pairs.values()) == {2}
        assert len(pairs) == len(spans) - 1  # every span but the root

    by_scenario: dict[str, list[dict]] = {}
    for sent_trace in seven:
        by_scenario.setdefault(sent_trace["scenario"], []).append(sent_trace)
    for patch in by_scenario["patch_and_test"]:
        types = [e["type"] for e in project.events(patch["run_id"])]
        results = [e["payload"] for e in project.events(patch["run_id"])
                   if e["type"] == "test_result"]
        assert types.count("patch_proposed") == types.count("patch_applied") >= 2
        assert types.count("test_started") == len(results) == types.count("patch_applied")
        assert results[0]["failed"] > 0 and results[-1]["failed"] == 0
    for slow in by_scenario["slow_tool"]:
        logs = [e for e in project.events(slow["run_id"]) if e["type"] == "log"]
        assert logs and all(e["level"] == "warn" for e in logs)
    recovered = project.events(by_scenario["llm_error"][0]["run_id"])
    assert [e["payload"]["recovery"] for e in recovered if e["type"] == "error"] == \
        ["truncated prompt"]

    # Long prompts became payload blobs; the data does not repeat from trace to trace.
    prompts = [(e["payload"]["model"], e["payload"]["prompt"]) for t in seven
               for e in project.events(t["run_id"]) if e["type"] == "llm_request"]
    assert any('"payload_ref"' in json.dumps(p) for p in prompts)
    patch = by_scenario["patch_and_test"][0]["trace_id"]
    llm_spans = [project.get(f"/api/v1/spans/{s['span_id']}?trace_id={patch}")
                 for s in project.spans(patch) if s["name"].startswith("chat ")]
    assert llm_spans[-1]["attributes"]["tracefoundry.payload.prompt_ref"].startswith("sha256:")
    assert len({json.dumps(p) for p in prompts}) == len(prompts)
    answers = [runs[t["run_id"]]["output"]["answer"] for t in seven
               if runs[t["run_id"]]["state"] == "succeeded"]
    assert len(set(answers)) == len(answers) == 9
    assert len({traces[t["trace_id"]]["input_tokens"] for t in seven}) >= 10


def test_the_same_seed_gives_the_same_traces_on_a_fresh_database(project, seven, tmp_path):
    other = LiveStack.create(tmp_path)
    try:
        fresh = Project(other, "demo-load")
        again = sent(demo(fresh.url, fresh.key, "--count", "12", "--seed", "7", "--json"))
        assert [(t["trace_id"], t["scenario"], t["outcome"]) for t in again] == \
            [(t["trace_id"], t["scenario"], t["outcome"]) for t in seven]
        assert shape(fresh, again) == shape(project, seven)
    finally:
        other.close()


def test_another_seed_gives_other_ids(live_stack, seven, project):
    other = Project(live_stack, "demo-load-8")
    eight = sent(demo(other.url, other.key, "--count", "6", "--seed", "8", "--json"))
    assert [t["scenario"] for t in eight] == [t["scenario"] for t in seven[:6]]
    assert not {t["trace_id"] for t in eight} & {t["trace_id"] for t in seven}
    spans_7 = {s["span_id"] for t in seven[:6] for s in project.spans(t["trace_id"])}
    spans_8 = {s["span_id"] for t in eight for s in other.spans(t["trace_id"])}
    assert len(spans_8) > 6 and not spans_7 & spans_8


def test_sending_the_same_seed_again_adds_no_run(project, seven):
    before = {t["run_id"]: len(project.events(t["run_id"])) for t in seven}
    result = demo(project.url, project.key, "--count", "12", "--seed", "7", "--json")
    again = sent(result)
    assert [t["run_id"] for t in again] == [t["run_id"] for t in seven]
    assert all(t["resent"] for t in again)
    assert "already" not in result.stderr  # counted in the summary instead
    assert set(project.runs()) == set(before) and len(project.traces()) == 12
    assert {t["run_id"]: len(project.events(t["run_id"])) for t in seven} == before


def test_one_scenario_only(live_stack):
    only = Project(live_stack, "demo-timeouts")
    traces = sent(demo(only.url, only.key, "--count", "2", "--seed", "3", "--scenario",
                       "timeout", "--json"))
    assert [(t["scenario"], t["outcome"]) for t in traces] == [("timeout", "failed")] * 2
    assert all(s["has_timeout"] for s in only.traces().values())


def test_quiet_in_a_script_and_a_progress_line_on_a_terminal(live_stack):
    quiet = Project(live_stack, "demo-quiet")
    result = demo(quiet.url, quiet.key, "--count", "1", "--seed", "5")
    assert (result.stdout, result.stderr) == ("", "")

    main, terminal = pty.openpty()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OTEL_", "TRACEFOUNDRY_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "tracefoundry_sdk.demo", "--count", "2", "--seed", "5"],
        stdout=subprocess.PIPE, stderr=terminal,
        env={**clean, "PYTHONPATH": str(SDK_SRC), "TRACEFOUNDRY_API_URL": quiet.url,
             "TRACEFOUNDRY_API_KEY": quiet.key})
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert process.wait(timeout=120) == 0
    text = shown.decode()
    assert "2/2 slow_tool" in text
    assert "2 demo traces (seed 5) sent to" in text and "1 already recorded (sent before)" in text


def test_without_a_server_the_demo_says_so_and_fails(tmp_path):
    missing = demo("", "", "--count", "1", check=False)
    assert missing.returncode == 2 and "TRACEFOUNDRY_API_URL" in missing.stderr
    down = demo(f"http://127.0.0.1:{free_port()}", "tf_nothing", "--count", "1", check=False)
    assert down.returncode == 1 and "runs could not be created" in down.stderr
    bad = demo("http://127.0.0.1:1", "k", "--count", "0", check=False)
    assert bad.returncode == 2 and "--count" in bad.stderr
