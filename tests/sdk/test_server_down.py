"""The SDK never raises into the agent and never holds it for long when the server is away:
nothing listening at all, a server stopped in the middle of a run, and a server that comes back
(the events queued meanwhile arrive, in order)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import tracefoundry_sdk as tf

from tests.livestack import ROOT, free_port

GENEROUS_S = 30  # "bounded": the defaults cost a few seconds; only a hang would pass this


def _agent(run_events: int = 3) -> str:
    with tf.trace_agent_run("agent.offline", name="offline", input={"n": 1}) as run:
        for i in range(run_events):
            with tf.llm_call("gpt-4o", prompt=f"question {i}") as call:
                call.record_response(text=f"answer {i}", input_tokens=3, output_tokens=4)
            with tf.tool_call("search", args={"q": i}) as tool:
                tool.record_result(["hit"])
            run.note(f"step {i}")
        run.set_output("finished anyway")
    return "the agent's own value"


@pytest.fixture
def reconfigure_after(sdk_server):
    yield
    sdk_server.configure()


def test_nothing_listening_the_agent_runs_untracked(reconfigure_after, caplog):
    caplog.set_level(logging.WARNING, logger="tracefoundry_sdk")
    tf.configure(api_url=f"http://127.0.0.1:{free_port()}", api_key="tf_unused")  # defaults
    started = time.monotonic()
    assert _agent() == "the agent's own value"
    assert time.monotonic() - started < GENEROUS_S
    assert "could not create the agent.offline run" in caplog.text


def test_a_bad_url_or_key_costs_a_warning_not_an_exception(sdk_server, reconfigure_after,
                                                           caplog):
    caplog.set_level(logging.WARNING, logger="tracefoundry_sdk")
    tf.configure(api_url="not a url at all", api_key="tf_x")
    assert _agent(1) == "the agent's own value"
    tf.configure(api_url=sdk_server.url, api_key="tf_wrong_key")
    assert _agent(1) == "the agent's own value"
    assert "HTTP 401" in caplog.text


def test_a_server_stopped_mid_run_costs_warnings_and_a_bounded_wait(live_stack, sdk_server,
                                                                     reconfigure_after, caplog):
    caplog.set_level(logging.WARNING, logger="tracefoundry_sdk")
    server = live_stack.server(name="sdk-stopped")
    tf.configure(api_url=server.url, api_key=sdk_server.key)  # the default timeouts
    started = time.monotonic()
    with tf.trace_agent_run("agent.interrupted") as run:
        run.note("the server is up")
        assert tf.flush(10)
        server.process.terminate()
        server.process.wait(timeout=30)
        for i in range(50):
            with tf.tool_call("search", args={"q": i}) as tool:
                tool.record_result(i)
        run.set_output("done")
    assert time.monotonic() - started < GENEROUS_S
    assert run.run_id is not None
    assert "could not finish run" in caplog.text
    assert "run events not sent yet, will retry" in caplog.text
    assert tf.stats()["pending"] > 0


def _serve(live_stack, port: int) -> subprocess.Popen:
    """A server process on ``port`` (the one a stopped server had)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tracefoundry.server", "-b", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=live_stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not come back")


def test_events_queued_while_the_server_is_down_arrive_when_it_returns(live_stack, sdk_server,
                                                                        reconfigure_after):
    server = live_stack.server(name="sdk-outage")
    tf.configure(api_url=server.url, api_key=sdk_server.key, batch_interval_s=0.05,
                 flush_timeout_s=0.5)
    with tf.trace_agent_run("agent.outage") as run:
        run.note("before")
        assert tf.flush(10)
        server.process.terminate()
        server.process.wait(timeout=30)
        for i in range(5):
            run.note(f"during {i}")
        assert not tf.flush(0.5)
        back = _serve(live_stack, server.port)
    try:
        assert tf.flush(60)  # the sender's backoff is at most 30 s
        events = sdk_server.stack.request(
            "GET", f"{server.url}/api/v1/runs/{run.run_id}/events?types=note",
            key=sdk_server.key)[1]["events"]
        assert [e["payload"]["text"] for e in events] == \
            ["before"] + [f"during {i}" for i in range(5)]
    finally:
        back.terminate()
        back.wait(timeout=30)


def test_a_full_queue_drops_the_oldest_events_and_counts_them(reconfigure_after, caplog):
    caplog.set_level(logging.WARNING, logger="tracefoundry_sdk")
    tf.configure(api_url=f"http://127.0.0.1:{free_port()}", api_key="tf_unused",
                 queue_max_events=5, batch_interval_s=60, flush_timeout_s=0.5)
    with tf.trace_agent_run("agent.flood", run_id="run_0000000000000000000000NONE") as run:
        for i in range(20):
            run.note(f"note {i}")
        assert tf.stats()["dropped"] == 15
        assert tf.stats()["pending"] == 5
    assert "the event queue is full" in caplog.text
