"""An agent instrumented with the SDK, against a live server: the run and its lifecycle, its
events in order with paired correlation ids, the trace linked both ways with GenAI fields, long
prompts in payload blobs, failures, decorators, attaching to a run, and payload opt-out."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import urllib.request

import pytest
import tracefoundry_sdk as tf

from tests.sdk.conftest import run_async

LONG_PROMPT = "Summarise this file:\n" + "".join(
    f"line {i}: {secrets.token_hex(8)}\n" for i in range(800))  # ~26 KB: over the 8 KB limit


def _run_agent(task: str) -> tf.AgentRun:
    with tf.trace_agent_run("agent.session", name="fix the parser",
                            input={"task": task}) as run:
        run.note("planning")
        with tf.llm_call("gpt-4o", provider="openai", prompt=LONG_PROMPT,
                         request_params={"temperature": 0.2, "max_tokens": 256}) as call:
            call.retry(1, reason="rate limited")
            call.record_response(text="Open parser.py and handle empty input.",
                                 response_model="gpt-4o-2024-08-06", input_tokens=812,
                                 output_tokens=64, finish_reasons=["stop"])
        with tf.tool_call("read_file", args={"path": "parser.py"}) as tool:
            tool.record_result("def parse(s): ...")
        run.log("reading parser.py", stream="stderr", level="warning")
        run.progress(1, 3, message="planned")
        run.patch_proposed("--- a/parser.py\n+++ b/parser.py\n", files=["parser.py"])
        run.patch_applied(["parser.py"])
        run.test_started("pytest -q")
        run.test_result(passed=10, failed=0, skipped=1, output="10 passed, 1 skipped")
        run.error("flaky network", attempt=2)
        run.set_output({"patch": "parser.py", "tests": "10 passed"})
    return run


def test_a_traced_run_gives_a_run_its_events_and_a_linked_trace(sdk):
    sdk.configure(service_name="sdk-test-agent", environment="ci")
    task = secrets.token_hex(4)
    run = _run_agent(task)
    assert tf.flush(10)
    assert run.run_id and run.trace_id

    stored = sdk.get(f"/api/v1/runs/{run.run_id}")
    assert (stored["state"], stored["kind"], stored["name"]) == \
        ("succeeded", "agent.session", "fix the parser")
    assert stored["input"] == {"task": task}
    assert stored["output"] == {"patch": "parser.py", "tests": "10 passed"}
    assert stored["trace_id"] == run.trace_id

    events = sdk.agent_events(run.run_id)
    assert [e["type"] for e in events] == [
        "note", "llm_request", "llm_response", "tool_call", "tool_result", "log", "progress",
        "patch_proposed", "patch_applied", "test_started", "test_result", "error"]
    by_type = {e["type"]: e for e in events}
    llm_pair = by_type["llm_request"]["correlation_id"], by_type["llm_response"]["correlation_id"]
    tool_pair = by_type["tool_call"]["correlation_id"], by_type["tool_result"]["correlation_id"]
    assert llm_pair[0] == llm_pair[1] and tool_pair[0] == tool_pair[1]
    assert llm_pair[0] != tool_pair[0]
    response = by_type["llm_response"]["payload"]
    assert (response["model"], response["input_tokens"], response["output_tokens"],
            response["finish_reasons"], response["retries"]) == \
        ("gpt-4o-2024-08-06", 812, 64, ["stop"], 1)
    assert response["text"] == "Open parser.py and handle empty input."
    assert by_type["tool_call"]["payload"]["args"] == {"path": "parser.py"}
    assert by_type["tool_result"]["payload"]["result"] == "def parse(s): ..."
    assert by_type["log"]["payload"] == {"stream": "stderr", "text": "reading parser.py"}
    assert by_type["log"]["level"] == "warn"
    assert by_type["progress"]["payload"] == {"completed": 1, "total": 3, "message": "planned"}
    assert by_type["test_result"]["payload"]["passed"] == 10
    assert by_type["error"]["level"] == "error"
    assert by_type["error"]["payload"] == {"message": "flaky network", "attempt": 2}
    # The long prompt went into a payload blob: the event keeps a preview and the reference.
    prompt = by_type["llm_request"]["payload"]["prompt"]
    assert prompt["truncated"] is True and prompt["payload_ref"].startswith("sha256:")

    trace = sdk.get(f"/api/v1/traces/{run.trace_id}")
    assert trace["run_id"] == run.run_id
    assert trace["links"]["run"] == f"/api/v1/runs/{run.run_id}"
    assert trace["root_span_name"] == "invoke_agent fix the parser"
    assert (trace["service_name"], trace["environment"]) == ("sdk-test-agent", "ci")
    assert trace["models"] == ["gpt-4o-2024-08-06"] and trace["tools"] == ["read_file"]
    assert (trace["input_tokens"], trace["output_tokens"]) == (812, 64)
    assert trace["has_retry"] is True and trace["span_count"] == 3

    spans = {s["span_type"]: s for s in sdk.spans(run.trace_id)}
    assert set(spans) == {"agent", "llm", "tool"}
    assert all(s["run_id"] == run.run_id for s in spans.values())
    llm, tool, agent = spans["llm"], spans["tool"], spans["agent"]
    assert (llm["name"], llm["kind"], llm["model"], llm["input_tokens"], llm["output_tokens"],
            llm["is_retry"]) == ("chat gpt-4o", "client", "gpt-4o-2024-08-06", 812, 64, True)
    assert llm["parent_span_id"] == agent["span_id"] == tool["parent_span_id"]
    attributes = llm["attributes"]
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.completion"] == "Open parser.py and handle empty input."
    assert format(int(llm["span_id"], 16), "016x") == by_type["llm_request"]["correlation_id"]
    assert [e["name"] for e in llm["events"]] == ["retry"]
    assert (tool["name"], tool["tool_name"]) == ("execute_tool read_file", "read_file")
    assert json.loads(tool["attributes"]["gen_ai.tool.call.arguments"]) == {"path": "parser.py"}
    assert tool["attributes"]["gen_ai.tool.call.result"] == "def parse(s): ..."
    assert agent["status_code"] == "ok"
    # The long prompt on the span: a preview and a blob with all of it, for an engineer.
    ref = attributes["tracefoundry.payload.prompt_ref"]
    assert len(attributes["gen_ai.prompt"]) < len(LONG_PROMPT)
    assert ref == prompt["payload_ref"]  # one blob, content-addressed, for span and event
    req = urllib.request.Request(f"{sdk.url}/api/v1/payloads/{ref}",
                                 headers={"Authorization": f"Bearer {sdk.engineer_key}"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        assert answer.read().decode() == LONG_PROMPT


def test_a_failing_agent_fails_its_run_and_gets_its_exception_back(sdk):
    error = ValueError("the parser exploded")
    with (pytest.raises(ValueError) as raised, tf.trace_agent_run("agent.session") as run,
          tf.tool_call("run_tests", args={"command": "pytest"})):
        raise error
    assert raised.value is error
    assert tf.flush(10)

    stored = sdk.get(f"/api/v1/runs/{run.run_id}")
    assert stored["state"] == "failed"
    # The type and message first (what lists show), then the last frames of the stack.
    first_line, stack = stored["error"].split("\n", 1)
    assert first_line == "ValueError: the parser exploded"
    assert stack.startswith("Traceback (most recent call last):")
    assert "raise error" in stack
    tool_result = next(e for e in sdk.agent_events(run.run_id) if e["type"] == "tool_result")
    assert tool_result["level"] == "error"
    assert tool_result["payload"]["error"] == {"type": "ValueError",
                                               "message": "the parser exploded"}
    spans = {s["span_type"]: s for s in sdk.spans(run.trace_id)}
    assert spans["agent"]["status_code"] == spans["tool"]["status_code"] == "error"
    assert spans["agent"]["status_message"] == "ValueError: the parser exploded"
    assert [e["name"] for e in spans["agent"]["events"]] == ["exception"]
    assert sdk.get(f"/api/v1/traces/{run.trace_id}")["status"] == "error"


def test_decorators_on_sync_and_async_functions(sdk):
    @tf.llm_call("claude-sonnet", provider="anthropic")
    def ask(question: str) -> str:
        tf.current_call().record_response(text=f"answer to {question}", input_tokens=5,
                                          output_tokens=7)
        return "ignored: the call recorded its own response"

    @tf.tool_call("add")
    def add(a: int, b: int) -> int:
        return a + b

    @tf.tool_call("fetch")
    async def fetch(url: str) -> dict:
        await asyncio.sleep(0)
        return {"url": url, "status": 200}

    @tf.trace_agent_run("agent.sync", name="sync agent")
    def sync_agent(x: int) -> dict:
        return {"answer": ask("why"), "sum": add(x, 2)}

    @tf.trace_agent_run("agent.async")
    async def async_agent() -> str:
        fetched = await fetch("https://example.com")
        tf.current_run().note(f"fetched {fetched['status']}")
        return "done"

    assert sync_agent(40) == {"answer": "ignored: the call recorded its own response", "sum": 42}
    assert run_async(async_agent()) == "done"
    assert sync_agent.__name__ == "sync_agent"
    assert tf.flush(10)

    runs = sdk.get("/api/v1/runs?kind=agent.sync&limit=1")["results"] + \
        sdk.get("/api/v1/runs?kind=agent.async&limit=1")["results"]
    sync_run, async_run = (sdk.get(f"/api/v1/runs/{r['id']}") for r in runs)
    assert (sync_run["state"], sync_run["output"]) == \
        ("succeeded", {"answer": "ignored: the call recorded its own response", "sum": 42})
    assert (async_run["state"], async_run["output"]) == ("succeeded", "done")

    events = sdk.agent_events(sync_run["id"])
    assert [e["type"] for e in events] == ["llm_request", "llm_response", "tool_call",
                                           "tool_result"]
    assert events[0]["payload"]["prompt"] == {"question": "why"}
    assert events[1]["payload"]["text"] == "answer to why"
    assert events[2]["payload"]["args"] == {"a": 40, "b": 2}
    assert events[3]["payload"]["result"] == 42
    events = sdk.agent_events(async_run["id"])
    assert [(e["type"], e["payload"].get("result")) for e in events] == [
        ("tool_call", None), ("tool_result", {"url": "https://example.com", "status": 200}),
        ("note", None)]
    trace = sdk.get(f"/api/v1/traces/{async_run['trace_id']}")
    assert (trace["run_id"], trace["tools"], trace["span_count"]) == \
        (async_run["id"], ["fetch"], 2)
    trace = sdk.get(f"/api/v1/traces/{sync_run['trace_id']}")
    assert (trace["models"], trace["tools"], trace["total_tokens"]) == \
        (["claude-sonnet"], ["add"], 12)


def test_async_with_and_concurrent_runs_keep_their_own_events(sdk):
    async def agent(i: int) -> str:
        async with tf.trace_agent_run("agent.parallel", name=f"worker {i}") as run:
            for step in range(3):
                with tf.tool_call("step", args={"agent": i, "step": step}) as tool:
                    await asyncio.sleep(0.01)
                    tool.record_result(step)
            return run.run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(agent(i) for i in range(3)))

    run_ids = run_async(main())
    assert tf.flush(10)
    for i, run_id in enumerate(run_ids):
        events = sdk.agent_events(run_id)
        assert [(e["type"], e["payload"].get("args")) for e in events][::2] == [
            ("tool_call", {"agent": i, "step": step}) for step in range(3)]
        assert sdk.get(f"/api/v1/runs/{run_id}")["state"] == "succeeded"


def test_attaching_to_an_existing_run_leaves_its_lifecycle_to_its_owner(sdk):
    status, created = sdk.post("/api/v1/runs", {"kind": "worker.job", "input": {"n": 1}})
    assert status == 201
    run_id = created["id"]
    assert sdk.post(f"/api/v1/runs/{run_id}/start")[0] == 200

    with tf.trace_agent_run("worker.job", run_id=run_id) as run:
        with tf.llm_call("gpt-4o-mini", prompt="hello") as call:
            call.record_response(text="hi", input_tokens=1, output_tokens=1)
        run.progress(1, 1)
    assert run.run_id == run_id
    assert tf.flush(10)

    stored = sdk.get(f"/api/v1/runs/{run_id}")
    assert stored["state"] == "running"  # the worker holding it finishes it
    assert stored["trace_id"] == run.trace_id
    assert [e["type"] for e in sdk.agent_events(run_id)] == ["llm_request", "llm_response",
                                                             "progress"]
    assert sdk.get(f"/api/v1/traces/{run.trace_id}")["run_id"] == run_id

    # With manage_lifecycle=True the SDK drives it (here: finishes the running run).
    with tf.trace_agent_run("worker.job", run_id=run_id, manage_lifecycle=True) as run:
        run.set_output("finished by the SDK")
    stored = sdk.get(f"/api/v1/runs/{run_id}")
    assert (stored["state"], stored["output"]) == ("succeeded", "finished by the SDK")


def test_without_payload_capture_no_prompt_reaches_the_server(sdk):
    sdk.configure(capture_payloads=False)
    marker = "SECRETPROMPT" + secrets.token_hex(6)
    with tf.trace_agent_run("agent.private") as run:
        with tf.llm_call("gpt-4o", prompt=f"{marker} please", provider="openai") as call:
            call.record_response(text=f"{marker} answer", input_tokens=3, output_tokens=2)
        with tf.tool_call("lookup", args={"q": marker}) as tool:
            tool.record_result(f"{marker} result")
    assert tf.flush(10)

    events = sdk.agent_events(run.run_id)
    assert [e["type"] for e in events] == ["llm_request", "llm_response", "tool_call",
                                           "tool_result"]
    assert events[1]["payload"]["output_tokens"] == 2
    spans = sdk.spans(run.trace_id)
    assert {s["span_type"] for s in spans} == {"agent", "llm", "tool"}
    assert marker not in json.dumps(events) + json.dumps(spans)
    assert marker not in json.dumps(sdk.get(f"/api/v1/runs/{run.run_id}"))


def test_an_idempotency_key_gives_the_same_run(sdk):
    key = "sdk-" + secrets.token_hex(6)
    with tf.trace_agent_run("agent.once", idempotency_key=key) as first:
        first.set_output(1)
    with tf.trace_agent_run("agent.once", idempotency_key=key) as again:
        again.note("a repeat of a finished run records nothing more")
    assert again.run_id == first.run_id
    stored = sdk.get(f"/api/v1/runs/{first.run_id}")
    assert (stored["state"], stored["output"]) == ("succeeded", 1)


def test_events_the_server_refuses_do_not_take_the_good_ones_with_them(sdk, caplog):
    with tf.trace_agent_run("agent.mixed") as run:
        run.note("before")
        run.event("Not A Type", {"x": 1})  # the server's 400 names this one
        run.note("after")
        run.log(float("nan"))  # made JSON-safe by the SDK, not refused
        run.note("\ud800 lone surrogate")
    assert tf.flush(10)
    events = sdk.agent_events(run.run_id)
    assert [(e["type"], e["payload"]["text"]) for e in events] == [
        ("note", "before"), ("note", "after"), ("log", "nan"), ("note", "? lone surrogate")]
    assert sdk.get(f"/api/v1/runs/{run.run_id}")["state"] == "succeeded"
    assert "refused" in caplog.text


def test_shutdown_sends_what_is_queued_and_drops_what_comes_after(sdk):
    sdk.configure(batch_interval_s=60)  # nothing leaves on its own during the test
    with tf.trace_agent_run("agent.shutdown") as run:
        run.note("queued before shutdown")
        tf.shutdown(10)
        run.note("after shutdown")  # dropped, silently for the agent
    assert [e["payload"]["text"] for e in sdk.agent_events(run.run_id)] == \
        ["queued before shutdown"]
    assert sdk.get(f"/api/v1/runs/{run.run_id}")["state"] == "succeeded"
    sdk.configure()  # on again
    with tf.trace_agent_run("agent.shutdown") as again:
        again.note("back")
    assert [e["type"] for e in sdk.agent_events(again.run_id)] == ["note"]


def test_a_batch_of_long_prompts_over_the_request_cap_still_arrives(sdk):
    """60 prompts of 400,000 characters end in one span batch of ~24 MB, over the server's
    20 MiB OTLP cap: the SDK sends it as several requests."""
    sdk.configure(payload_max_chars=500_000)
    rng = random.Random(14)
    with tf.trace_agent_run("agent.long_prompts") as run:
        for i in range(60):
            prompt = f"{i} " + "".join(rng.choices("abcdefghij ", k=400_000))
            with tf.llm_call("gpt-4o", prompt=prompt) as call:
                call.record_response(text="ok", input_tokens=100_000, output_tokens=1)
    assert tf.flush(60)
    trace = sdk.get(f"/api/v1/traces/{run.trace_id}")
    assert trace["span_count"] == 61
    assert trace["input_tokens"] == 6_000_000


def test_a_timed_out_llm_call_the_agent_survives(sdk):
    with tf.trace_agent_run("agent.timeouts") as run:
        try:
            with tf.llm_call("gpt-4o", prompt="slow question") as call:
                call.timeout(2.5)
                raise TimeoutError("no answer in 2.5 s")
        except TimeoutError:
            run.note("fell back to the cache")
    assert tf.flush(10)
    response = next(e for e in sdk.agent_events(run.run_id) if e["type"] == "llm_response")
    assert response["level"] == "error"
    assert (response["payload"]["timed_out"], response["payload"]["error"]["type"]) == \
        (True, "TimeoutError")
    assert sdk.get(f"/api/v1/runs/{run.run_id}")["state"] == "succeeded"
    llm = next(s for s in sdk.spans(run.trace_id) if s["span_type"] == "llm")
    assert (llm["is_timeout"], llm["status_code"]) == (True, "error")
    assert [e["name"] for e in llm["events"]] == ["timeout", "exception"]
    trace = sdk.get(f"/api/v1/traces/{run.trace_id}")
    assert (trace["has_timeout"], trace["error_count"]) == (True, 1)
