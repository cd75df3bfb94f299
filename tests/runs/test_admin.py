"""The admin: run lists with filters and search, run pages with steps and events, actions."""

from __future__ import annotations

import re

import pytest

from runs import services
from runs.demo import demo_runs_create
from runs.models import Run, RunEvent
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(project):
    demo_runs_create(project=project)


@pytest.mark.parametrize("url", [
    "/admin/runs/run/",
    "/admin/runs/run/?state__exact=failed",
    "/admin/runs/run/?q=parser",
    "/admin/runs/run/?created_at__year=2026",
    "/admin/runs/step/",
    "/admin/runs/runevent/?level__exact=error",
    "/admin/runs/project/",
    "/admin/runs/worker/",
    "/admin/runs/worker/?source__exact=api",
    "/admin/tracefoundry/apikey/",
    "/admin/payloads/payloadblob/",
    "/admin/traces/trace/",
    "/admin/traces/trace/?status__exact=error",
    "/admin/traces/span/?span_type__exact=llm",
    "/admin/traces/trace/?model=gpt-4o",
    "/admin/auth/user/",
    "/admin/auth/group/",
])
def test_admin_pages_render(client, admin_user, demo, url):
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_run_page_shows_steps_events_and_link(client, admin_user, demo):
    client.force_login(admin_user)
    run = Run.objects.get(idempotency_key="demo-1")
    page = client.get(f"/admin/runs/run/{run.pk}/change/").content.decode()
    assert "Latest events (newest first" in page
    assert f"?run__id__exact={run.pk}" in page
    assert "run.succeeded" in page and "llm_request" in page
    assert "plan" in page and "succeeded" in page
    events = client.get(f"/admin/runs/runevent/?run__id__exact={run.pk}").content.decode()
    assert events.count("/admin/runs/runevent/") > run.event_count


def test_event_inline_is_capped_to_the_runs_newest_events(client, admin_user, project):
    run = RunFactory(state="running")
    services.event_append_batch(run_id=run.id, events=[{"type": "note"}] * 120)
    newer = RunFactory(state="running")  # another run's events are newer than all of them
    services.event_append_batch(run_id=newer.id, events=[{"type": "note"}] * 60)
    client.force_login(admin_user)
    page = client.get(f"/admin/runs/run/{run.pk}/change/").content.decode()
    rows = page.count('<td class="field-seq">')
    assert rows == 50
    seqs = [int(s) for s in re.findall(r'field-seq">\s*<p>(\d+)</p>', page)]
    assert seqs == list(range(122, 72, -1))  # this run's 50 newest events, newest first


def test_cancel_action(client, engineer, project):
    queued, running = RunFactory(), RunFactory(state="running")
    client.force_login(engineer)
    resp = client.post("/admin/runs/run/", {"action": "cancel_runs",
                                            "_selected_action": [queued.pk, running.pk]},
                       follow=True)
    assert resp.status_code == 200
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.state == "canceled"
    assert running.state == "running" and running.cancel_requested_at is not None
    assert RunEvent.objects.filter(type="run.cancel_requested").count() == 1


def test_viewer_can_look_but_not_act(client, viewer, demo):
    client.force_login(viewer)
    assert client.get("/admin/runs/run/").status_code == 200
    page = client.get("/admin/runs/run/").content.decode()
    assert "cancel_runs" not in page
    assert client.get("/admin/tracefoundry/apikey/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403
