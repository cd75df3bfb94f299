"""``GET /api/v1/runs/{id}/events/stream``: a run's events as Server-Sent Events.

The view itself (authentication, permission, the run lookup) is an ordinary DRF view; what it
returns is a StreamingHttpResponse over an async generator, which Django's ASGI handler
drives on the event loop — an open stream holds no worker thread. The stream follows the
same rules as the WebSocket (runs/live.py): catch up from the database after ``Last-Event-ID``
(or ``?after_id=``), then live events from the channel layer, each exactly once, in order.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer

from runs import live, realtime
from runs.api.views import ERRORS, RunScopedView
from runs.errors import InvalidInput
from runs.models import FINISHED_RUN_STATES
from tracefoundry.api_inputs import MAX_BIGINT
from tracefoundry.api_renderers import FastJSONRenderer
from tracefoundry.permissions import allows
from tracefoundry.roles import Cap

log = logging.getLogger(__name__)


class EventStreamRenderer(BaseRenderer):
    """Lets clients ask for ``text/event-stream``; the body itself is streamed by the view."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return orjson.dumps(data)


def _frame(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _after_id(request) -> int:
    """``Last-Event-ID`` (an EventSource resuming) wins over ``?after_id=``; both must be valid
    when given."""
    given = [raw for raw in (request.headers.get("Last-Event-ID"),
                             request.query_params.get("after_id")) if raw]
    values = []
    for raw in given:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput("after_id / Last-Event-ID must be an integer",
                               details={"after_id": raw}) from None
        if value < 0:
            raise InvalidInput("after_id / Last-Event-ID must not be negative")
        if value > MAX_BIGINT:
            raise InvalidInput("after_id / Last-Event-ID is beyond any event id")
        values.append(value)
    return values[0] if values else 0


_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT}
# One Server-Sent Event as clients parse it (OpenAPI 3.0 has no item schema for streams).
SSE_FRAME = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["run", "event", "end"]},
        "data": {"type": "string", "description": "The frame's JSON object."},
        "id": {"type": "string", "description": "The event id, on `event` frames."},
        "retry": {"type": "integer"},
    },
}


async def event_stream(run_id: str, after_id: int, keepalive: float):
    layer = get_channel_layer()
    channel = await layer.new_channel() if layer is not None else None
    if channel:
        await layer.group_add(realtime.run_group(run_id), channel)
    try:
        last_id, last_seq = await database_sync_to_async(live.run_cursor_start)(run_id, after_id)
        cursor = live.RunCursor(last_id=last_id, last_seq=last_seq)
        state = live.SnapshotState(
            snapshot=await database_sync_to_async(live.run_live_snapshot)(run_id))
        yield b"retry: 2000\n\n" + _frame("run", state.snapshot)

        async def from_database():
            while True:
                events = await database_sync_to_async(live.run_events_after)(
                    run_id, cursor.last_id, live.PAGE)
                for event in events:
                    cursor.advance(event)
                    state.saw_event(event)
                    yield _frame("event", event, event["id"])
                if len(events) < live.PAGE:
                    return

        async for frame in from_database():
            yield frame
        while True:
            snapshot = state.take()
            if snapshot is not None:
                yield _frame("run", snapshot)
            if state.snapshot["state"] in FINISHED_RUN_STATES:
                yield _frame("end", {"state": state.snapshot["state"],
                                     "last_id": cursor.last_id})
                return
            if channel is None:
                await asyncio.sleep(keepalive)
                yield b": keepalive\n\n"
                async for frame in from_database():
                    yield frame
                continue
            try:
                message = await asyncio.wait_for(layer.receive(channel), keepalive)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            for update in message["messages"] if message["type"] == "run.batch" else [message]:
                state.merge_message(update)
                events = update.get("events")
                fresh = cursor.fresh(events) if events is not None else None
                if fresh is None:
                    async for frame in from_database():
                        yield frame
                    continue
                for event in fresh:
                    cursor.advance(event)
                    state.saw_event(event)
                    yield _frame("event", event, event["id"])
    finally:
        if channel:
            try:
                await layer.group_discard(realtime.run_group(run_id), channel)
            except Exception:  # the client is gone either way
                log.debug("group_discard failed", exc_info=True)


class EventStreamView(RunScopedView):
    permission_classes = [allows(Cap.READ)]
    renderer_classes = [FastJSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("after_id", _EVENT_ID, description="Start after this event id."),
            OpenApiParameter("Last-Event-ID", _EVENT_ID, OpenApiParameter.HEADER,
                             description="Resume after this event id (set by EventSource)."),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_FRAME,
                description=(
                    "`event: run` frames carry the run snapshot (first, and on every change); "
                    "`id: <event id>` + `event: event` frames carry events in id order; "
                    "`: keepalive` comments keep idle connections open; `event: end` follows "
                    "the last event of a finished run."
                ),
            ),
            **ERRORS,
        },
        operation_id="runs_events_stream",
    )
    def get(self, request, run_id: str):
        after_id = _after_id(request)
        run = self.get_run(run_id)
        response = StreamingHttpResponse(
            event_stream(run.id, after_id, settings.TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must not hold frames back
        return response

    def handle_exception(self, exc):
        # Errors are JSON whatever the client asked for.
        self.request.accepted_renderer = FastJSONRenderer()
        self.request.accepted_media_type = FastJSONRenderer.media_type
        return super().handle_exception(exc)
