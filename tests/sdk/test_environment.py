"""The SDK in a process of its own, as an agent script uses it: configured by environment
variables alone (``TRACEFOUNDRY_*`` and the standard ``OTEL_*``), flushed at interpreter exit,
and polite to an application that set up its own OpenTelemetry TracerProvider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.sdk.conftest import SDK_SRC

AGENT = textwrap.dedent("""
    import json
    import tracefoundry_sdk as tf

    with tf.trace_agent_run("agent.script", name="script agent") as run:
        with tf.llm_call("gpt-4o", provider="openai", prompt="hi") as call:
            call.record_response(text="hello", input_tokens=2, output_tokens=1)
        run.note("from a script")
        run.set_output("ok")
    print(json.dumps({"run_id": run.run_id, "trace_id": run.trace_id}))
    # No flush: the SDK's exit hook sends the spans still in the batch processor.
""")


def _script(code: str, env: dict[str, str], tmp_path) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OTEL_", "TRACEFOUNDRY_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**clean, "PYTHONPATH": str(SDK_SRC), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_environment_variables_alone_configure_runs_and_spans(sdk_server, tmp_path):
    out = _script(AGENT, {
        "TRACEFOUNDRY_API_URL": sdk_server.url + "/",
        "TRACEFOUNDRY_API_KEY": sdk_server.key,
        "OTEL_SERVICE_NAME": "script-agent",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,team=sdk",
    }, tmp_path)
    run = sdk_server.get(f"/api/v1/runs/{out['run_id']}")
    assert (run["state"], run["output"], run["trace_id"]) == ("succeeded", "ok", out["trace_id"])
    assert [e["type"] for e in sdk_server.agent_events(out["run_id"])] == \
        ["llm_request", "llm_response", "note"]
    trace = sdk_server.get(f"/api/v1/traces/{out['trace_id']}")
    assert (trace["service_name"], trace["environment"], trace["run_id"], trace["span_count"]) \
        == ("script-agent", "staging", out["run_id"], 2)
    root = trace["root_span"]
    assert root["resource"]["team"] == "sdk"


def test_the_standard_otlp_variables_send_spans_without_the_run_api(sdk_server, tmp_path):
    out = _script(AGENT, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sdk_server.url + "/otlp",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {sdk_server.key}",
        "OTEL_SERVICE_NAME": "otlp-only-agent",
    }, tmp_path)
    assert out["run_id"] is None
    trace = sdk_server.get(f"/api/v1/traces/{out['trace_id']}")
    assert (trace["service_name"], trace["run_id"], trace["models"]) == \
        ("otlp-only-agent", None, ["gpt-4o"])


def test_an_application_tracer_provider_is_kept(sdk_server, tmp_path):
    code = textwrap.dedent("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        import tracefoundry_sdk as tf
        tf.configure()
        with trace.get_tracer("app").start_as_current_span("handle request"):
            with tf.trace_agent_run("agent.embedded") as run:
                with tf.tool_call("search", args={"q": "x"}) as tool:
                    tool.record_result([1])
        spans = {s.name: s for s in exporter.get_finished_spans()}
        print(json.dumps({
            "kept": trace.get_tracer_provider() is provider,
            "names": sorted(spans),
            "parent": spans["invoke_agent agent.embedded"].parent.span_id
                      == spans["handle request"].context.span_id,
            "run_id": run.run_id,
            "span_run_id": spans["execute_tool search"].attributes.get("tracefoundry.run_id"),
        }))
    """)
    out = _script(code, {"TRACEFOUNDRY_API_URL": sdk_server.url,
                         "TRACEFOUNDRY_API_KEY": sdk_server.key}, tmp_path)
    assert out["kept"] is True and out["parent"] is True
    assert out["names"] == ["execute_tool search", "handle request",
                            "invoke_agent agent.embedded"]
    assert out["span_run_id"] == out["run_id"]
    assert sdk_server.get(f"/api/v1/runs/{out['run_id']}")["state"] == "succeeded"


def test_a_forked_child_sends_its_own_events(sdk_server, tmp_path):
    """A pre-fork server (gunicorn, multiprocessing) forks after the SDK started its threads:
    the child gets a sender of its own."""
    code = textwrap.dedent("""
        import json, os
        import tracefoundry_sdk as tf

        with tf.trace_agent_run("agent.parent") as run:
            run.note("parent")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            with tf.trace_agent_run("agent.child") as child:
                for i in range(3):
                    child.note(f"child {i}")
            tf.flush(10)
            os.write(write, child.run_id.encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(json.dumps({"parent": run.run_id, "child": os.read(read, 100).decode()}))
    """)
    out = _script(code, {"TRACEFOUNDRY_API_URL": sdk_server.url,
                         "TRACEFOUNDRY_API_KEY": sdk_server.key}, tmp_path)
    child = sdk_server.get(f"/api/v1/runs/{out['child']}")
    assert child["state"] == "succeeded"
    assert [e["payload"]["text"] for e in sdk_server.agent_events(out["child"])] == \
        ["child 0", "child 1", "child 2"]
    assert sdk_server.get(f"/api/v1/runs/{out['parent']}")["state"] == "succeeded"
