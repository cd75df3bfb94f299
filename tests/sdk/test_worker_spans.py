"""The worker's run spans and the SDK inside job code (tracefoundry/sdk_bridge.py): a worker in
this process (``run_once``) runs jobs that use ``ctx.llm_call``/``ctx.tool_call``; what it
recorded is read back through the API. The spans go into the database from the
BatchSpanProcessor (``run_once`` flushes it at the end), the events from the SDK's sender
thread: both on connections of their own, so the tests commit."""

from __future__ import annotations

import threading

import pytest
import tracefoundry_sdk as tf  # tests/sdk/conftest.py puts this checkout's SDK first

from runs import services
from runs.jobs import JobContext, JobError, job
from runs.models import Run
from runs.worker import Worker, WorkerConfig
from tests.queue.conftest import wait_until
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SECRET = "ghp_" + "Wk7q" * 9  # a GitHub token: the redactor knows its shape
PROMPT = [{"role": "user", "content": "What is six times seven?"}]


@job("test.sdk_helpers")
def sdk_helpers_job(ctx: JobContext) -> dict:
    prompt = ctx.input.get("prompt", PROMPT)
    with ctx.llm_call("gpt-4o-mini", provider="openai", prompt=prompt) as call:
        call.record_response(text="42", input_tokens=12, output_tokens=3,
                             finish_reasons=["stop"])
    with ctx.tool_call("calculator", args={"expression": "6*7"}) as tool:
        tool.record_result({"value": 42})
    ctx.note("answered")
    return {"answer": 42}


@job("test.sdk_fails")
def sdk_fails_job(ctx: JobContext) -> None:
    with ctx.tool_call("flaky_api", args={"id": 7}):
        raise JobError("the flaky API said no", retryable=False)


@job("test.agent")
def agent_kind_job(ctx: JobContext) -> str:
    return "done"


@pytest.fixture
def run_worker():
    """Run one queued run in a worker of this process; the SDK is shut down afterwards."""
    def run(*, spans: bool = True) -> Worker:
        worker = Worker(WorkerConfig(worker_id="w-spans", listen=False, spans=spans,
                                     reaper_interval=3600))
        assert worker.run_once() == 1
        return worker

    yield run
    tf.shutdown(5)


def enqueue(project, kind: str, input=None, **options):
    return services.run_enqueue(project=project, kind=kind, input=input or {}, **options)[0]


def get(client, path: str) -> dict:
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.status_code, resp.content)
    return resp.json()


def spans_of(client, trace_id: str) -> dict[str, dict]:
    """The trace's spans by name, each in full (attributes, events)."""
    listing = get(client, f"/api/v1/traces/{trace_id}/spans")["spans"]
    full = [get(client, f"/api/v1/spans/{s['span_id']}?trace_id={trace_id}") for s in listing]
    return {s["name"]: s for s in full}


def test_job_helpers_make_spans_under_the_run_span_and_the_run_events(
        project, run_worker, engineer_client):
    run = enqueue(project, "test.sdk_helpers", name="six times seven")
    run_worker()

    detail = get(engineer_client, f"/api/v1/runs/{run.id}")
    assert detail["state"] == "succeeded" and detail["output"] == {"answer": 42}
    trace_id = detail["trace_id"]
    assert trace_id, "the run links its trace"
    trace = get(engineer_client, f"/api/v1/traces/{trace_id}")
    assert trace["run_id"] == run.id and trace["root_span_name"] == "job test.sdk_helpers"
    assert trace["models"] == ["gpt-4o-mini"] and trace["tools"] == ["calculator"]
    assert trace["input_tokens"] == 12 and trace["output_tokens"] == 3

    spans = spans_of(engineer_client, trace_id)
    root = spans["job test.sdk_helpers"]
    assert root["parent_span_id"] == "" and root["status_code"] == "ok"
    assert root["kind"] == "consumer" and root["run_id"] == run.id
    assert root["attributes"]["tracefoundry.run_id"] == run.id
    assert root["attributes"]["tracefoundry.run.kind"] == "test.sdk_helpers"
    assert root["attributes"]["tracefoundry.run.attempt"] == 1
    assert root["attributes"]["tracefoundry.worker.id"] == "w-spans"
    assert root["service_name"] == "tracefoundry-worker"
    # ctx.agent: the SDK's attach-mode span under the run span, the calls under it.
    agent = spans["invoke_agent six times seven"]
    assert agent["parent_span_id"] == root["span_id"] and agent["span_type"] == "agent"
    llm = spans["chat gpt-4o-mini"]
    assert llm["parent_span_id"] == agent["span_id"] and llm["span_type"] == "llm"
    assert (llm["model"], llm["input_tokens"], llm["output_tokens"]) == ("gpt-4o-mini", 12, 3)
    assert llm["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    tool = spans["execute_tool calculator"]
    assert tool["parent_span_id"] == agent["span_id"]
    assert (tool["span_type"], tool["tool_name"]) == ("tool", "calculator")
    assert {s["run_id"] for s in spans.values()} == {run.id}

    events = get(engineer_client, f"/api/v1/runs/{run.id}/events?limit=1000")["events"]
    types = [e["type"] for e in events]
    assert types == ["run.created", "run.started", "llm_request", "llm_response", "tool_call",
                     "tool_result", "note", "run.succeeded"]
    by_type = {e["type"]: e for e in events}
    assert by_type["llm_request"]["correlation_id"] == by_type["llm_response"]["correlation_id"] \
        == llm["span_id"]
    assert by_type["tool_call"]["correlation_id"] == by_type["tool_result"]["correlation_id"] \
        == tool["span_id"]
    assert by_type["llm_response"]["payload"]["output_tokens"] == 3
    assert by_type["tool_result"]["payload"]["result"] == {"value": 42}
    assert {e["source"] for e in events if not e["type"].startswith("run.")} == {"worker"}


def test_a_failing_job_gives_an_error_span(project, run_worker, engineer_client):
    run = enqueue(project, "test.sdk_fails", max_attempts=1)
    run_worker()

    detail = get(engineer_client, f"/api/v1/runs/{run.id}")
    assert detail["state"] == "failed" and detail["trace_id"]
    trace = get(engineer_client, f"/api/v1/traces/{detail['trace_id']}")
    assert trace["status"] == "error" and trace["run_id"] == run.id
    spans = spans_of(engineer_client, detail["trace_id"])
    root = spans["job test.sdk_fails"]
    assert root["status_code"] == "error"
    assert root["status_message"] == "JobError: the flaky API said no"
    assert root["attributes"]["tracefoundry.run.outcome"] == "failed"
    assert [e["name"] for e in root["events"]] == ["exception"]
    assert root["events"][0]["attributes"]["exception.message"] == "the flaky API said no"
    tool = spans["execute_tool flaky_api"]
    assert tool["status_code"] == "error"
    events = get(engineer_client, f"/api/v1/runs/{run.id}/events?limit=1000")["events"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["level"] == "error" and result["payload"]["error"]["type"] == "JobError"


def test_agent_kinds_are_invoke_agent_spans_and_retries_share_the_trace(
        project, run_worker, engineer_client):
    trace_id = "5f" * 16
    run = enqueue(project, "test.agent", trace_id=trace_id)
    run_worker()

    detail = get(engineer_client, f"/api/v1/runs/{run.id}")
    assert detail["state"] == "succeeded" and detail["trace_id"] == trace_id
    spans = spans_of(engineer_client, trace_id)
    root = spans["invoke_agent test.agent"]
    assert root["span_type"] == "agent" and root["parent_span_id"] == ""
    assert root["attributes"]["gen_ai.agent.name"] == "test.agent"
    assert get(engineer_client, f"/api/v1/traces/{trace_id}")["run_id"] == run.id


def test_worker_spans_off_no_spans_but_the_events(project, run_worker, engineer_client):
    run = enqueue(project, "test.sdk_helpers")
    run_worker(spans=False)

    detail = get(engineer_client, f"/api/v1/runs/{run.id}")
    assert detail["state"] == "succeeded" and detail["trace_id"] is None
    assert not Trace.objects.exists() and not Span.objects.exists()
    events = get(engineer_client, f"/api/v1/runs/{run.id}/events?limit=1000")["events"]
    assert [e["type"] for e in events][2:-1] == ["llm_request", "llm_response", "tool_call",
                                                 "tool_result", "note"]


def test_spans_go_through_redaction(project, run_worker, engineer_client):
    prompt = [{"role": "user", "content": f"deploy with token {SECRET} please"}]
    run = enqueue(project, "test.sdk_helpers", {"prompt": prompt})
    run_worker()

    trace_id = get(engineer_client, f"/api/v1/runs/{run.id}")["trace_id"]
    llm = spans_of(engineer_client, trace_id)["chat gpt-4o-mini"]
    stored = llm["attributes"]["gen_ai.prompt"]
    assert "deploy with token" in str(stored) and SECRET not in str(stored)
    assert not Span.objects.filter(attributes__icontains=SECRET[:12]).exists()
    events = get(engineer_client, f"/api/v1/runs/{run.id}/events?limit=1000")["events"]
    request = next(e for e in events if e["type"] == "llm_request")
    assert SECRET not in str(request["payload"])


def test_the_worker_loop_stores_its_spans_once_idle(project):
    """Without a flush: the loop's spans are stored when the worker has nothing in hand."""
    worker = Worker(WorkerConfig(worker_id="w-loop", listen=False, spans=True, poll_seconds=0.05,
                                 heartbeat_seconds=0.05, reaper_interval=3600))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        run = enqueue(project, "test.agent")
        trace_id = wait_until(lambda: Run.objects.get(pk=run.pk).trace_id, what="the run's trace")
        assert Trace.objects.get(trace_id=trace_id).root_span_name == "invoke_agent test.agent"
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
