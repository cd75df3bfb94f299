"""Changes made by other processes — a worker, the CLI, a shell — reach live clients whatever
the channel layer: the in-memory layer of the embedded default hears only its own process, so
the streams also follow the database (runs/follow.py)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect as ws_connect

from tests.live.test_live_servers import new_running_run, receive_until, sse_frames
from tests.livestack import LiveStack


def in_another_process(stack, code: str) -> None:
    """``code`` runs in a ``manage.py shell`` of its own (Django set up, ``services`` imported),
    the way a worker or the CLI changes a run."""
    stack.shell("from runs import services\n" + code)


def test_run_socket_follows_another_process_to_the_end(live_stack):
    key = live_stack.api_key("runs:read,runs:write")
    server = live_stack.server()
    run_id = new_running_run(live_stack, server, key)
    with ws_connect(f"{server.ws_url}/ws/runs/{run_id}/",
                    additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        first = receive_until(ws, lambda m: m["type"] == "run")[-1]["run"]
        assert first["state"] == "running"
        in_another_process(live_stack, (
            f"services.event_append_batch(run_id={run_id!r}, events=[{{'type': 'log', "
            "'payload': {'text': 'from a worker', 'stream': 'stdout'}}])\n"
            f"services.run_succeed(run_id={run_id!r})\n"))
        messages = receive_until(ws, lambda m: m["type"] == "end")
        texts = [m["event"]["payload"].get("text") for m in messages if m["type"] == "event"]
        assert "from a worker" in texts
        types = [m["event"]["type"] for m in messages if m["type"] == "event"]
        assert types[-1] == "run.succeeded"
        states = [m["run"]["state"] for m in messages if m["type"] == "run"]
        assert states[-1] == "succeeded"
        event_ids = [m["event"]["id"] for m in messages if m["type"] == "event"]
        assert messages[-1] == {"type": "end", "state": "succeeded", "last_id": event_ids[-1]}
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1000


def test_project_sse_follows_runs_changed_by_another_process(live_stack):
    key = live_stack.api_key("runs:read,runs:write")
    server = live_stack.server()
    run_id = new_running_run(live_stack, server, key)
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    seen = []
    with httpx.stream("GET", f"{server.url}/api/v1/projects/default/events/stream",
                      headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        appended = False
        deadline = time.monotonic() + 120  # keeps a broken stream from hanging the suite
        for kind, event_id, data in sse_frames(response):
            assert time.monotonic() < deadline, f"never got run.failed: {seen[-5:]}"
            if kind == "event":
                assert event_id == data["id"]
                seen.append(data)
                if data["run_id"] == run_id and data["type"] == "run.started" and not appended:
                    appended = True  # caught up to our run: now change it elsewhere
                    in_another_process(live_stack, (
                        f"services.event_append_batch(run_id={run_id!r}, events=[{{'type': 'note', "
                        "'payload': {'text': 'elsewhere'}}])\n"
                        f"services.run_fail(run_id={run_id!r}, error='boom', retryable=False)\n"))
                if data["run_id"] == run_id and data["type"] == "run.failed":
                    break
            elif kind == "run" and data["id"] == run_id:
                seen.append({"snapshot": data["state"]})
    mine = [e["type"] for e in seen if e.get("run_id") == run_id]
    assert mine[-3:] == ["run.started", "note", "run.failed"]
    ids = [e["id"] for e in seen if "id" in e]
    assert len(ids) == len(set(ids))


def test_project_sse_refuses_what_the_socket_refuses(live_stack):
    server = live_stack.server()
    url = f"{server.url}/api/v1/projects/default/events/stream"
    sse = {"Accept": "text/event-stream"}
    assert httpx.get(url, headers=sse).status_code == 401
    ingest = live_stack.api_key("ingest")
    assert httpx.get(url, headers={**sse, "Authorization": f"Bearer {ingest}"}).status_code == 403
    read = live_stack.api_key("runs:read")
    missing = httpx.get(f"{server.url}/api/v1/projects/nope/events/stream",
                        headers={**sse, "Authorization": f"Bearer {read}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    bad = httpx.get(url, headers={**sse, "Authorization": f"Bearer {read}", "Last-Event-ID": "x"})
    assert bad.status_code == 400 and json.loads(bad.text)["error"]["code"]


def test_without_redis_another_process_reaches_the_socket(tmp_path):
    """The suite's database (PostgreSQL in CI's second pass) with the in-memory layer: a change
    made by another process still reaches an open socket, through the database watcher."""
    stack = LiveStack.create(tmp_path, env={"REDIS_URL": ""})
    try:
        key = stack.api_key("runs:read,runs:write")
        server = stack.server()
        run_id = new_running_run(stack, server, key)
        with ws_connect(f"{server.ws_url}/ws/runs/{run_id}/",
                        additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            receive_until(ws, lambda m: m["type"] == "run")
            in_another_process(stack, (
                f"services.event_append_batch(run_id={run_id!r}, events=[{{'type': 'note', "
                "'payload': {'text': 'no redis here'}}])\n"))
            got = receive_until(ws, lambda m: m["type"] == "event"
                                and m["event"]["type"] == "note")
            assert got[-1]["event"]["payload"]["text"] == "no redis here"
    finally:
        stack.close()
