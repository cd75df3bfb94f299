"""API keys: issued by the CLI and the admin, hashed at rest, scoped, revocable."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import client_for
from tracefoundry.models import ApiKey

pytestmark = pytest.mark.django_db


def run_cmd(*args) -> str:
    out = io.StringIO()
    call_command("apikey", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_prints_the_key_alone_on_its_last_line(project, engineer):
    out = run_cmd("create", "--project", "default", "--scopes", "runs:read,runs:write",
                  "--user", engineer.username, "--name", "ci")
    raw = out.strip().splitlines()[-1]
    assert re.fullmatch(r"tf_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", raw)
    key = ApiKey.objects.get()
    assert key.scopes == ["runs:read", "runs:write"] and key.user == engineer
    # Hashed at rest: the raw key is in no column.
    assert raw not in repr(list(ApiKey.objects.values()))
    resp = client_for(raw_key=raw).get("/api/v1/runs")
    assert resp.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_x_tracefoundry_key_header_works(project, make_key):
    _, raw = make_key("runs:read")
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/runs", HTTP_X_TRACEFOUNDRY_KEY=raw).status_code == 200


def test_list_and_revoke(project, make_key):
    key, raw = make_key("ingest")
    listing = run_cmd("list")
    assert key.prefix in listing and "active" in listing and raw not in listing
    assert "Revoked" in run_cmd("revoke", key.prefix)
    assert "revoked" in run_cmd("list", "--project", "default")
    resp = client_for(raw_key=raw).get("/api/v1/runs")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("args, message", [
    (["create", "--scopes", "everything"], "scopes"),
    (["create", "--scopes", "runs:read", "--project", "nope"], "does not exist"),
    (["create", "--scopes", "runs:read", "--user", "ghost"], "does not exist"),
    (["revoke", "tf_nothing"], "no API key"),
])
def test_cli_errors(project, args, message):
    with pytest.raises(CommandError, match=message):
        run_cmd(*args)


@pytest.mark.parametrize("header", ["Bearer not-a-key", "Bearer tf_00000000_wrong"])
def test_bad_keys_are_401(project, header):
    from rest_framework.test import APIClient

    resp = APIClient().get("/api/v1/runs", HTTP_AUTHORIZATION=header)
    assert resp.status_code == 401


def test_admin_creates_a_key_and_shows_it_once(client, admin_user, project):
    client.force_login(admin_user)
    resp = client.post("/admin/tracefoundry/apikey/add/", {
        "name": "deploy", "project": project.pk, "scopes": ["ingest", "worker"],
    }, follow=True)
    assert resp.status_code == 200
    text = resp.content.decode()
    match = re.search(r"(tf_[0-9a-f]{8}_[A-Za-z0-9_-]{43})", text)
    assert match, "the new key is shown after creation"
    key = ApiKey.objects.get()
    assert key.scopes == ["ingest", "worker"] and key.name == "deploy"
    page = client.get(f"/admin/tracefoundry/apikey/{key.pk}/change/").content.decode()
    assert match.group(1) not in page
    client.post("/admin/tracefoundry/apikey/", {"action": "revoke_keys",
                                                "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_revoke_finds_all_digit_prefixes_and_ids(project, make_key):
    key, _ = make_key("ingest")
    ApiKey.objects.filter(pk=key.pk).update(prefix="12345678")
    assert "Revoked key 12345678" in run_cmd("revoke", "12345678")
    other, _ = make_key("ingest")
    assert f"Revoked key {other.prefix}" in run_cmd("revoke", str(other.pk))
