"""Payload blobs on S3-compatible storage (TRACEFOUNDRY_PAYLOAD_STORAGE=s3), against a real S3
HTTP server: moto's, started here as a subprocess on a free loopback port.

The storage configuration under test is the one tracefoundry/settings.py builds from the
environment (read in a subprocess), so these tests exercise exactly what an operator gets.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import zstandard
from django.core.management import call_command
from django.utils import timezone

from payloads.models import PayloadBlob
from payloads.store import payload_read
from runs.models import Run

pytest.importorskip("moto", reason="moto[server] is not installed (pip install -e '.[dev]')")
boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY, SECRET_KEY, REGION = "tf-test-access", "tf-test-secret", "eu-west-1"
GITHUB_TOKEN = "ghp_" + "Q7" * 18  # assembled, so no literal here looks like a real token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the S3 server did not start (exit code {server.poll()})")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _manage_env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TRACEFOUNDRY_", "AWS_")) and k != "DEBUG"}
    return {**clean, **env}


def _manage_shell(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=_manage_env(**env),
        capture_output=True, text=True, timeout=120,
    )


def _s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "TRACEFOUNDRY_PAYLOAD_STORAGE": "s3", "TRACEFOUNDRY_S3_BUCKET": bucket,
        "TRACEFOUNDRY_S3_ENDPOINT_URL": endpoint, "TRACEFOUNDRY_S3_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


@pytest.fixture(scope="module")
def s3_storage_config(s3_endpoint) -> dict:
    """STORAGES["payloads"] as settings.py builds it for TRACEFOUNDRY_PAYLOAD_STORAGE=s3."""
    result = _manage_shell(
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['payloads']))",
        **_s3_env(s3_endpoint, "BUCKET"),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def bucket(s3_endpoint, s3_storage_config, settings, monkeypatch) -> str:
    """A fresh bucket that STORAGES["payloads"] points at; credentials come from the
    environment, as in production."""
    name = f"tf-{uuid.uuid4().hex[:12]}"
    _client(s3_endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    config = json.loads(json.dumps(s3_storage_config))
    config["OPTIONS"]["bucket_name"] = name
    settings.STORAGES = {**settings.STORAGES, "payloads": config}
    return name


def _keys(endpoint: str, bucket: str) -> list[str]:
    listing = _client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_settings_build_the_s3_storage_from_the_environment(s3_endpoint, s3_storage_config):
    assert s3_storage_config == {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "BUCKET", "endpoint_url": s3_endpoint, "region_name": REGION,
            "location": "payloads", "addressing_style": "path", "file_overwrite": True,
            "default_acl": None,
        },
    }
    # Credentials are not settings: boto3 reads them from the environment.
    leaked = _manage_shell(
        "from django.conf import settings; print(repr(settings.STORAGES))",
        **_s3_env(s3_endpoint, "BUCKET"),
    )
    assert SECRET_KEY not in leaked.stdout


def test_s3_without_a_bucket_refuses_to_start():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
        env=_manage_env(TRACEFOUNDRY_PAYLOAD_STORAGE="s3"), timeout=120,
    )
    assert result.returncode != 0 and "TRACEFOUNDRY_S3_BUCKET must be set" in result.stderr


def test_a_server_configured_by_environment_reads_and_writes_the_bucket(s3_endpoint):
    name = f"tf-{uuid.uuid4().hex[:12]}"
    _client(s3_endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    result = _manage_shell(
        "from django.core.files.base import ContentFile; "
        "from django.core.files.storage import storages; "
        "s = storages['payloads']; key = s.save('probe/hello.txt', ContentFile(b'hello')); "
        "print(s.open(key).read().decode(), s.exists(key))",
        **_s3_env(s3_endpoint, name), TRACEFOUNDRY_S3_PREFIX="/tf/blobs-here/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["hello", "True"]
    assert _keys(s3_endpoint, name) == ["tf/blobs-here/probe/hello.txt"]


@pytest.mark.django_db
def test_event_payloads_are_stored_once_in_the_bucket_and_collected_by_cleanup(
    engineer_client, s3_endpoint, bucket, django_capture_on_commit_callbacks
):
    big = f"git push with {GITHUB_TOKEN}\n" + "a line of the diff\n" * 800  # ~15 KB
    run_id = engineer_client.post("/api/v1/runs", {"kind": "agent.session"},
                                  format="json").json()["id"]
    events_url = f"/api/v1/runs/{run_id}/events"

    resp = engineer_client.post(events_url, {"type": "patch_proposed", "payload": {"diff": big}},
                                format="json")

    assert resp.status_code == 201, resp.content
    blob = PayloadBlob.objects.get(
        sha256=resp.json()["payload"]["diff"]["payload_ref"].removeprefix("sha256:"))
    assert _keys(s3_endpoint, bucket) == [f"payloads/{blob.storage_key}"]
    original = payload_read(blob)
    assert original == big.replace(GITHUB_TOKEN, "[REDACTED:github_token]").encode()
    assert hashlib.sha256(original).hexdigest() == blob.sha256
    body = _client(s3_endpoint).get_object(Bucket=bucket, Key=f"payloads/{blob.storage_key}")
    stored = body["Body"].read()
    assert zstandard.ZstdDecompressor().decompress(stored) == original
    assert GITHUB_TOKEN.encode() not in stored and len(stored) < len(original)

    # Identical bytes again: one blob, one object.
    engineer_client.post(events_url, [{"type": "patch_proposed", "payload": {"diff": big}}] * 2,
                         format="json")
    assert PayloadBlob.objects.count() == 1 and len(_keys(s3_endpoint, bucket)) == 1

    # A run that finished long ago takes its events with it; its blob, now referenced by
    # nothing, leaves the database and the bucket.
    old_id = engineer_client.post("/api/v1/runs", {"kind": "agent.session"},
                                  format="json").json()["id"]
    old_diff = "an older diff\n" * 1000
    old = engineer_client.post(f"/api/v1/runs/{old_id}/events",
                               {"type": "patch_proposed", "payload": {"diff": old_diff}},
                               format="json").json()
    old_sha = old["payload"]["diff"]["payload_ref"].removeprefix("sha256:")
    for action in ("start", "succeed"):
        resp = engineer_client.post(f"/api/v1/runs/{old_id}/{action}", {}, format="json")
        assert resp.status_code == 200, resp.content
    long_ago = timezone.now() - timedelta(days=30)
    Run.objects.filter(pk=old_id).update(created_at=long_ago, finished_at=long_ago)
    PayloadBlob.objects.filter(sha256=old_sha).update(
        created_at=timezone.now() - timedelta(hours=2))
    assert len(_keys(s3_endpoint, bucket)) == 2

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup", stdout=out)

    assert "  runs: 1" in out.getvalue() and "  payload blobs (unreferenced): 1" in out.getvalue()
    assert not PayloadBlob.objects.filter(sha256=old_sha).exists()
    assert _keys(s3_endpoint, bucket) == [f"payloads/{blob.storage_key}"]
    assert payload_read(blob) == original
