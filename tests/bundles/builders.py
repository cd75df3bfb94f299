"""Bundles written by hand, in the format of bundles/format.py, for the import and dry-replay
tests: a sound agent trace with its run and payloads (``agent_bundle``), and the pieces to
break it (``entries``/``zip_entries``/``with_manifest``).

The spans are what an export writes: large values already moved to blobs (a preview ending in
``…`` under the attribute, ``tracefoundry.payload.<role>_ref`` next to it), the blobs under
``payloads/<sha256>``; the run's events keep their truncation markers the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field

from bundles import format as fmt
from tests.traces.otlp_builders import NOW, json_span

MS = 1_000_000
PREVIEW = 512  # tracefoundry.jsonio.PREVIEW_CHARS
ORIGINAL_RUN = "run_01ORIGINALRUN000000000000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def preview(text: str) -> str:
    return text[:PREVIEW] + "…"


def otlp(spans: list[dict], *, service: str = "agent", environment: str = "prod") -> bytes:
    doc = {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "deployment.environment", "value": {"stringValue": environment}},
        ]},
        "scopeSpans": [{"scope": {"name": "agent", "version": "1"}, "spans": spans}],
    }]}
    return json.dumps(doc, sort_keys=True).encode()


@dataclass
class AgentTrace:
    """The pieces of ``agent_bundle``: ids and the payload texts, for assertions."""

    trace_id: str
    run_id: str | None
    prompt: str
    tool_result: str
    event_text: str
    spans: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    run: dict | None = None
    payloads: dict[str, bytes] = field(default_factory=dict)

    def entries(self) -> dict[str, bytes]:
        return entries(spans=self.spans, run=self.run, events=self.events,
                       payloads=self.payloads)

    def manifest(self, **overrides) -> dict:
        ids = {"trace_id": self.trace_id, "run_id": self.run_id}
        ids.update((k, overrides.pop(k)) for k in list(ids) if k in overrides)
        return manifest(self.entries(), spans=len(self.spans), run_events=len(self.events),
                        **ids, **overrides)

    def zip(self, **overrides) -> bytes:
        return zip_entries(self.entries(), self.manifest(**overrides))


def agent_bundle(trace_id: str = "ab" * 16, *, run: bool = True, seed: str = "",
                 start: int = NOW) -> AgentTrace:
    """An agent trace (agent → llm, tool, llm; the first LLM call's prompt and the tool's
    result in blobs) and, with ``run``, its finished run of 8 events (one event's text in a
    blob)."""
    prompt = f"{seed}You are a careful agent. " + "Plan the next step. " * 400
    tool_result = json.dumps({"rows": [{"id": i, "city": f"{seed}city {i}"} for i in range(300)]})
    event_text = seed + "thinking " * 2000
    run_id = ORIGINAL_RUN if run else None
    run_attr = {"tracefoundry.run_id": run_id} if run else {}
    root, llm1, tool, llm2 = "1" * 16, "2" * 16, "3" * 16, "4" * 16
    spans = [
        json_span(trace_id, root, "invoke_agent planner", start=start, duration_ms=900,
                  attributes={"gen_ai.operation.name": "invoke_agent",
                              "gen_ai.agent.name": "planner", **run_attr}, status=1),
        json_span(trace_id, llm1, "chat gpt-4o", parent=root, start=start + 10 * MS,
                  duration_ms=300, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
                      "gen_ai.prompt": preview(prompt),
                      "tracefoundry.payload.prompt_ref": f"sha256:{sha(prompt.encode())}",
                      **run_attr}, status=1),
        json_span(trace_id, tool, "execute_tool sql_query", parent=root, start=start + 320 * MS,
                  duration_ms=200, attributes={
                      "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sql_query",
                      "gen_ai.tool.call.result": preview(tool_result),
                      "tracefoundry.payload.tool_result_ref":
                          f"sha256:{sha(tool_result.encode())}", **run_attr}, status=1),
        json_span(trace_id, llm2, "chat gpt-4o-mini", parent=root, start=start + 530 * MS,
                  duration_ms=350, attributes={
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                      "gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 50,
                      **run_attr}, status=2),
    ]
    payloads = {sha(b): b for b in (prompt.encode(), tool_result.encode(), event_text.encode())}
    trace = AgentTrace(trace_id=trace_id, run_id=run_id, prompt=prompt, tool_result=tool_result,
                       event_text=event_text, spans=spans, payloads=payloads)
    if run:
        trace.run, trace.events = _run(run_id, trace_id, event_text)
    else:
        del payloads[sha(event_text.encode())]
    return trace


def _run(run_id: str, trace_id: str, event_text: str) -> tuple[dict, list[dict]]:
    step = "step_01ORIGINALSTEP00000000000"
    at = "2025-03-01T12:00:0{}.000000Z"
    marker = {"truncated": True, "preview": event_text[:PREVIEW],
              "payload_ref": f"sha256:{sha(event_text.encode())}",
              "size_bytes": len(event_text.encode())}
    rows = [
        ("run.created", "info", "api", None, {"kind": "agent.session", "name": "nightly",
                                               "max_attempts": 1, "run_after": None}),
        ("run.started", "info", "worker", None, {"attempt": 1, "worker_id": "w-9"}),
        ("step.created", "info", "server", step, {"step_id": step, "name": "plan",
                                                   "node_ref": "planner", "position": 0}),
        ("step.started", "info", "server", step, {"step_id": step}),
        ("llm_request", "info", "agent", step, {"model": "gpt-4o", "text": marker}),
        ("tool_call", "info", "agent", step, {"tool": "sql_query", "args": {"q": "select 1"}}),
        ("step.succeeded", "info", "server", step, {"step_id": step}),
        ("run.succeeded", "info", "worker", None, {"output": {"answer": 42}}),
    ]
    events = []
    for seq, (etype, level, source, step_id, payload) in enumerate(rows, start=1):
        events.append({
            "id": 1000 + seq, "event_id": f"00000000-0000-4000-8000-{seq:012d}",
            "run_id": run_id, "step_id": step_id, "seq": seq, "type": etype, "level": level,
            "source": source, "created_at": at.format(seq), "correlation_id": "corr-1",
            "causation_id": "", "payload": payload, "payload_bytes": len(json.dumps(payload)),
            "truncated": etype == "llm_request", "late": False,
        })
    run = {"id": run_id, "kind": "agent.session", "name": "nightly", "input": {"goal": "report"},
           "max_attempts": 1, "correlation_id": "corr-1", "trace_id": trace_id,
           "created_at": at.format(1), "state": "succeeded", "output": {"answer": 42},
           "output_ref": "", "error": ""}
    return run, events


def entries(*, spans: list[dict] | None, run: dict | None = None,
            events: list[dict] | None = None, payloads: dict[str, bytes] | None = None,
            readme: bytes = b"A TraceFoundry bundle.\n") -> dict[str, bytes]:
    """The entries of a bundle but its manifest, in the format's order."""
    out = {fmt.README: readme}
    if spans is not None:
        out[fmt.SPANS] = otlp(spans)
    if run is not None:
        out[fmt.RUN] = json.dumps(run, sort_keys=True).encode()
        out[fmt.RUN_EVENTS] = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n"
                                       for e in events or [])
    for digest, data in sorted((payloads or {}).items()):
        out[fmt.PAYLOADS_DIR + digest] = data
    return out


def manifest(files: dict[str, bytes], *, trace_id: str | None, run_id: str | None = None,
             spans: int = 0, run_events: int = 0, **overrides) -> dict:
    doc = {
        "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION,
        "created_at": "2025-03-02T08:00:00Z", "product_version": "0.1.0", "git_commit": None,
        "environment": {"python": "3.11", "database": "postgresql"},
        "export_mode": "full", "redaction_mode": "standard", "trace_id": trace_id,
        "run_id": run_id,
        "counts": {"spans": spans, "run_events": run_events,
                   "payloads": sum(1 for n in files if n.startswith(fmt.PAYLOADS_DIR))},
        "files": {name: {"sha256": sha(data), "size": len(data)} for name, data in files.items()},
    }
    doc.update(overrides)
    return doc


def zip_entries(files: dict[str, bytes], manifest_doc: dict | None,
                *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of the manifest (when given) and ``files``, in that order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if manifest_doc is not None:
            archive.writestr(_info(fmt.MANIFEST, compression),
                             json.dumps(manifest_doc, sort_keys=True).encode())
        for name, data in files.items():
            archive.writestr(_info(name, compression), data)
    return buffer.getvalue()


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
    info.compress_type = compression
    info.external_attr = 0o100644 << 16
    info.create_system = 3
    return info


def upload(data: bytes, name: str = "bundle.zip"):
    """``data`` as a multipart file for the test client."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/zip")
