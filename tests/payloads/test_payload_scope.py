"""API keys read only the payloads their own project's data refers to."""

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
