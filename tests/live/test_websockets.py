"""The live WebSocket streams through the real ASGI application (WebsocketCommunicator)."""

from __future__ import annotations

import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from runs import services
from runs.models import RunEvent
from tests.runs.factories import RunFactory
from tracefoundry.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True),
              pytest.mark.asyncio]

ORIGIN = (b"origin", b"http://testserver")


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return [(b"cookie", f"sessionid={cookie}".encode()), ORIGIN]


def key_headers(raw: str, *, origin: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"authorization", f"Bearer {raw}".encode())]
    if origin:
        headers.append((b"origin", origin))
    return headers


async def connect(path: str, headers) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    return ws


async def close_code(ws: WebsocketCommunicator) -> int:
    while True:
        message = await ws.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return message["code"]


async def collect(ws, count: int, *, ack: bool = True, timeout: float = 10) -> tuple[list, list]:
    """Receive until ``count`` events arrived; returns (events, other messages)."""
    events, others = [], []
    while len(events) < count:
        message = await ws.receive_json_from(timeout=timeout)
        if message["type"] == "event":
            events.append(message["event"])
            if ack:
                await ws.send_json_to({"type": "ack", "last_id": message["event"]["id"]})
        else:
            others.append(message)
    return events, others


async def next_run(ws) -> dict:
    """The next run snapshot the server sends (events in between are acknowledged)."""
    while True:
        message = await ws.receive_json_from(timeout=5)
        if message["type"] == "run":
            return message["run"]
        await ws.send_json_to({"type": "ack", "last_id": message["event"]["id"]})


def append(run_id: str, n: int, start: int = 0, **extra) -> list[int]:
    result = services.event_append_batch(
        run_id=run_id,
        events=[{"type": "note", "payload": {"n": start + i}, **extra} for i in range(n)],
    )
    return [e.id for e in result.events]


def event_ids(run_id: str, after_id: int = 0) -> list[int]:
    return list(RunEvent.objects.filter(run_id=run_id, id__gt=after_id)
                .order_by("id").values_list("id", flat=True))


# --- who may connect --------------------------------------------------------------------------

async def test_anonymous_is_refused(project):
    run = await database_sync_to_async(RunFactory)()
    ws = await connect(f"/ws/runs/{run.id}/", [ORIGIN])
    assert (await ws.receive_json_from())["code"] == 4401
    assert await close_code(ws) == 4401


async def test_foreign_origin_is_refused_at_the_handshake(project, viewer):
    run = await database_sync_to_async(RunFactory)()
    headers = [h for h in await database_sync_to_async(session_headers)(viewer) if h != ORIGIN]
    ws = WebsocketCommunicator(application, f"/ws/runs/{run.id}/",
                               headers=[*headers, (b"origin", b"https://evil.example")])
    connected, _ = await ws.connect(timeout=5)
    assert not connected


async def test_session_without_origin_is_refused(project, viewer):
    run = await database_sync_to_async(RunFactory)()
    headers = [h for h in await database_sync_to_async(session_headers)(viewer) if h != ORIGIN]
    ws = WebsocketCommunicator(application, f"/ws/runs/{run.id}/", headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert not connected


async def test_key_without_origin_connects_but_not_with_a_foreign_one(project, make_key):
    run = await database_sync_to_async(RunFactory)()
    _, raw = await database_sync_to_async(make_key)("runs:read")
    ws = await connect(f"/ws/runs/{run.id}/", key_headers(raw))
    assert (await ws.receive_json_from())["type"] == "run"
    await ws.disconnect()
    ws = WebsocketCommunicator(application, f"/ws/runs/{run.id}/",
                               headers=key_headers(raw, origin=b"https://evil.example"))
    assert not (await ws.connect(timeout=5))[0]


async def test_user_without_role_is_forbidden(project, no_role_user):
    run = await database_sync_to_async(RunFactory)()
    ws = await connect(f"/ws/runs/{run.id}/",
                       await database_sync_to_async(session_headers)(no_role_user))
    assert await close_code(ws) == 4403


async def test_key_scopes_and_projects(project, other_project, make_key):
    run = await database_sync_to_async(RunFactory)()
    _, ingest = await database_sync_to_async(make_key)("ingest")
    ws = await connect(f"/ws/runs/{run.id}/", key_headers(ingest))
    assert await close_code(ws) == 4403
    _, foreign = await database_sync_to_async(make_key)("runs:read", project_obj=other_project)
    ws = await connect(f"/ws/runs/{run.id}/", key_headers(foreign))
    assert await close_code(ws) == 4404
    ws = await connect("/ws/projects/default/", key_headers(foreign))
    assert await close_code(ws) == 4404
    ws = await connect("/ws/projects/other/", key_headers(foreign))
    assert await ws.receive_nothing(timeout=0.3)  # accepted, and nothing to catch up on
    await ws.disconnect()
    ws = await connect(f"/ws/runs/{run.id}/", key_headers("tf_not-a-real-key"))
    assert await close_code(ws) == 4401


async def test_unknown_run(project, viewer):
    headers = await database_sync_to_async(session_headers)(viewer)
    ws = await connect("/ws/runs/run_00000000000000000000000000/", headers)
    assert await close_code(ws) == 4404


@pytest.mark.parametrize("after_id", ["abc", "-1", "-0", "+1", "1.5", "1e3", "%201", "%D9%A3",
                                      str(2**63)])
@pytest.mark.parametrize("stream", ["run", "project"])
async def test_bad_after_id_closes_with_4400(project, viewer, stream, after_id):
    headers = await database_sync_to_async(session_headers)(viewer)
    run = await database_sync_to_async(RunFactory)()
    path = f"/ws/runs/{run.id}/" if stream == "run" else "/ws/projects/default/"
    ws = await connect(f"{path}?after_id={after_id}", headers)
    assert await close_code(ws) == 4400


@pytest.mark.parametrize("stream", ["run", "project"])
async def test_after_id_zero_and_the_largest_id_are_accepted(project, viewer, stream):
    headers = await database_sync_to_async(session_headers)(viewer)
    run = await database_sync_to_async(RunFactory)()
    path = f"/ws/runs/{run.id}/" if stream == "run" else "/ws/projects/default/"
    for after_id in ("0", str(2**63 - 1)):
        ws = await connect(f"{path}?after_id={after_id}", headers)
        if not await ws.receive_nothing(timeout=0.3):  # silent, or a snapshot/catch-up
            assert (await ws.receive_output(timeout=5))["type"] == "websocket.send"
        await ws.disconnect()


# --- what is sent -----------------------------------------------------------------------------

async def test_snapshot_first_then_catch_up_then_live(project, viewer):
    run = await database_sync_to_async(RunFactory)(state="running")
    step = await database_sync_to_async(services.step_create)(run_id=run.id, name="build")
    await database_sync_to_async(services.step_transition)(
        run_id=run.id, step_id=step.id, action="start")
    await database_sync_to_async(services.event_append_batch)(run_id=run.id, events=[
        {"type": "log", "step_id": step.id, "payload": {"text": "compiling", "stream": "stdout"}}])
    ids = await database_sync_to_async(event_ids)(run.id)

    ws = await connect(f"/ws/runs/{run.id}/?after_id={ids[1]}",
                       await database_sync_to_async(session_headers)(viewer))
    first = await ws.receive_json_from()
    assert first["type"] == "run"
    assert first["run"]["state"] == "running"
    [build] = first["run"]["steps"]
    assert build["name"] == "build" and build["state"] == "running"
    events, _ = await collect(ws, len(ids) - 2)
    assert [e["id"] for e in events] == ids[2:]

    await database_sync_to_async(services.step_transition)(
        run_id=run.id, step_id=step.id, action="succeed")
    events, _ = await collect(ws, 1)
    assert events[0]["type"] == "step.succeeded"
    snapshot = await next_run(ws)  # pushed right after the event that changed it
    assert snapshot["steps"][0]["state"] == "succeeded"
    assert snapshot["steps_completed"] == 1
    await ws.disconnect()


async def test_last_log_line_per_step_is_pushed(project, viewer):
    run = await database_sync_to_async(RunFactory)(state="running")
    step = await database_sync_to_async(services.step_create)(run_id=run.id, name="test")
    ws = await connect(f"/ws/runs/{run.id}/",
                       await database_sync_to_async(session_headers)(viewer))
    snapshot = (await ws.receive_json_from())["run"]
    assert snapshot["steps"][0]["last_log"] is None
    await collect(ws, len(await database_sync_to_async(event_ids)(run.id)))
    await database_sync_to_async(services.event_append_batch)(run_id=run.id, events=[
        {"type": "log", "step_id": step.id, "payload": {"text": "line 1", "stream": "stdout"}},
        {"type": "log", "step_id": step.id, "payload": {"text": "oops", "stream": "stderr"}},
    ])
    await collect(ws, 2)
    last = (await next_run(ws))["steps"][0]["last_log"]
    assert (last["text"], last["stream"]) == ("oops", "stderr")
    await ws.disconnect()
    # A new client gets the same last line from the database.
    ws = await connect(f"/ws/runs/{run.id}/",
                       await database_sync_to_async(session_headers)(viewer))
    assert (await ws.receive_json_from())["run"]["steps"][0]["last_log"]["text"] == "oops"
    await ws.disconnect()


async def test_no_gap_no_duplicate_while_events_are_appended_during_catch_up(project, viewer):
    run = await database_sync_to_async(RunFactory)(state="running")
    for _ in range(3):
        await database_sync_to_async(append)(run.id, 500)
    done = threading.Event()

    def writer():
        try:
            for i in range(40):
                append(run.id, 1 if i % 3 else 300, start=10_000 + i)  # singles and big batches
        finally:
            done.set()

    headers = await database_sync_to_async(session_headers)(viewer)
    thread = threading.Thread(target=writer)
    thread.start()
    ws = await connect(f"/ws/runs/{run.id}/?after_id=0", headers)
    events = []
    while not (done.is_set() and await ws.receive_nothing(timeout=1.0)):
        if await ws.receive_nothing(timeout=0.05):
            continue
        message = await ws.receive_json_from()
        if message["type"] == "event":
            events.append(message["event"])
            await ws.send_json_to({"type": "ack", "last_id": message["event"]["id"]})
    thread.join()
    expected = await database_sync_to_async(event_ids)(run.id)
    got = [e["id"] for e in events]
    assert len(got) == len(set(got)), "duplicates"
    assert got == expected, "gap or disorder"
    assert [e["seq"] for e in events] == list(range(1, len(expected) + 1))
    await ws.disconnect()


async def test_slow_client_is_bounded_and_resyncs(project, viewer, settings):
    settings.TRACEFOUNDRY_WS_WINDOW = 50
    settings.TRACEFOUNDRY_WS_ACK_TIMEOUT = 0.3
    run = await database_sync_to_async(RunFactory)(state="running")
    base = await database_sync_to_async(event_ids)(run.id)
    headers = await database_sync_to_async(session_headers)(viewer)
    ws = await connect(f"/ws/runs/{run.id}/?after_id={base[-1]}", headers)
    assert (await ws.receive_json_from())["type"] == "run"
    for i in range(10):
        await database_sync_to_async(append)(run.id, 30, start=i * 30)
    received, resync = [], None
    while resync is None:
        message = await ws.receive_json_from(timeout=5)
        if message["type"] == "event":
            received.append(message["event"]["id"])
        elif message["type"] == "resync":
            resync = message
    assert len(received) == 50  # the window, never more, however much was appended
    assert resync["after_id"] == base[-1]  # nothing was acknowledged
    assert await close_code(ws) == 4008

    # Reconnecting where it stopped, acknowledging as it goes, it gets the rest exactly once.
    ws = await connect(f"/ws/runs/{run.id}/?after_id={received[-1]}", headers)
    rest, _ = await collect(ws, 300 - 50)
    assert received + [e["id"] for e in rest] == (
        await database_sync_to_async(event_ids)(run.id, base[-1]))
    await ws.disconnect()


async def test_acknowledging_client_gets_everything_through_a_small_window(
        project, viewer, settings):
    settings.TRACEFOUNDRY_WS_WINDOW = 20
    run = await database_sync_to_async(RunFactory)(state="running")
    await database_sync_to_async(append)(run.id, 500)
    ws = await connect(f"/ws/runs/{run.id}/",
                       await database_sync_to_async(session_headers)(viewer))
    expected = await database_sync_to_async(event_ids)(run.id)
    events, _ = await collect(ws, len(expected))
    assert [e["id"] for e in events] == expected
    await ws.disconnect()


async def test_project_stream_catches_up_and_follows_every_run(project, viewer):
    a = await database_sync_to_async(RunFactory)(state="running")
    b = await database_sync_to_async(RunFactory)(state="running")
    first = await database_sync_to_async(append)(a.id, 3)
    await database_sync_to_async(append)(b.id, 2)
    ws = await connect(f"/ws/projects/default/?after_id={first[0]}",
                       await database_sync_to_async(session_headers)(viewer))
    events, _ = await collect(ws, 4)
    assert [e["run_id"] for e in events] == [a.id, a.id, b.id, b.id]
    await database_sync_to_async(append)(b.id, 1)
    await database_sync_to_async(append)(a.id, 250)  # too big to inline: read back by id
    events, others = await collect(ws, 251)
    assert [e["run_id"] for e in events] == [b.id] + [a.id] * 250
    assert [e["seq"] for e in events[1:]] == list(range(events[1]["seq"],
                                                        events[1]["seq"] + 250))
    assert {m["run"]["id"] for m in others if m["type"] == "run"} <= {a.id, b.id}
    await ws.disconnect()


async def test_project_stream_without_after_id_starts_with_the_latest_events(project, viewer):
    run = await database_sync_to_async(RunFactory)(state="running")
    ids = await database_sync_to_async(append)(run.id, 150)
    ws = await connect("/ws/projects/default/",
                       await database_sync_to_async(session_headers)(viewer))
    events, _ = await collect(ws, 100)
    assert [e["id"] for e in events] == ids[-100:]
    await ws.disconnect()
