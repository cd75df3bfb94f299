"""PRODUCT.md §12 for the runs endpoints: every role and key scope against every endpoint."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from runs.services import step_create
from tests.conftest import client_for
from tests.runs.factories import RunFactory
from tests.tracefoundry.factories import UserFactory

pytestmark = pytest.mark.django_db

# endpoint -> the capability column of §12 it belongs to
READ, WRITE, APPEND, LIFECYCLE = "read", "write", "append", "lifecycle"
ENDPOINTS = [
    ("GET", "/api/v1/runs", None, READ),
    ("GET", "/api/v1/runs/{run}", None, READ),
    ("GET", "/api/v1/runs/{run}/events", None, READ),
    ("GET", "/api/v1/runs/{run}/steps", None, READ),
    ("GET", "/api/v1/workers", None, READ),
    ("POST", "/api/v1/runs", {"kind": "x"}, WRITE),
    ("POST", "/api/v1/runs/{run}/cancel", {}, WRITE),
    ("POST", "/api/v1/runs/{run}/events", {"type": "note"}, APPEND),
    ("POST", "/api/v1/runs/{run}/steps", {"name": "s"}, LIFECYCLE),
    # A worker key finishes only runs its worker holds, so every caller names the holder.
    ("POST", "/api/v1/runs/{run}/succeed", {"worker_id": "w-1"}, LIFECYCLE),
    ("POST", "/api/v1/runs/{run}/fail", {"worker_id": "w-1"}, LIFECYCLE),
    ("POST", "/api/v1/runs/{queued}/start", {}, LIFECYCLE),
    ("POST", "/api/v1/runs/{run}/steps/{step}/start", {}, LIFECYCLE),
]

# principal -> the capabilities it has (PRODUCT.md §12; keys per their scopes)
ALLOWED = {
    "anonymous": set(),
    "no_role": set(),
    "viewer": {READ},
    "engineer": {READ, WRITE, APPEND, LIFECYCLE},
    "admin": {READ, WRITE, APPEND, LIFECYCLE},
    "key:runs:read": {READ},
    "key:runs:write": {WRITE, APPEND, LIFECYCLE},
    "key:ingest": {APPEND},
    "key:worker": {APPEND, LIFECYCLE},
    "key:runs:read,runs:write": {READ, WRITE, APPEND, LIFECYCLE},
}


def _client(principal, make_key):
    if principal == "anonymous":
        return client_for()
    if principal.startswith("key:"):
        _, raw = make_key(principal[4:])
        return client_for(raw_key=raw)
    roles = {"no_role": None, "viewer": "viewer", "engineer": "engineer", "admin": "admin"}
    user = UserFactory(username=f"u-{principal}")
    if roles[principal]:
        user.groups.add(Group.objects.get(name=roles[principal]))
    return client_for(user)


@pytest.mark.parametrize("principal", list(ALLOWED))
@pytest.mark.parametrize("method, path, body, cap", ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_access(principal, method, path, body, cap, make_key, project):
    run = RunFactory(state="running")  # started by worker w-1
    queued = RunFactory()
    step = step_create(run_id=run.id, name="s")
    url = path.format(run=run.id, queued=queued.id, step=step.id)
    client = _client(principal, make_key)
    resp = client.generic(method, url, None if body is None else json.dumps(body),
                          content_type="application/json")
    if cap in ALLOWED[principal]:
        assert resp.status_code in (200, 201, 202), (principal, url, resp.content)
    elif principal == "anonymous":
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "not_authenticated"
        assert resp["WWW-Authenticate"].startswith("Bearer")
    else:
        assert resp.status_code == 403, (principal, url, resp.content)
        assert resp.json()["error"]["code"] == "permission_denied"


def test_key_sees_only_its_project(make_key, other_project, project):
    mine = RunFactory(state="running")
    theirs = RunFactory(state="running", project=other_project)
    _, raw = make_key("runs:read,runs:write")
    client = client_for(raw_key=raw)
    listed = {r["id"] for r in client.get("/api/v1/runs").json()["results"]}
    assert listed == {mine.id}
    assert client.get(f"/api/v1/runs/{theirs.id}").status_code == 404
    assert client.post(f"/api/v1/runs/{theirs.id}/events", {"type": "note"},
                       format="json").status_code == 404
    assert client.post(f"/api/v1/runs/{theirs.id}/cancel").status_code == 404
    resp = client.post("/api/v1/runs", {"kind": "x", "project": "other"}, format="json")
    assert resp.status_code == 403
    created = client.post("/api/v1/runs", {"kind": "x"}, format="json").json()
    assert created["project"] == "default"


def test_key_of_a_viewer_cannot_write(make_key, viewer, project):
    _, raw = make_key("runs:read,runs:write", user=viewer)
    client = client_for(raw_key=raw)
    assert client.get("/api/v1/runs").status_code == 200
    assert client.post("/api/v1/runs", {"kind": "x"}, format="json").status_code == 403


def test_session_auth_for_the_browsable_api(client, engineer, project):
    assert client.login(username=engineer.username, password="correct-horse-battery-staple")
    resp = client.get("/api/v1/runs", HTTP_ACCEPT="text/html")
    assert resp.status_code == 200 and b"Run List Create" in resp.content
    # Session writes need the CSRF token, like any browser form.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(engineer)
    resp = strict.post("/api/v1/runs", {"kind": "x"}, content_type="application/json")
    assert resp.status_code == 403 and "CSRF" in resp.json()["error"]["message"]
