"""``GET /api/v1/runs/{id}/events/stream``: a run's events as Server-Sent Events.

The view itself (authentication, permission, the run lookup) is an ordinary DRF view; what it
returns is a StreamingHttpResponse over an async generator, which Django's ASGI handler
drives on the event loop — an open stream holds no worker thread. The stream follows the
same follower as the WebSocket (runs/follow.py): catch up from the database after
``Last-Event-ID`` (or ``?after_id=``), then live events from the channel layer and the
database, each exactly once, in order. ``GET /api/v1/projects/{slug}/events/stream`` does the
same for every run of a project (the project stream page's fallback).
"""

from __future__ import annotations

import logging

import orjson
from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer
from rest_framework.views import APIView

from runs import follow, live, realtime, selectors
from runs.api.views import ERRORS, RunScopedView
from tracefoundry.api.inputs import MAX_BIGINT
from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.renderers import FastJSONRenderer
from tracefoundry.errors import InvalidInput
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


def _frames(items: list) -> list[bytes]:
    frames = []
    for kind, data in items:
        if kind == "event":
            frames.append(_frame("event", data, data["id"]))
        elif kind == "keepalive":
            frames.append(b": keepalive\n\n")
        else:  # "run" | "end"
            frames.append(_frame(kind, data))
    return frames


async def event_stream(run_id: str, after_id: int, keepalive: float):
    follower = follow.RunFollower(run_id)
    async with follow.Subscription(realtime.run_group(run_id), follower):
        try:
            snapshot = await follower.start(after_id)
            yield b"retry: 2000\n\n" + _frame("run", snapshot)
            while True:
                items = await follower.next(live.PAGE, keepalive=keepalive)
                for frame in _frames(items):
                    yield frame
                if not items or items[-1][0] == "end":
                    return
        finally:
            follower.close()


async def project_event_stream(project_id: int, slug: str, after_id: int | None,
                               keepalive: float):
    follower = follow.ProjectFollower(project_id)
    async with follow.Subscription(realtime.project_group(slug), follower):
        try:
            await follower.start(after_id)
            yield b"retry: 2000\n\n"
            while True:
                items = await follower.next(live.PAGE, keepalive=keepalive)
                if not items:
                    return
                for frame in _frames(items):
                    yield frame
        finally:
            follower.close()


def _stream_parameters(after_id: str) -> list[OpenApiParameter]:
    return [
        OpenApiParameter("after_id", _EVENT_ID, description=after_id),
        OpenApiParameter("Last-Event-ID", _EVENT_ID, OpenApiParameter.HEADER,
                         description="Resume after this event id (set by EventSource)."),
    ]


def _stream_response(stream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold frames back
    return response


class EventStreamView(RunScopedView):
    permission_classes = [allows(Cap.READ)]
    renderer_classes = [FastJSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=_stream_parameters("Start after this event id."),
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
        return _stream_response(
            event_stream(run.id, after_id, settings.TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS))

    def handle_exception(self, exc):
        # Errors are JSON whatever the client asked for.
        self.request.accepted_renderer = FastJSONRenderer()
        self.request.accepted_media_type = FastJSONRenderer.media_type
        return super().handle_exception(exc)


class ProjectEventStreamView(APIView):
    """Every run of a project as Server-Sent Events: what ``/ws/projects/<slug>/`` sends."""

    permission_classes = [allows(Cap.READ)]
    renderer_classes = [FastJSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=_stream_parameters(
            "Start after this event id (default: with the project's latest 100 events)."),
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_FRAME,
                description=(
                    "`id: <event id>` + `event: event` frames carry the events of every run "
                    "of the project, in order per run; `event: run` frames carry the snapshot "
                    "of a run that changed (state changes at once, counters coalesced); "
                    "`: keepalive` comments keep idle connections open."
                ),
            ),
            **ERRORS,
        },
        operation_id="projects_events_stream",
    )
    def get(self, request, slug: str):
        has_cursor = request.headers.get("Last-Event-ID") or request.query_params.get("after_id")
        after_id = _after_id(request) if has_cursor else None
        project = selectors.project_visible(slug=slug, access=access_for(request))
        return _stream_response(project_event_stream(
            project.id, project.slug, after_id, settings.TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS))

    def handle_exception(self, exc):
        self.request.accepted_renderer = FastJSONRenderer()
        self.request.accepted_media_type = FastJSONRenderer.media_type
        return super().handle_exception(exc)
