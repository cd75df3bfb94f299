"""WebSocket streams of runs and projects: ``/ws/runs/<run_id>/`` and ``/ws/projects/<slug>/``.

Protocol (JSON text frames; see README "Live streaming"):

* server → client ``{"type": "run", "run": {...}}``: the run's snapshot (state, counters,
  steps with their last log line), first on connect and again whenever it changes; on a
  project stream the snapshot of any run of the project that changed (without steps).
* server → client ``{"type": "event", "event": {...}}``: every event after ``after_id`` from
  the database, then live ones, in order, each exactly once.
* client → server ``{"type": "ack", "last_id": N}``: the last event the client processed. The
  server keeps at most TRACEFOUNDRY_WS_WINDOW events unacknowledged; a client that stays
  behind longer than TRACEFOUNDRY_WS_ACK_TIMEOUT seconds is sent ``{"type": "resync",
  "after_id": N}`` and closed with 4008: it reconnects with ``after_id`` and catches up from
  the database. The backlog is never buffered in memory.
* server → client ``{"type": "keepalive"}`` after TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS without
  anything else: a client that hears nothing for a few intervals knows the stream is stale and
  reconnects.
* server → client ``{"type": "end", "state", "last_id"}`` on a run stream once the run has
  finished and its last event was sent; the socket then closes with 1000.
* Refusals are an accepted socket closed at once with 4401 (not authenticated), 4403 (role or
  key scope) or 4404 (no such run or project for this caller).

What is sent is decided by a follower (runs/follow.py), shared with the SSE streams: it
follows the channel layer when that works and the database always, so a change made by any
process reaches the socket, and a channel layer that is down fails nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from runs import follow, live, realtime
from runs.models import Project, Run
from tracefoundry.roles import Access, Cap

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RESYNC = 4008
MAX_EVENT_ID = 2**63 - 1  # a bigint primary key
# Every socket of a process that follows a run gets the same frame for an event: encode it once.
_FRAME_CACHE_SIZE = 4096
_event_frames: OrderedDict[int, str] = OrderedDict()


def event_frame(event: dict) -> str:
    frame = _event_frames.get(event["id"])
    if frame is None:
        frame = orjson.dumps({"type": "event", "event": event}).decode()
        _event_frames[event["id"]] = frame
        if len(_event_frames) > _FRAME_CACHE_SIZE:
            _event_frames.popitem(last=False)
    return frame


def scope_access(scope) -> Access:
    key = scope.get("api_key")
    user = scope.get("user")
    if key is not None:
        return Access(user=key.user if key.user_id is not None else None, api_key=key)
    return Access(user=user)


def _after_id(scope) -> int | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after_id")
    if not values:
        return None
    # Only plain ASCII digits: int() would also take "-1", "+1", " 1" and other scripts' digits.
    value = values[-1]
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
        return -1
    return int(value)


class _LiveConsumer(AsyncJsonWebsocketConsumer):
    """Authorisation, the channel layer (best-effort), flow control and the ack/resync
    protocol around a follower (runs/follow.py), which decides what is sent."""

    group: str = ""

    @classmethod
    async def encode_json(cls, content) -> str:
        return orjson.dumps(content).decode()

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop, except that a channel layer that is down (Redis) does not
        fail the handshake: the socket then follows the database alone."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            try:
                self.channel_name = await asyncio.wait_for(self.channel_layer.new_channel(),
                                                           follow.LAYER_TIMEOUT)
            except Exception as exc:
                log.warning("live: channel layer unavailable, following the database: %r", exc)
                self.channel_layer = None
        self.base_send = send
        sources = [receive] if self.channel_layer is None else [receive, self._layer_receive]
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch(sources, self.dispatch)

    async def _layer_receive(self):
        try:
            return await self.channel_layer.receive(self.channel_name)
        except Exception as exc:
            log.warning("live: channel layer receive failed, following the database: %r", exc)
            await asyncio.Event().wait()  # never returns: the follower's watcher carries on

    async def connect(self) -> None:
        self.unacked: deque[int] = deque()
        self.ack_timer: asyncio.TimerHandle | None = None
        self.room_freed = asyncio.Event()
        self.sending = asyncio.Lock()  # the follow loop and the fast path send in turn
        self.closed = False
        self.follower: follow.Follower | None = None
        self.task: asyncio.Task | None = None
        await self.accept()
        access = scope_access(self.scope)
        if self.scope.get("api_key_refused"):
            return await self._refuse(CLOSE_UNAUTHENTICATED, self.scope["api_key_refused"])
        if access.api_key is None and not getattr(access.user, "is_authenticated", False):
            return await self._refuse(CLOSE_UNAUTHENTICATED, "log in or pass an API key")
        if not await database_sync_to_async(access.can)(Cap.READ):
            return await self._refuse(CLOSE_FORBIDDEN, "your role or key scope cannot read runs")
        after_id = _after_id(self.scope)
        if after_id == -1:
            return await self._refuse(4400, "after_id must be a non-negative integer")
        if not await self.authorize(access):
            return await self._refuse(CLOSE_NOT_FOUND, "no such stream for you")
        self.group = self.group_name()
        if self.channel_layer is not None:
            try:
                await asyncio.wait_for(self.channel_layer.group_add(self.group, self.channel_name),
                                       follow.LAYER_TIMEOUT)
            except Exception as exc:
                log.warning("live: could not join %s, following the database: %r", self.group, exc)
        self.follower = await self.start(after_id)
        self.task = asyncio.get_running_loop().create_task(self._follow())

    async def _refuse(self, code: int, reason: str) -> None:
        self.closed = True
        await self.send_json({"type": "error", "code": code, "message": reason})
        await self.close(code=code)

    async def disconnect(self, code) -> None:
        self.closed = True
        if self.ack_timer is not None:
            self.ack_timer.cancel()
        if self.task is not None:
            self.task.cancel()
        if self.follower is not None:
            self.follower.close()
        if self.group and self.channel_layer is not None:
            try:
                await asyncio.wait_for(
                    self.channel_layer.group_discard(self.group, self.channel_name),
                    follow.LAYER_TIMEOUT)
            except Exception:  # the client is gone either way
                log.debug("group_discard failed", exc_info=True)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "ack":
            return
        last_id = content.get("last_id")
        if not isinstance(last_id, int) or last_id not in self.unacked:
            return
        while self.unacked:
            if self.unacked.popleft() == last_id:
                break
        if self.room() > 0:
            if self.ack_timer is not None:
                self.ack_timer.cancel()
                self.ack_timer = None
            self.room_freed.set()

    async def run_update(self, message: dict) -> None:
        """A ``run.update`` from runs/realtime.py (or ``run.batch``: several, in order)."""
        if self.follower is None or self.closed:
            return
        if self.sending.locked() or self.follower.busy or self.room() <= 0:
            self.follower.offer(message)  # the follow loop is busy or waits for acks
            return
        # Fast path: a socket that keeps up sends the message's events from here, without a
        # hop through the follow loop's task (a hundred sockets: a hundred task switches).
        self.follower.offer(message, wake=False)
        async with self.sending:
            await self._send_items(self.follower.take_ready(min(live.PAGE, self.room())))

    run_batch = run_update

    # --- the follow loop and flow control -----------------------------------------------------

    @staticmethod
    def keepalive() -> float:
        return float(settings.TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS)

    async def _follow(self) -> None:
        try:
            while not self.closed:
                room = self.room()
                if room <= 0:
                    self.window_full()
                    self.room_freed.clear()
                    await self.room_freed.wait()
                    continue
                items = await self.follower.next(min(live.PAGE, room),
                                                 keepalive=self.keepalive())
                async with self.sending:
                    await self._send_items(items)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live stream %s failed", self.group)
            if not self.closed:
                self.closed = True
                await self.close(code=1011)

    async def _send_items(self, items: list) -> None:
        for kind, data in items:
            if self.closed:
                return
            if kind == "event":
                self.unacked.append(data["id"])
                await self.send(text_data=event_frame(data))
            elif kind == "run":
                await self.send_json({"type": "run", "run": data})
            elif kind == "keepalive":
                await self.send_json({"type": "keepalive"})
            elif kind == "end":
                self.closed = True
                await self.send_json({"type": "end", **data})
                await self.close(code=1000)
                return

    def room(self) -> int:
        return settings.TRACEFOUNDRY_WS_WINDOW - len(self.unacked)

    def window_full(self) -> None:
        """Stop sending; if no ack frees the window in time, tell the client to resync."""
        if self.ack_timer is None and not self.closed:
            loop = asyncio.get_running_loop()
            self.ack_timer = loop.call_later(settings.TRACEFOUNDRY_WS_ACK_TIMEOUT,
                                             lambda: loop.create_task(self.resync()))

    async def resync(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.send_json({"type": "resync", "after_id": self.resume_id()})
        await self.close(code=CLOSE_RESYNC)

    def resume_id(self) -> int:
        return self.unacked[0] - 1 if self.unacked else self.follower.resume_id()

    # --- for subclasses -------------------------------------------------------------------

    async def authorize(self, access: Access) -> bool:
        raise NotImplementedError

    def group_name(self) -> str:
        raise NotImplementedError

    async def start(self, after_id: int | None) -> follow.Follower:
        raise NotImplementedError


class RunStreamConsumer(_LiveConsumer):
    """``/ws/runs/<run_id>/?after_id=N``: one run's snapshot and events; ``end`` and close 1000
    once the run has finished and its last event was sent."""

    async def authorize(self, access: Access) -> bool:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]

        def visible() -> bool:
            run = Run.objects.filter(pk=self.run_id).only("project_id").first()
            return run is not None and access.can_see_project(run.project_id)

        return await database_sync_to_async(visible)()

    def group_name(self) -> str:
        return realtime.run_group(self.run_id)

    async def start(self, after_id: int | None) -> follow.Follower:
        follower = follow.RunFollower(self.run_id)
        snapshot = await follower.start(after_id or 0)
        await self.send_json({"type": "run", "run": snapshot})
        return follower


class ProjectStreamConsumer(_LiveConsumer):
    """``/ws/projects/<slug>/?after_id=N``: every run of a project, its events and snapshots."""

    async def authorize(self, access: Access) -> bool:
        slug = self.scope["url_route"]["kwargs"]["slug"]

        def visible() -> int | None:
            project = Project.objects.filter(slug=slug).only("id").first()
            if project is None or not access.can_see_project(project.id):
                return None
            return project.id

        self.slug = slug
        self.project_id = await database_sync_to_async(visible)()
        return self.project_id is not None

    def group_name(self) -> str:
        return realtime.project_group(self.slug)

    async def start(self, after_id: int | None) -> follow.Follower:
        follower = follow.ProjectFollower(self.project_id)
        await follower.start(after_id)
        return follower
