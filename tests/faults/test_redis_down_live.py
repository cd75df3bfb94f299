"""Redis stops under a real deployment (daphne with the Redis channel layer and cache): live
streams keep working from the database — new WebSocket handshakes and SSE streams open, open
sockets get every event appended meanwhile, without a gap — and writes never fail."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.live.test_live_servers import append, new_running_run, receive_until, sse_frames
from tests.livestack import LiveStack
from tests.traces.otlp_builders import json_request, json_span


@pytest.fixture
def stack(redis_server, tmp_path):
    stack = LiveStack.create(tmp_path, env={"REDIS_URL": redis_server.url,
                                            "CHANNEL_LAYER_PREFIX": "faults-live"})
    yield stack
    stack.close()


def events_until(ws, last_id: int) -> list[int]:
    got = receive_until(ws, lambda m: m["type"] == "event" and m["event"]["id"] == last_id)
    return [m["event"]["id"] for m in got if m["type"] == "event"]


def test_streams_follow_the_database_while_redis_is_down(redis_server, stack):
    key = stack.api_key("runs:read,runs:write")
    web = stack.server()
    auth = {"Authorization": f"Bearer {key}"}
    run_id = new_running_run(stack, web, key)
    with ws_connect(f"{web.ws_url}/ws/runs/{run_id}/", additional_headers=auth) as before:
        receive_until(before, lambda m: m["type"] == "run")
        first = append(stack, web, key, run_id, ["redis up"])
        assert events_until(before, first[-1])[-1:] == first  # after the run's lifecycle

        redis_server.stop()
        during = append(stack, web, key, run_id, ["redis down 1", "redis down 2"])
        # The open socket missed the broadcast; it gets the events from the database.
        assert events_until(before, during[-1]) == during
        # A new handshake while Redis is down is accepted and streams from the database.
        with ws_connect(f"{web.ws_url}/ws/runs/{run_id}/?after_id={first[-1]}",
                        additional_headers=auth) as fresh:
            assert events_until(fresh, during[-1]) == during
            more = append(stack, web, key, run_id, ["still down"])
            assert events_until(fresh, more[-1]) == more
            assert events_until(before, more[-1]) == more
        # So does SSE: headers at once, catch-up, then the end of the run.
        with httpx.stream("GET", f"{web.url}/api/v1/runs/{run_id}/events/stream",
                          headers={**auth, "Last-Event-ID": str(first[-1])},
                          timeout=30) as response:
            assert response.status_code == 200
            ids = []
            for kind, event_id, _data in sse_frames(response):
                if kind == "event":
                    ids.append(event_id)
                    if event_id == more[-1]:
                        break
            assert ids == [*during, *more]

        # Ingest and enqueue use Redis for their throttles: they fail open.
        ingest_key = stack.api_key("ingest")
        body = json_request([json_span("ab" * 16, "cd" * 8, "while redis is down")])
        spans = httpx.post(f"{web.url}/otlp/v1/traces", content=body,
                           headers={"Authorization": f"Bearer {ingest_key}",
                                    "Content-Type": "application/json"}, timeout=30)
        assert spans.status_code == 200, spans.text
        status, listing = stack.request("GET", f"{web.url}/api/v1/traces/{'ab' * 16}", key=key)
        assert status == 200 and listing["span_count"] == 1, listing
        status, run = stack.request("POST", f"{web.url}/api/v1/runs", key=key,
                                    body={"kind": "system.noop"})
        assert status == 201, run

        redis_server.start()
        after = append(stack, web, key, run_id, ["redis back"])
        assert events_until(before, after[-1]) == after
    status, run = stack.request("POST", f"{web.url}/api/v1/runs", key=key,
                                body={"kind": "system.noop"})
    assert status == 201, run
    assert " 500 " not in web.log()
