"""Events reach the run and project groups only after their transaction commits."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from runs import services
from runs.realtime import project_group, run_group
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def listen(group: str) -> str:
    # One event loop per test for new_channel, group_add and receive: the Redis pub/sub
    # layer's subscriptions belong to the loop that made them.
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def receive(channel: str, timeout: float = 2.0):
    try:
        return await asyncio.wait_for(get_channel_layer().receive(channel), timeout)
    except TimeoutError:
        return None


@pytest.mark.asyncio
async def test_committed_events_are_broadcast_to_run_and_project(project):
    run = await database_sync_to_async(RunFactory)(state="running")
    on_run, on_project = await listen(run_group(run.id)), await listen(project_group("default"))
    await database_sync_to_async(services.event_append_batch)(
        run_id=run.id, events=[{"type": "note", "payload": {"n": 1}}])
    for channel in (on_run, on_project):
        message = await receive(channel)
        assert message["type"] == "run.update"
        assert [e["payload"] for e in message["events"]] == [{"n": 1}]
        assert message["first_id"] == message["last_id"] == message["events"][0]["id"]
        assert message["run"]["state"] == "running" and message["run"]["event_count"] == 3


@pytest.mark.asyncio
async def test_big_batches_travel_as_an_id_range(project):
    run = await database_sync_to_async(RunFactory)(state="running")
    channel = await listen(run_group(run.id))
    result = await database_sync_to_async(services.event_append_batch)(
        run_id=run.id, events=[{"type": "note"}] * 500)
    message = await receive(channel)
    assert message["events"] is None
    assert (message["first_id"], message["last_id"]) == (result.events[0].id,
                                                         result.events[-1].id)


@pytest.mark.asyncio
async def test_rolled_back_events_are_never_broadcast(project):
    run = await database_sync_to_async(RunFactory)(state="running")
    channel = await listen(run_group(run.id))

    def append_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            services.event_append_batch(run_id=run.id, events=[{"type": "note"}])
            raise RuntimeError("the caller's transaction fails")

    await database_sync_to_async(append_then_fail)()
    assert await receive(channel, timeout=0.3) is None


def test_a_broken_channel_layer_never_fails_the_write(project, settings):
    run = RunFactory(state="running")
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
    }}
    result = services.event_append_batch(run_id=run.id, events=[{"type": "note"}])
    assert result.accepted == 1


@pytest.mark.asyncio
async def test_a_burst_arrives_complete_and_in_order(project):
    """Messages that queue up in the sender may leave as one ``run.batch`` per group; either
    way every update arrives, in order."""
    from runs import realtime

    run = await database_sync_to_async(RunFactory)(state="running")
    channel = await listen(run_group(run.id))

    def burst():
        for n in range(30):
            realtime.send((run_group(run.id),), {"type": "run.update", "run_id": run.id, "n": n,
                                                 "events": [], "run": {}, "steps": []})

    await database_sync_to_async(burst)()
    seen = []
    while len(seen) < 30:
        message = await receive(channel)
        assert message is not None, f"only {seen} arrived"
        updates = message["messages"] if message["type"] == "run.batch" else [message]
        seen += [m["n"] for m in updates]
    assert seen == list(range(30))
