"""PRODUCT.md §12, every cell: each endpoint, socket, page and admin list × each principal.

``SECTION_12`` is the one table the expectations come from (it restates §12 independently of
``tracefoundry.roles``); ``ENDPOINTS``/``SOCKETS``/``PAGES``/``ADMIN_PAGES`` map each surface to
a capability of that table, and ``PRINCIPALS`` lists who asks: 24 principals × (29 endpoints +
2 sockets) + 6 principals × (7 pages + 3 admin lists) = 804 cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client

from payloads.models import PayloadRef
from runs.services import event_append_batch, step_create
from tests.bundles.builders import agent_bundle, upload
from tests.conftest import client_for
from tests.factories import ApiKeyFactory, SpanFactory, UserFactory
from tests.runs.factories import RunFactory
from tests.traces.otlp_builders import json_request, json_span
from tracefoundry.asgi import application
from tracefoundry.services import apikey_revoke

SCOPES = ("runs:read", "runs:write", "ingest", "worker")
ALL_SCOPES = ",".join(SCOPES)
VIEWER, ENGINEER, ADMIN = "viewer", "engineer", "admin"
ANY_ROLE = {VIEWER, ENGINEER, ADMIN}
ENGINEERS = {ENGINEER, ADMIN}


@dataclass(frozen=True)
class Cell:
    """Who holds a capability: users by role; keys by scope, capped by their user's role."""

    roles: frozenset  # roles of a logged-in user that have it
    scopes: frozenset  # key scopes that grant it
    key_user_roles: frozenset  # roles a key's user needs for the key to grant it
    service_keys: bool  # a key bound to no user gets it from its scopes alone


def cell(roles, scopes=(), key_user_roles=(), service_keys=True) -> Cell:
    return Cell(frozenset(roles), frozenset(scopes), frozenset(key_user_roles), service_keys)


# PRODUCT.md §12 (rows) — the only source of the expectations below.
SECTION_12 = {
    "read": cell(ANY_ROLE, {"runs:read"}, ANY_ROLE),
    "live": cell(ANY_ROLE, {"runs:read"}, ANY_ROLE),
    "page": cell(ANY_ROLE),
    "payloads": cell(ENGINEERS, {"runs:read"}, ENGINEERS, service_keys=False),
    "write": cell(ENGINEERS, {"runs:write"}, ENGINEERS),
    "append": cell(ENGINEERS, {"runs:write", "ingest", "worker"}, ENGINEERS),
    "lifecycle": cell(ENGINEERS, {"runs:write", "worker"}, ENGINEERS),
    "worker": cell((), {"worker"}, ENGINEERS),
    "ingest": cell((), {"ingest"}, ENGINEERS),
    "manage": cell({ADMIN}),
    "write_page": cell(ENGINEERS),  # pages that do what `write` allows (the import page)
}


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # anonymous | user | key
    role: str | None = None  # the user's role (or the key's user's)
    scopes: str = ""
    bound: bool = False  # key bound to a user
    other_project: bool = False
    refused: str = ""  # why the key must not authenticate (revoked, inactive, no role)


PRINCIPALS = [
    Principal("anonymous", "anonymous"),
    Principal("no_role", "user"),
    *[Principal(role, "user", role=role) for role in (VIEWER, ENGINEER, ADMIN)],
    *[Principal(f"key:{s}", "key", scopes=s) for s in SCOPES],
    *[Principal(f"key:{s}@{role or 'no_role'}", "key", role=role, scopes=s, bound=True,
                refused="" if role else "no role")
      for s in SCOPES for role in (VIEWER, None, ENGINEER)],
    Principal("key:other-project", "key", scopes=ALL_SCOPES, other_project=True),
    Principal("key:revoked", "key", scopes=ALL_SCOPES, refused="revoked"),
    Principal("key:inactive-user", "key", role=ENGINEER, scopes=ALL_SCOPES, bound=True,
              refused="inactive"),
]


def allowed(capability: str, who: Principal) -> bool:
    rule = SECTION_12[capability]
    if who.kind == "anonymous" or who.refused:
        return False
    if who.kind == "user":
        return who.role in rule.roles
    if not rule.scopes & set(who.scopes.split(",")):
        return False
    return who.role in rule.key_user_roles if who.bound else rule.service_keys


# (method, path, body, capability, project-scoped: another project's key gets 404, not 2xx)
ENDPOINTS = [
    ("GET", "/api/v1/runs", None, "read", False),
    ("GET", "/api/v1/runs/{run}", None, "read", True),
    ("GET", "/api/v1/runs/{run}/events", None, "read", True),
    ("GET", "/api/v1/runs/{run}/events/stream", None, "read", True),
    ("GET", "/api/v1/runs/{run}/steps", None, "read", True),
    ("GET", "/api/v1/projects/default/events/stream", None, "read", True),
    ("GET", "/api/v1/workers", None, "read", False),
    ("GET", "/api/v1/traces", None, "read", False),
    ("GET", "/api/v1/traces/{trace}", None, "read", True),
    ("GET", "/api/v1/traces/{trace}/spans", None, "read", True),
    ("GET", "/api/v1/spans/{span}", None, "read", True),
    ("GET", "/api/v1/payloads/{sha}", None, "payloads", True),
    # Exports: strict for every reader, full only with the right to payload contents.
    ("GET", "/api/v1/traces/{trace}/export?mode=strict", None, "read", True),
    ("GET", "/api/v1/traces/{trace}/export?mode=full", None, "payloads", True),
    ("GET", "/api/v1/runs/{run}/export?mode=strict", None, "read", True),
    ("GET", "/api/v1/runs/{run}/export?mode=full", None, "payloads", True),
    ("POST", "/api/v1/runs", {"kind": "x"}, "write", False),
    ("POST", "/api/v1/runs/{run}/cancel", {}, "write", True),
    ("POST", "/api/v1/runs/{run}/events", {"type": "note"}, "append", True),
    ("POST", "/api/v1/runs/{run}/steps", {"name": "s"}, "lifecycle", True),
    # A worker key finishes only runs its worker holds, so every caller names the holder.
    ("POST", "/api/v1/runs/{run}/succeed", {"worker_id": "w-1"}, "lifecycle", True),
    ("POST", "/api/v1/runs/{run}/fail", {"worker_id": "w-1"}, "lifecycle", True),
    ("POST", "/api/v1/runs/{queued}/start", {}, "lifecycle", True),
    ("POST", "/api/v1/runs/{run}/steps/{step}/start", {}, "lifecycle", True),
    ("POST", "/api/v1/runs/claim", {"worker_id": "w-2", "kinds": ["x"]}, "worker", False),
    ("POST", "/api/v1/runs/{run}/heartbeat", {"worker_id": "w-1"}, "worker", True),
    ("POST", "/otlp/v1/traces", "otlp", "ingest", False),
    # A key imports into its own project: not project-scoped.
    ("POST", "/api/v1/bundles/import", "bundle", "write", False),
    ("POST", "/api/v1/bundles/dry-replay", "bundle", "write", False),
]
SOCKETS = ["/ws/runs/{run}/", "/ws/projects/default/"]
PAGES = ["/runs/", "/runs/{run}/", "/projects/", "/projects/default/stream/", "/traces/",
         "/traces/{trace}/"]
ENGINEER_PAGES = ["/bundles/import/"]
ADMIN_PAGES = ["/admin/tracefoundry/apikey/", "/admin/auth/user/", "/admin/auth/group/"]
TRACE_ID, SPAN_ID = "ab" * 16, "cd" * 8


def _world(project) -> dict:
    run = RunFactory(state="running", kind="x")  # started by worker w-1
    queued = RunFactory(kind="x")
    step = step_create(run_id=run.id, name="s")
    event_append_batch(run_id=run.id, events=[{"type": "note", "payload": {"text": "y" * 20_000}}])
    sha = PayloadRef.objects.filter(run_event__run=run).first().blob.sha256
    SpanFactory(span_id=SPAN_ID, trace__trace_id=TRACE_ID, trace__project=project)
    return {"run": run.id, "queued": queued.id, "step": step.id, "sha": sha,
            "trace": TRACE_ID, "span": SPAN_ID}


def _user(role: str | None, *, active: bool = True):
    user = UserFactory(is_active=active)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def _raw_key(who: Principal, project, other_project) -> str:
    user = _user(who.role) if who.bound else None
    key = ApiKeyFactory(project=other_project if who.other_project else project,
                        scopes=who.scopes, user=user)
    if who.refused == "revoked":
        apikey_revoke(key=key)
    if who.refused == "inactive":
        user.is_active = False
        user.save()
    return key.raw


def _expected_refusal(path: str, who: Principal) -> tuple[int, str]:
    # OTLP ingest takes API keys only: a password is no credential there.
    if who.kind == "anonymous" or (who.kind == "user" and path.startswith("/otlp/")):
        return 401, "not_authenticated"
    if who.refused:
        return 401, "authentication_failed"
    return 403, "permission_denied"


@pytest.mark.django_db
@pytest.mark.parametrize("who", PRINCIPALS, ids=[p.name for p in PRINCIPALS])
@pytest.mark.parametrize("method, path, body, capability, scoped", ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_api(who, method, path, body, capability, scoped, project, other_project):
    world = _world(project)
    url = path.format(**world)
    if who.kind == "anonymous":
        client = client_for()
    elif who.kind == "user":
        client = client_for(_user(who.role))
    else:
        client = client_for(raw_key=_raw_key(who, project, other_project))
    if body == "otlp":
        resp = client.generic(method, url, json_request([json_span("ef" * 16, "12" * 8)]),
                              content_type="application/json")
    elif body == "bundle":
        resp = client.post(url, {"file": upload(agent_bundle("be" * 16).zip())},
                           format="multipart")
    else:
        resp = client.generic(method, url, None if body is None else json.dumps(body),
                              content_type="application/json")
    if allowed(capability, who):
        expected = 404 if who.other_project and scoped else None
        if expected:
            assert resp.status_code == expected, (who, url, resp.content)
        else:
            assert resp.status_code in (200, 201, 202), (who.name, url, resp.content)
            if who.other_project and path == "/api/v1/runs" and method == "GET":
                assert resp.json()["results"] == []
        return
    status, code = _expected_refusal(path, who)
    assert resp.status_code == status, (who.name, url, resp.content)
    assert resp.json()["error"]["code"] == code
    if status == 401:
        assert resp["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("who", PRINCIPALS, ids=[p.name for p in PRINCIPALS])
@pytest.mark.parametrize("path", SOCKETS)
async def test_websocket(who, path, project, other_project):
    world = await database_sync_to_async(_world)(project)
    headers = [(b"origin", b"http://testserver")]
    if who.kind == "user":
        user = await database_sync_to_async(_user)(who.role)
        client = Client()
        await database_sync_to_async(client.force_login)(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    elif who.kind == "key":
        raw = await database_sync_to_async(_raw_key)(who, project, other_project)
        headers.append((b"authorization", f"Bearer {raw}".encode()))
    ws = WebsocketCommunicator(application, path.format(**world), headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    first = await ws.receive_json_from(timeout=5)
    if allowed("live", who) and not who.other_project:
        assert first["type"] in ("run", "event"), first
    else:
        expected = 4404 if allowed("live", who) else (
            4401 if who.kind == "anonymous" or who.refused else 4403)
        assert (first["type"], first["code"]) == ("error", expected), (who.name, first)
    await ws.disconnect()


PAGE_PRINCIPALS = [p for p in PRINCIPALS if p.kind != "key"] + [
    Principal("key:runs:read (keys never open pages)", "key", scopes="runs:read")]


@pytest.mark.django_db
@pytest.mark.parametrize("who", PAGE_PRINCIPALS, ids=[p.name for p in PAGE_PRINCIPALS])
@pytest.mark.parametrize("path", PAGES + ENGINEER_PAGES + ADMIN_PAGES)
def test_pages_and_admin(who, path, project, other_project):
    world = _world(project)
    client = Client()
    headers = {}
    if who.kind == "user":
        client.force_login(_user(who.role))
    elif who.kind == "key":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {_raw_key(who, project, other_project)}"
    resp = client.get(path.format(**world), **headers)
    capability = ("manage" if path.startswith("/admin/") else
                  "write_page" if path in ENGINEER_PAGES else "page")
    if allowed(capability, who):
        assert resp.status_code == 200, (who.name, path)
    elif who.kind == "user" and path.startswith("/admin/"):
        assert resp.status_code == 403, (who.name, path)  # staff without the permission
    elif who.kind == "user" and allowed("page", who):
        assert resp.status_code == 403, (who.name, path)  # a reader, but not an engineer
    else:
        assert resp.status_code == 302, (who.name, path, resp.status_code)
        assert "login" in resp["Location"]


@pytest.mark.django_db
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


@pytest.mark.django_db
def test_session_auth_for_the_browsable_api(client, engineer, project):
    assert client.login(username=engineer.username, password="correct-horse-battery-staple")
    resp = client.get("/api/v1/runs", HTTP_ACCEPT="text/html")
    assert resp.status_code == 200 and b"Run List Create" in resp.content
    # Session writes need the CSRF token, like any browser form.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(engineer)
    resp = strict.post("/api/v1/runs", {"kind": "x"}, content_type="application/json")
    assert resp.status_code == 403 and "CSRF" in resp.json()["error"]["message"]
