"""Run events can't be changed or deleted through the ORM or the admin."""

from __future__ import annotations

import pytest

from runs.models import AppendOnlyError, RunEvent
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_orm_cannot_update_or_delete_events(project):
    RunFactory()
    event = RunEvent.objects.get()
    event.type = "tampered"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        RunEvent.objects.update(type="tampered")
    with pytest.raises(AppendOnlyError):
        RunEvent.objects.filter(pk=event.pk).delete()
    assert RunEvent.objects.get().type == "run.created"


def test_admin_offers_no_change_or_delete(client, admin_user, project):
    RunFactory()
    event = RunEvent.objects.get()
    client.force_login(admin_user)
    page = client.get(f"/admin/runs/runevent/{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    delete = client.post(f"/admin/runs/runevent/{event.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert client.get("/admin/runs/runevent/add/").status_code == 403
    assert RunEvent.objects.filter(pk=event.pk).exists()
