"""Fixtures of the bundle tests: a client that uploads bundles (``nothing_written``, the
check that a refused bundle left nothing behind, is in tests/conftest.py: the CLI tests use it
too), and a trace with its run and payloads ingested the live way, for the export entry points."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

import pytest

from runs import services
from runs.models import Run
from tests.bundles.builders import upload
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import NOW, json_request, json_span

MS = 1_000_000


@pytest.fixture
def post_bundle(engineer_client):
    """POST a bundle's bytes to an endpoint (``import`` or ``dry-replay``)."""

    def post(data: bytes, endpoint: str = "import", *, client=None, query: str = ""):
        client = client or engineer_client
        return client.post(f"/api/v1/bundles/{endpoint}{query}", {"file": upload(data)},
                           format="multipart")

    return post


@dataclass
class Exportable:
    trace_id: str
    run: Run
    secret: str  # in a large span attribute: a blob in a full export, redacted in strict


@pytest.fixture
def ingest_trace(make_key, payload_dir):
    """``ingest_trace(trace_id)``: a run, a trace of two spans naming it (one with a 20 KB
    input that goes to the payload store) and a few run events, through OTLP and the run
    services."""
    _, key = make_key("ingest")

    def ingest(trace_id: str) -> Exportable:
        run = RunFactory(state="running", kind="agent.session")
        services.event_append_batch(run_id=run.id, events=[
            {"type": "llm_request", "payload": {"model": "gpt-4o"}},
            {"type": "log", "payload": {"text": "done", "stream": "stdout"}},
        ])
        secret = "the plan is long " * 1200
        spans = [
            json_span(trace_id, "1" * 16, "invoke_agent planner", start=NOW, duration_ms=500,
                      attributes={"tracefoundry.run_id": run.id}),
            json_span(trace_id, "2" * 16, "chat gpt-4o", parent="1" * 16, start=NOW + 10 * MS,
                      duration_ms=200, attributes={"tracefoundry.run_id": run.id,
                                                   "gen_ai.request.model": "gpt-4o",
                                                   "input.value": secret}),
        ]
        resp = client_for(raw_key=key).generic("POST", "/otlp/v1/traces", json_request(spans),
                                               content_type="application/json")
        assert resp.status_code == 200, resp.content
        return Exportable(trace_id=trace_id, run=Run.objects.get(pk=run.id), secret=secret)

    return ingest


def read_zip(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every entry's CRC holds
    return archive


def manifest_of(data: bytes) -> dict:
    """The manifest of a bundle's bytes (a valid zip, manifest first)."""
    archive = read_zip(data)
    assert archive.namelist()[0] == "manifest.json"
    return json.loads(archive.read("manifest.json"))


def downloaded(response) -> bytes:
    """The body of a zip download, after checking that it is one."""
    assert response.status_code == 200, getattr(response, "content", response)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    return b"".join(response.streaming_content)
