"""The admin's "Export selected as bundle" action on the Trace and Run lists: one row gives its
bundle, several a zip of bundles (``<id>.zip`` each, stored), in the mode of the user's role;
too large a selection, or a user without a role, gets a message instead."""

from __future__ import annotations

import zipfile

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import AsyncClient

from bundles.admin import MAX_SELECTED
from bundles.exports import run_export
from bundles.multi_export import MISSING, bundles_zip
from runs.models import Run
from tests.bundles.conftest import downloaded, manifest_of, read_zip
from tests.factories import TraceFactory, UserFactory
from tests.runs.factories import RunFactory
from traces.models import Trace

pytestmark = pytest.mark.django_db
TRACES = ["a1" * 16, "a2" * 16, "a3" * 16]

# model → (changelist, action name, manifest key, the id the bundle is named by)
ADMIN = {
    "trace": ("/admin/traces/trace/", "export_traces", "trace_id", lambda item: item.trace_id),
    "run": ("/admin/runs/run/", "export_runs", "run_id", lambda item: item.run.id),
}


def run_action(client, changelist: str, action: str, pks: list):
    return client.post(changelist, {"action": action, "_selected_action": [str(p) for p in pks],
                                    "index": 0})


def selected(model: str, items) -> list:
    if model == "trace":
        return list(Trace.objects.filter(trace_id__in=[i.trace_id for i in items])
                    .values_list("pk", flat=True))
    return [i.run.id for i in items]


@pytest.mark.parametrize("model", sorted(ADMIN))
def test_the_action_is_offered_on_the_list(client, admin_user, ingest_trace, model):
    ingest_trace(TRACES[0])  # an empty list shows no actions
    client.force_login(admin_user)
    changelist, action, _, _ = ADMIN[model]
    page = client.get(changelist).content.decode()
    assert f'<option value="{action}">Export selected as bundle</option>' in page


@pytest.mark.parametrize("model", sorted(ADMIN))
def test_one_selected_row_downloads_its_bundle(client, admin_user, ingest_trace, model):
    item = ingest_trace(TRACES[0])
    changelist, action, key, ident = ADMIN[model]
    client.force_login(admin_user)

    resp = run_action(client, changelist, action, selected(model, [item]))

    bundle = downloaded(resp)
    assert resp["X-TraceFoundry-Export-Mode"] == "full"
    if model == "trace":
        assert f'filename="tracefoundry-{TRACES[0]}.zip"' in resp["Content-Disposition"]
    manifest = manifest_of(bundle)
    assert manifest[key] == ident(item)
    assert (manifest["trace_id"], manifest["run_id"]) == (item.trace_id, item.run.id)
    assert manifest["export_mode"] == "full"
    assert manifest["counts"]["payloads"] >= 1


@pytest.mark.parametrize("model", sorted(ADMIN))
def test_several_rows_download_a_zip_of_bundles(client, engineer, ingest_trace, model):
    items = [ingest_trace(t) for t in TRACES]
    changelist, action, key, ident = ADMIN[model]
    client.force_login(engineer)

    resp = run_action(client, changelist, action, selected(model, items))

    outer = read_zip(downloaded(resp))
    assert f'filename="tracefoundry-3-{model}s.zip"' in resp["Content-Disposition"]
    assert resp["X-TraceFoundry-Export-Mode"] == "full"
    assert sorted(outer.namelist()) == sorted(f"{ident(i)}.zip" for i in items)
    for item in items:
        info = outer.getinfo(f"{ident(item)}.zip")
        assert info.compress_type == zipfile.ZIP_STORED  # a bundle is deflated already
        manifest = manifest_of(outer.read(info))
        assert manifest[key] == ident(item)
        assert (manifest["trace_id"], manifest["run_id"]) == (item.trace_id, item.run.id)
        assert manifest["export_mode"] == "full"


@pytest.fixture
def staff_viewer(viewer):
    """A viewer the admin lets in (staff; the viewer group holds the view permissions)."""
    assert viewer.is_staff and Permission.objects.filter(group__name="viewer",
                                                         codename="view_trace").exists()
    return viewer


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("model", sorted(ADMIN))
def test_a_viewer_gets_strict_bundles(client, staff_viewer, ingest_trace, model, count):
    items = [ingest_trace(t) for t in TRACES[:count]]
    changelist, action, _, ident = ADMIN[model]
    client.force_login(staff_viewer)

    resp = run_action(client, changelist, action, selected(model, items))

    data = downloaded(resp)
    assert resp["X-TraceFoundry-Export-Mode"] == "strict"
    assert resp["Content-Disposition"].endswith('-strict.zip"')
    if count == 1:
        bundles = [data]
    else:
        outer = read_zip(data)
        bundles = [outer.read(f"{ident(i)}.zip") for i in items]
    for bundle in bundles:
        assert manifest_of(bundle)["export_mode"] == "strict"
        assert not [n for n in read_zip(bundle).namelist() if n.startswith("payloads/")]


def test_a_selection_over_the_cap_is_refused_with_a_message(client, admin_user):
    TraceFactory.create_batch(MAX_SELECTED + 1, service_name="capped")
    client.force_login(admin_user)
    pks = list(Trace.objects.values_list("pk", flat=True))

    resp = run_action(client, "/admin/traces/trace/", "export_traces", pks)

    assert resp.status_code == 302 and not resp.streaming
    page = client.get(resp["Location"]).content.decode()
    assert f"Select at most {MAX_SELECTED} traces to export at once" in page


def test_exactly_the_cap_is_exported(client, admin_user):
    runs = [RunFactory() for _ in range(MAX_SELECTED)]
    client.force_login(admin_user)

    resp = run_action(client, "/admin/runs/run/", "export_runs", [r.id for r in runs])

    assert len(read_zip(downloaded(resp)).namelist()) == MAX_SELECTED


def test_a_staff_user_without_a_role_is_told_why(client):
    user = UserFactory(username="staff-no-role")
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    run = RunFactory()
    client.force_login(user)

    resp = run_action(client, "/admin/runs/run/", "export_runs", [run.id])

    assert resp.status_code == 302 and not resp.streaming
    assert "Exporting runs needs a role" in client.get(resp["Location"]).content.decode()


def test_a_row_gone_before_its_turn_is_named_in_missing_txt():
    kept = RunFactory()
    gone = RunFactory()
    Run.objects.filter(pk=gone.pk).delete()

    data = b"".join(bundles_zip([gone.id, kept.id],
                                lambda ident: run_export(access=None, run_id=ident)))

    outer = read_zip(data)
    assert outer.namelist() == [f"{kept.id}.zip", MISSING]
    assert gone.id in outer.read(MISSING).decode()
    assert manifest_of(outer.read(f"{kept.id}.zip"))["run_id"] == kept.id


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("count", [1, 3])
async def test_under_asgi_the_download_streams_asynchronously(admin_user, ingest_trace, count):
    """An ASGI server would collect a synchronous iterator whole before sending a byte; the
    action hands it an asynchronous one, whose steps read the database in the request's
    thread."""
    items = [await sync_to_async(ingest_trace)(t) for t in TRACES[:count]]
    client = AsyncClient()
    await client.aforce_login(admin_user)

    resp = await client.post("/admin/runs/run/", {
        "action": "export_runs", "_selected_action": [i.run.id for i in items], "index": 0})

    assert resp.status_code == 200 and resp.is_async
    data = b"".join([chunk async for chunk in resp.streaming_content])
    # The steps ran in the thread of the request's sync code; a server closes its connection
    # when the response ends, the test client leaves that to the test.
    await sync_to_async(connections.close_all)()
    if count == 1:
        assert manifest_of(data)["run_id"] == items[0].run.id
    else:
        outer = read_zip(data)
        assert sorted(outer.namelist()) == sorted(f"{i.run.id}.zip" for i in items)
