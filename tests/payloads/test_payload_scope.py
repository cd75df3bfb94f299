"""API keys read only the payloads their own project's data refers to."""

import json

import pytest

from tests.conftest import client_for
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_keys_only_reach_their_projects_payloads(engineer_client, make_key, engineer,
                                                 project, other_project):
    run = RunFactory(state="running")
    big = "stack frame\n" * 2000
    resp = engineer_client.post(f"/api/v1/runs/{run.id}/events",
                                {"type": "log", "payload": {"stream": "stderr", "text": big}},
                                format="json")
    sha = resp.json()["payload"]["text"]["payload_ref"].removeprefix("sha256:")
    _, mine = make_key("runs:read", user=engineer)
    _, theirs = make_key("runs:read", user=engineer, project_obj=other_project)
    assert client_for(raw_key=mine).get(f"/api/v1/payloads/{sha}").content.decode() == big
    assert client_for(raw_key=theirs).get(f"/api/v1/payloads/{sha}").status_code == 404
    # People (not keys) see every project, as everywhere else.
    assert engineer_client.get(f"/api/v1/payloads/{sha}").status_code == 200


def _running_run(client) -> str:
    run_id = client.post("/api/v1/runs", {"kind": "job"}, format="json").json()["id"]
    assert client.post(f"/api/v1/runs/{run_id}/start", {}, format="json").status_code == 200
    return run_id


def test_an_output_ref_reaches_only_blobs_the_project_already_refers_to(make_key, engineer,
                                                                        other_project):
    mine = client_for(raw_key=make_key("runs:read,runs:write", user=engineer)[1])
    theirs = client_for(raw_key=make_key("runs:read,runs:write", user=engineer,
                                         project_obj=other_project)[1])
    run_id = _running_run(mine)
    resp = mine.post(f"/api/v1/runs/{run_id}/events",
                     {"type": "log", "payload": {"text": "secret plan\n" * 2000}}, format="json")
    ref = resp.json()["payload"]["text"]["payload_ref"]

    # Another project's key cannot adopt the blob as its run's output, nor then read it.
    other_run = _running_run(theirs)
    resp = theirs.post(f"/api/v1/runs/{other_run}/succeed", {"output_ref": ref}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["details"] == {"field": "output_ref"}
    assert theirs.get(f"/api/v1/runs/{other_run}").json()["state"] == "running"
    assert theirs.get(f"/api/v1/payloads/{ref}").status_code == 404

    # Its own project may: the blob is already one of its payloads.
    resp = mine.post(f"/api/v1/runs/{run_id}/succeed", {"output_ref": ref.upper().replace(
        "SHA256:", "sha256:")}, format="json")
    assert resp.status_code == 200 and resp.json()["output_ref"] == ref
    assert mine.get(f"/api/v1/payloads/{ref}").status_code == 200


@pytest.mark.parametrize("ref", ["sha256:" + "a" * 63, "sha256:" + "g" * 64, "a" * 64,
                                 "md5:" + "a" * 32, "sha256:" + "a" * 64 + "\n", "../etc"])
def test_a_malformed_output_ref_is_400_and_nothing_changes(make_key, ref):
    client = client_for(raw_key=make_key("runs:read,runs:write")[1])
    run_id = _running_run(client)
    resp = client.post(f"/api/v1/runs/{run_id}/succeed", {"output_ref": ref}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid"
    assert resp.json()["error"]["message"].startswith("output_ref must")
    assert client.get(f"/api/v1/runs/{run_id}").json()["state"] == "running"


def test_a_worker_id_holding_a_credential_is_refused(make_key):
    client = client_for(raw_key=make_key("runs:read,runs:write,worker")[1])
    client.post("/api/v1/runs", {"kind": "job"}, format="json")
    worker = "w-ghp_" + "a1" * 18
    resp = client.post("/api/v1/runs/claim", {"worker_id": worker}, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["details"] == {"field": "worker_id"}
    assert client.get("/api/v1/runs?state=running").json()["results"] == []


@pytest.mark.parametrize(("field", "value"), [("type", "glpat-" + "abcdefghij" * 2),
                                              ("source", "glpat-" + "abcdefghij" * 2)])
def test_event_type_and_source_holding_a_credential_are_refused(make_key, field, value):
    client = client_for(raw_key=make_key("runs:read,runs:write")[1])
    run_id = _running_run(client)
    resp = client.post(f"/api/v1/runs/{run_id}/events", {"type": "note", field: value},
                       format="json")
    assert resp.status_code == 400
    assert "credential" in json.dumps(resp.json()["error"])
    assert value not in json.dumps(client.get(f"/api/v1/runs/{run_id}/events").json())


def test_ids_and_names_that_grow_when_redacted_still_fit_their_columns(make_key):
    client = client_for(raw_key=make_key("runs:read,runs:write")[1])
    grows = "token=abc123"  # -> token=[REDACTED:token]
    resp = client.post("/api/v1/runs", {"kind": "job", "name": "n " * 120 + grows,
                                        "correlation_id": "c " * 26 + grows}, format="json")
    assert resp.status_code == 201, resp.content
    run = resp.json()
    assert len(run["correlation_id"]) == 64 and "abc123" not in run["correlation_id"]
    assert "abc123" not in run["name"]
    run_id = _running_run(client)
    resp = client.post(f"/api/v1/runs/{run_id}/events",
                       {"type": "note", "correlation_id": "c " * 26 + grows}, format="json")
    assert resp.status_code == 201, resp.content
    resp = client.post(f"/api/v1/runs/{run_id}/steps", {"name": "s " * 122 + grows,
                                                          "node_ref": "r " * 122 + grows},
                       format="json")
    assert resp.status_code == 201, resp.content
    assert "abc123" not in resp.json()["name"] + resp.json()["node_ref"]
