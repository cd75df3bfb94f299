"""``GET /api/v1/payloads/{sha256}``: roles, content types, byte ranges, unknown blobs."""

from __future__ import annotations

import json

import pytest

from payloads.models import PayloadBlob
from runs.models import Run
from tests.conftest import client_for
from tests.factories import PayloadBlobFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db

BODY = json.dumps({"prompt": "hello world", "n": list(range(50))}).encode()


@pytest.fixture
def blob():
    return PayloadBlobFactory(data=BODY, content_type="application/json")


def url(sha256: str) -> str:
    return f"/api/v1/payloads/{sha256}"


def test_engineer_gets_the_bytes_with_their_content_type(engineer_client, blob):
    resp = engineer_client.get(url(blob.sha256))
    assert resp.status_code == 200
    assert resp.content == BODY and resp["Content-Type"] == "application/json"
    assert resp["ETag"] == f'"{blob.sha256}"' and resp["Accept-Ranges"] == "bytes"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp["Content-Security-Policy"]
    assert resp["Cache-Control"].startswith("private")


def test_text_blob_and_ref_spellings(admin_client_api):
    text = PayloadBlobFactory(data="größe ✓".encode(), content_type="text/plain; charset=utf-8")
    for path in (url(text.sha256), url(text.ref), url(text.sha256.upper()),
                 url(text.sha256) + "/"):
        resp = admin_client_api.get(path)
        assert resp.status_code == 200, path
        assert resp.content.decode() == "größe ✓"
        assert resp["Content-Type"] == "text/plain; charset=utf-8"


def test_role_matrix(blob, anon_client, viewer_client, engineer_client, admin_client_api,
                     no_role_user, key_client, viewer, engineer, admin_user):
    # Keys reach only blobs their project refers to: make this one a run's output.
    run = RunFactory(state="running")
    Run.objects.filter(pk=run.id).update(output_ref=blob.ref)
    path = url(blob.sha256)
    resp = anon_client.get(path)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "not_authenticated"
    for client in (viewer_client, client_for(no_role_user), key_client("runs:read"),
                   key_client("runs:read,runs:write,ingest,worker"),
                   key_client("runs:read", user=viewer), key_client("ingest", user=engineer),
                   key_client("runs:write", user=admin_user)):
        resp = client.get(path)
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "permission_denied"
        assert resp.content != BODY
    for client in (engineer_client, admin_client_api, key_client("runs:read", user=engineer),
                   key_client("runs:read", user=admin_user)):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.content == BODY


def test_unknown_payload_is_404_json(engineer_client, viewer_client):
    resp = engineer_client.get(url("0" * 64))
    assert resp.status_code == 404
    assert resp["Content-Type"] == "application/json"
    assert resp.json()["error"]["code"] == "not_found"
    assert engineer_client.get(url("xyz")).status_code == 404
    assert engineer_client.get(url("a" * 63)).json()["error"]["code"] == "not_found"
    # Viewers learn nothing about which blobs exist.
    assert viewer_client.get(url("0" * 64)).status_code == 403


def test_blob_file_gone_is_404(engineer_client, blob, payload_dir):
    stored = PayloadBlob.objects.get(sha256=blob.sha256)
    (payload_dir / stored.storage_key).unlink()
    resp = engineer_client.get(url(blob.sha256))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("header, first, last", [
    ("bytes=0-4", 0, 4),
    ("bytes=10-", 10, len(BODY) - 1),
    ("bytes=-5", len(BODY) - 5, len(BODY) - 1),
    ("bytes=3-3", 3, 3),
    ("bytes=5-999999", 5, len(BODY) - 1),
    ("bytes=-999999", 0, len(BODY) - 1),
    ("bytes= 2 - 6", 2, 6),
])
def test_range(engineer_client, blob, header, first, last):
    resp = engineer_client.get(url(blob.sha256), HTTP_RANGE=header)
    assert resp.status_code == 206
    assert resp.content == BODY[first:last + 1]
    assert resp["Content-Range"] == f"bytes {first}-{last}/{len(BODY)}"
    assert resp["Content-Type"] == "application/json"


@pytest.mark.parametrize("header", [f"bytes={len(BODY)}-", f"bytes={len(BODY) + 10}-20000",
                                    "bytes=-0"])
def test_unsatisfiable_range_is_416(engineer_client, blob, header):
    resp = engineer_client.get(url(blob.sha256), HTTP_RANGE=header)
    assert resp.status_code == 416
    assert resp["Content-Range"] == f"bytes */{len(BODY)}"
    error = resp.json()["error"]
    assert error["code"] == "range_not_satisfiable" and error["details"] == {"size": len(BODY)}


@pytest.mark.parametrize("header", ["bytes=5-3", "bytes=0-1,4-5", "items=0-4", "bytes=-",
                                    "bytes=a-b", "garbage"])
def test_other_ranges_are_ignored(engineer_client, blob, header):
    resp = engineer_client.get(url(blob.sha256), HTTP_RANGE=header)
    assert resp.status_code == 200 and resp.content == BODY


def test_if_range_and_if_none_match(engineer_client, blob):
    etag = f'"{blob.sha256}"'
    resp = engineer_client.get(url(blob.sha256), HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE=etag)
    assert resp.status_code == 206 and resp.content == BODY[:2]
    resp = engineer_client.get(url(blob.sha256), HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE='"old"')
    assert resp.status_code == 200 and resp.content == BODY
    resp = engineer_client.get(url(blob.sha256), HTTP_IF_NONE_MATCH=etag)
    assert resp.status_code == 304 and resp.content == b""


def test_empty_blob(engineer_client):
    empty = PayloadBlobFactory(data=b"", content_type="text/plain")
    resp = engineer_client.get(url(empty.sha256))
    assert resp.status_code == 200 and resp.content == b""
    assert engineer_client.get(url(empty.sha256), HTTP_RANGE="bytes=0-").status_code == 416
    assert engineer_client.get(url(empty.sha256), HTTP_RANGE="bytes=-3").status_code == 416


def test_any_accept_header_works(engineer_client, viewer_client, blob):
    resp = engineer_client.get(url(blob.sha256), HTTP_ACCEPT="application/octet-stream")
    assert resp.status_code == 200 and resp.content == BODY
    resp = viewer_client.get(url(blob.sha256), HTTP_ACCEPT="image/png")
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def test_schema_documents_the_payload_endpoint(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/v1/payloads/{sha256}" in text and "payloads_retrieve" in text
    assert "'416':" in text
