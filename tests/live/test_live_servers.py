"""Live streaming against real daphne processes: SSE, real WebSocket clients, two processes."""

from __future__ import annotations

import contextlib
import json
import threading

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect as ws_connect


@pytest.fixture(scope="module")
def keys(live_stack):
    return {"write": live_stack.api_key("runs:read,runs:write"),
            "read": live_stack.api_key("runs:read"),
            "ingest": live_stack.api_key("ingest")}


def new_running_run(stack, server, key) -> str:
    status, run = stack.request("POST", f"{server.url}/api/v1/runs", key=key,
                                body={"kind": "live.test"})
    assert status == 201, run
    status, body = stack.request("POST", f"{server.url}/api/v1/runs/{run['id']}/start", key=key,
                                 body={"worker_id": "w1"})
    assert status == 200, body
    return run["id"]


def append(stack, server, key, run_id, texts) -> list[int]:
    status, body = stack.request(
        "POST", f"{server.url}/api/v1/runs/{run_id}/events", key=key,
        body=[{"type": "log", "payload": {"text": t, "stream": "stdout"}} for t in texts])
    assert status == 201, body
    return [e["id"] for e in body["events"]]


def sse_frames(response):
    """Parse an SSE body into (event, id, data) tuples, comments as ("comment", None, text)."""
    event, event_id, data = None, None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield ("comment", None, line[1:].strip())
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            yield (event, event_id, json.loads("\n".join(data)))
            event, event_id, data = None, None, []


def test_sse_catches_up_follows_live_and_ends(live_stack, keys):
    server = live_stack.server()
    run_id = new_running_run(live_stack, server, keys["write"])
    before = append(live_stack, server, keys["write"], run_id, ["a", "b", "c"])
    headers = {"Authorization": f"Bearer {keys['read']}", "Accept": "text/event-stream",
               "Last-Event-ID": str(before[0])}
    seen, kinds = [], []
    with httpx.stream("GET", f"{server.url}/api/v1/runs/{run_id}/events/stream",
                      headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for kind, event_id, data in sse_frames(response):
            kinds.append(kind)
            if kind == "event":
                assert event_id == data["id"]
                seen.append(data)
                if data["payload"].get("text") == "c":  # caught up: now live
                    threading.Thread(target=append, args=(
                        live_stack, server, keys["write"], run_id, ["d", "e"])).start()
                if data["payload"].get("text") == "e":
                    live_stack.request("POST", f"{server.url}/api/v1/runs/{run_id}/succeed",
                                       key=keys["write"], body={})
            if kind == "end":
                assert data["state"] == "succeeded"
                break
    assert kinds[0] == "run"
    texts = [e["payload"].get("text") for e in seen if e["type"] == "log"]
    assert texts == ["b", "c", "d", "e"]
    assert seen[-1]["type"] == "run.succeeded"
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids))


def test_sse_errors_are_json(live_stack, keys):
    server = live_stack.server()
    run_id = new_running_run(live_stack, server, keys["write"])
    url = f"{server.url}/api/v1/runs/{run_id}/events/stream"
    sse = {"Accept": "text/event-stream"}
    anonymous = httpx.get(url, headers=sse)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"]
    ingest = httpx.get(url, headers={**sse, "Authorization": f"Bearer {keys['ingest']}"})
    assert ingest.status_code == 403
    bad = httpx.get(url, headers={**sse, "Authorization": f"Bearer {keys['read']}",
                                  "Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    missing = httpx.get(f"{server.url}/api/v1/runs/run_00000000000000000000000000/events/stream",
                        headers={**sse, "Authorization": f"Bearer {keys['read']}"})
    assert missing.status_code == 404


def receive_until(ws, predicate, limit: int = 1000) -> list[dict]:
    messages = []
    for _ in range(limit):
        message = json.loads(ws.recv(timeout=15))
        messages.append(message)
        if message["type"] == "event":
            # A finished run's stream may have ended and closed meanwhile: nothing to ack.
            with contextlib.suppress(ConnectionClosedOK):
                ws.send(json.dumps({"type": "ack", "last_id": message["event"]["id"]}))
        if predicate(message):
            return messages
    raise AssertionError("never arrived")


def test_real_websocket_client_gets_catch_up_and_live_events(live_stack, keys):
    server = live_stack.server()
    run_id = new_running_run(live_stack, server, keys["write"])
    first = append(live_stack, server, keys["write"], run_id, ["one", "two"])
    with ws_connect(f"{server.ws_url}/ws/runs/{run_id}/?after_id={first[0]}",
                    additional_headers={"Authorization": f"Bearer {keys['read']}"}) as ws:
        messages = receive_until(
            ws, lambda m: m["type"] == "event" and m["event"]["id"] == first[1])
        assert messages[0]["type"] == "run"
        live = append(live_stack, server, keys["write"], run_id, ["three"])
        messages = receive_until(ws, lambda m: m["type"] == "event")
        assert messages[-1]["event"]["id"] == live[0]


def test_event_appended_through_one_process_reaches_a_client_of_another(live_stack, keys):
    """Through Redis when it is configured, else through the database (runs/follow.py)."""
    a, b = live_stack.server("a"), live_stack.server("b")
    assert a.process.pid != b.process.pid
    run_id = new_running_run(live_stack, a, keys["write"])
    with ws_connect(f"{a.ws_url}/ws/runs/{run_id}/",
                    additional_headers={"Authorization": f"Bearer {keys['read']}"}) as on_a, \
         ws_connect(f"{b.ws_url}/ws/projects/default/",  # the latest 100, then live
                    additional_headers={"Authorization": f"Bearer {keys['read']}"}) as on_b:
        receive_until(on_a, lambda m: m["type"] == "run")
        ids = append(live_stack, b, keys["write"], run_id, ["from b"])  # appended through b
        got = receive_until(on_a, lambda m: m["type"] == "event" and m["event"]["id"] == ids[0])
        assert got[-1]["event"]["payload"]["text"] == "from b"
        ids = append(live_stack, a, keys["write"], run_id, ["from a"])  # and the other way
        got = receive_until(on_b, lambda m: m["type"] == "event" and m["event"]["id"] == ids[0])
        assert got[-1]["event"]["run_id"] == run_id
