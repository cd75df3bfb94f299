"""Bundle uploads through the real web server (``python -m tracefoundry.server``): the multipart
body reaches Django untouched, so a malformed one gets the API's JSON 400 (Twisted, left to
itself, parses multipart bodies too and answers a bare 400 without a body), and a sound one is
imported."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

import pytest

from tests.bundles.builders import agent_bundle

BOUNDARY = "tfboundary"


@pytest.fixture(scope="module")
def web(live_stack):
    return live_stack.server(), live_stack.api_key("runs:read,runs:write")


def _post(url: str, key: str, body: bytes) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Accept": "application/json",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"b.zip\"\r\nContent-Type: application/zip\r\n\r\n").encode() + data + \
        f"\r\n--{BOUNDARY}--\r\n".encode()


def test_a_malformed_multipart_body_is_the_apis_json_400(web):
    server, key = web
    for endpoint in ("import", "dry-replay"):
        status, content_type, body = _post(f"{server.url}/api/v1/bundles/{endpoint}", key,
                                           f"--{BOUNDARY}--\r\n".encode())
        assert (status, content_type) == (400, "application/json"), body
        assert json.loads(body)["error"]["message"] == \
            "Invalid input: file: No file was submitted."


def test_a_bundle_goes_in_through_the_server(web):
    server, key = web
    data = agent_bundle("b3" * 16).zip()
    status, _, body = _post(f"{server.url}/api/v1/bundles/dry-replay", key, _multipart(data))
    assert status == 200 and json.loads(body)["ok"] is True
    status, _, body = _post(f"{server.url}/api/v1/bundles/import", key, _multipart(data))
    assert status == 201, body
    assert json.loads(body)["trace_id"] == "b3" * 16


def test_an_export_streams_back_out_through_the_server(web):
    """The ASGI path: the zip comes in chunks (no Content-Length), and Django never had to
    collect a synchronous iterator whole (it warns when it does)."""
    server, key = web
    bundle = agent_bundle("b4" * 16, seed="stream ")
    status, _, body = _post(f"{server.url}/api/v1/bundles/import", key,
                            _multipart(bundle.zip()))
    assert status == 201, body
    req = urllib.request.Request(f"{server.url}/api/v1/traces/{'b4' * 16}/export",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/zip"
        assert response.headers.get("Content-Length") is None
        assert response.headers["Transfer-Encoding"] == "chunked"
        # A service key may read but not see payload contents: the server chose strict.
        assert response.headers["X-TraceFoundry-Export-Mode"] == "strict"
        data = response.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.testzip() is None
    assert (manifest["trace_id"], manifest["export_mode"]) == ("b4" * 16, "strict")
    assert manifest["counts"]["spans"] == len(bundle.spans)
    assert "consume synchronous iterators" not in server.log()
