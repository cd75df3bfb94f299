"""A run that can be claimed wakes the workers on LISTEN: ``run_enqueue`` sends the NOTIFY when
its run is due (at commit), never for a run that waits for its ``run_after``."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import transaction
from django.utils import timezone

from runs import services
from runs.wakeup import QUEUE_CHANNEL
from tests.queue.conftest import database_url

pytestmark = [pytest.mark.postgres,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def listener():
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        yield conn


def received(conn: psycopg.Connection) -> list[str]:
    # A NOTIFY sent by a committed transaction is on its way: the timeout only bounds the wait
    # for one that was never sent.
    return [n.payload for n in conn.notifies(timeout=0.5)]


def test_enqueue_wakes_the_workers_of_its_kind(project, listener):
    services.run_enqueue(project=project, kind="system.noop")
    assert received(listener) == ["system.noop"]


def test_a_delayed_run_wakes_nobody(project, listener):
    services.run_enqueue(project=project, kind="system.noop",
                         run_after=timezone.now() + timedelta(hours=1))
    assert received(listener) == []


def test_the_wake_up_leaves_at_commit_and_never_for_a_rollback(project, listener):
    with transaction.atomic():
        services.run_enqueue(project=project, kind="system.noop", name="kept")
        assert received(listener) == []
    assert received(listener) == ["system.noop"]
    with pytest.raises(RuntimeError), transaction.atomic():
        services.run_enqueue(project=project, kind="system.noop", name="rolled back")
        raise RuntimeError("rolled back")
    assert received(listener) == []
