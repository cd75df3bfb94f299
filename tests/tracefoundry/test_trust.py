"""Issue #10 (trust): login lockout, per-project idempotency keys, WebSocket origins with ports,
the proxy header and the API docs behind settings, keys of inactive users."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.tracefoundry.factories import PASSWORD
from tracefoundry.asgi import application

ROOT = Path(__file__).resolve().parents[2]


# --- brute-force lockout (django-axes) ---------------------------------------------------------

@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def _login(path: str, username: str, password: str, ip: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=ip).post(path, {"username": username, "password": password})


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_pages_lock_a_user_out_per_address(path, limit, admin_user, viewer):
    assert _login(path, admin_user.username, PASSWORD).status_code == 302  # works before
    # The failure that reaches the limit is itself answered with the lockout.
    assert [_login(path, admin_user.username, "wrong").status_code
            for _ in range(limit)] == [200] * (limit - 1) + [429]
    refused = _login(path, admin_user.username, PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in refused.client.session
    # Another address, or another user from the same address, is not locked out.
    assert _login(path, admin_user.username, PASSWORD, ip="10.0.0.2").status_code == 302
    assert _login(path, viewer.username, PASSWORD).status_code == 302


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.django_db
def test_http_basic_locks_out_with_a_json_401(limit, engineer, viewer, project):
    """Refused credentials are a 401 whatever the reason; a lockout says so in its code and
    with Retry-After (a 429 made API clients and fuzzers read it as throttling)."""
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=_basic(engineer.username, "wrong"))
    answers = [client.get("/api/v1/runs", REMOTE_ADDR="10.0.0.1") for _ in range(limit)]
    assert [r.status_code for r in answers] == [401] * limit
    assert [r.json()["error"]["code"] for r in answers] == (
        ["authentication_failed"] * (limit - 1) + ["locked_out"])
    client.credentials(HTTP_AUTHORIZATION=_basic(engineer.username, PASSWORD))
    resp = client.get("/api/v1/runs", REMOTE_ADDR="10.0.0.1")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "locked_out"
    assert int(resp["Retry-After"]) > 0
    assert resp["WWW-Authenticate"]
    assert client.get("/api/v1/runs", REMOTE_ADDR="10.0.0.2").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=_basic(viewer.username, PASSWORD))
    assert client.get("/api/v1/runs", REMOTE_ADDR="10.0.0.1").status_code == 200


# --- Idempotency-Key per project ---------------------------------------------------------------

@pytest.mark.django_db
def test_idempotency_keys_are_per_project(project, other_project, make_key):
    _, mine = make_key("runs:write")
    _, theirs = make_key("runs:write", project_obj=other_project)
    headers = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    first = client_for(raw_key=theirs).post("/api/v1/runs", {"kind": "a"}, format="json",
                                            **headers)
    assert first.status_code == 201
    # Another body under the same key in another project: a new run, not a 409 naming theirs.
    resp = client_for(raw_key=mine).post("/api/v1/runs", {"kind": "b"}, format="json", **headers)
    assert resp.status_code == 201
    assert resp.json()["id"] != first.json()["id"] and resp.json()["project"] == "default"
    again = client_for(raw_key=mine).post("/api/v1/runs", {"kind": "b"}, format="json",
                                          **headers)
    assert again.status_code == 200 and again.json()["id"] == resp.json()["id"]
    conflict = client_for(raw_key=mine).post("/api/v1/runs", {"kind": "c"}, format="json",
                                             **headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["details"]["run_id"] == resp.json()["id"]
    assert first.json()["id"] not in conflict.content.decode()


# --- WebSocket origin: scheme, host and port ---------------------------------------------------

async def _handshake(path: str, headers) -> bool:
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await ws.connect(timeout=5)
    if connected:
        await ws.disconnect()
    return connected


def _session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("origin, ok", [
    (b"http://127.0.0.1:8000", True),
    (b"http://127.0.0.1:9999", False),
    (b"https://127.0.0.1:8000", False),
    (b"http://localhost:8000", False),
    (b"http://127.0.0.1", False),
])
async def test_origin_must_match_scheme_host_and_port(origin, ok, project, viewer, make_key):
    run = await database_sync_to_async(RunFactory)()
    _, raw = await database_sync_to_async(make_key)("runs:read")
    host = (b"host", b"127.0.0.1:8000")
    session = [await database_sync_to_async(_session_cookie)(viewer), host, (b"origin", origin)]
    keyed = [(b"authorization", f"Bearer {raw}".encode()), host, (b"origin", origin)]
    for path in (f"/ws/runs/{run.id}/", "/ws/projects/default/"):
        assert await _handshake(path, session) is ok
        assert await _handshake(path, keyed) is ok


# --- settings: the proxy header, the API docs --------------------------------------------------

def _setting(name: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEFOUNDRY_BEHIND")}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         f"from django.conf import settings; print(repr(getattr(settings, {name!r}, None)))"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_proxy_ssl_header_is_trusted_only_behind_a_proxy():
    assert _setting("SECURE_PROXY_SSL_HEADER") == "None"
    assert _setting("SECURE_PROXY_SSL_HEADER", TRACEFOUNDRY_BEHIND_PROXY="1") == \
        "('HTTP_X_FORWARDED_PROTO', 'https')"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_api_docs_need_a_login_unless_public(path, settings, viewer):
    settings.TRACEFOUNDRY_PUBLIC_API_DOCS = False
    assert client_for().get(path).status_code == 401
    assert client_for(viewer).get(path).status_code == 200
    settings.TRACEFOUNDRY_PUBLIC_API_DOCS = True
    assert client_for().get(path).status_code == 200


def test_api_docs_default_follows_debug():
    env = {"DEBUG": "0", "SECRET_KEY": "k" * 64, "ALLOWED_HOSTS": "tf.example.com"}
    assert _setting("TRACEFOUNDRY_PUBLIC_API_DOCS", **env) == "False"
    assert _setting("TRACEFOUNDRY_PUBLIC_API_DOCS", TRACEFOUNDRY_PUBLIC_API_DOCS="1", **env) == \
        "True"


# --- keys of inactive users --------------------------------------------------------------------

@pytest.mark.django_db
def test_apikey_create_refuses_an_inactive_user(project, engineer):
    engineer.is_active = False
    engineer.save()
    with pytest.raises(CommandError, match="inactive"):
        call_command("apikey", "create", "--scopes", "ingest", "--user", engineer.username,
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert not engineer.api_keys.exists()


@pytest.mark.django_db
def test_deactivating_or_demoting_the_user_stops_the_key(settings, project, engineer, make_key):
    settings.TRACEFOUNDRY_API_KEY_CACHE_SECONDS = 0
    _, raw = make_key("ingest,runs:read", user=engineer)
    client = client_for(raw_key=raw)
    assert client.get("/api/v1/runs").status_code == 200
    engineer.groups.clear()
    resp = client.get("/api/v1/runs")
    assert resp.status_code == 401 and "no role" in resp.json()["error"]["message"]
    engineer.groups.add(Group.objects.get(name="engineer"))
    assert client.get("/api/v1/runs").status_code == 200
    engineer.is_active = False
    engineer.save()
    otlp = client.post("/otlp/v1/traces", b"{}", content_type="application/json")
    assert otlp.status_code == 401 and "inactive" in otlp.json()["error"]["message"]


@pytest.mark.django_db
def test_admin_form_refuses_a_key_for_an_inactive_user(client, admin_user, engineer, project):
    engineer.is_active = False
    engineer.save()
    client.force_login(admin_user)
    resp = client.post("/admin/tracefoundry/apikey/add/", {
        "name": "k", "project": project.pk, "user": engineer.pk, "scopes": ["ingest"],
    })
    assert resp.status_code == 200 and "inactive" in resp.content.decode()
    assert not engineer.api_keys.exists()
