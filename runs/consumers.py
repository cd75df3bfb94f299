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
* Refusals are an accepted socket closed at once with 4401 (not authenticated), 4403 (role or
  key scope) or 4404 (no such run or project for this caller).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from runs import live, realtime
from runs.models import Project, Run
from tracefoundry.roles import Access, Cap

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RESYNC = 4008
# Counter-only snapshot changes are sent at most this often per client.
SNAPSHOT_INTERVAL = 0.25
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
    try:
        return max(0, int(values[-1]))
    except ValueError:
        return -1


class _LiveConsumer(AsyncJsonWebsocketConsumer):
    """Authorisation, flow control and the ack/resync protocol; subclasses say what to send."""

    group: str = ""

    @classmethod
    async def encode_json(cls, content) -> str:
        return orjson.dumps(content).decode()

    async def connect(self) -> None:
        self.unacked: deque[int] = deque()
        self.ack_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.behind = False
        self.lock = asyncio.Lock()
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
        await self.channel_layer.group_add(self.group, self.channel_name)
        async with self.lock:
            await self.start(after_id)
            await self.pump()

    async def _refuse(self, code: int, reason: str) -> None:
        self.closed = True
        await self.send_json({"type": "error", "code": code, "message": reason})
        await self.close(code=code)

    async def disconnect(self, code) -> None:
        self.closed = True
        for timer in (self.ack_timer, getattr(self, "snapshot_timer", None)):
            if timer is not None:
                timer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "ack":
            return
        last_id = content.get("last_id")
        if not isinstance(last_id, int) or last_id not in self.unacked:
            return
        while self.unacked:
            if self.unacked.popleft() == last_id:
                break
        if self.ack_timer is not None and self.room() > 0:
            self.ack_timer.cancel()
            self.ack_timer = None
        if self.behind and self.room() > 0:
            async with self.lock:
                self.behind = False
                await self.catch_up_after_pause()

    # --- flow control -----------------------------------------------------------------------

    @staticmethod
    def later(delay: float, coroutine_function) -> asyncio.TimerHandle:
        """Run ``coroutine_function()`` as a task after ``delay`` seconds (cancellable)."""
        loop = asyncio.get_running_loop()
        return loop.call_later(delay, lambda: loop.create_task(coroutine_function()))

    def room(self) -> int:
        return settings.TRACEFOUNDRY_WS_WINDOW - len(self.unacked)

    def page_limit(self) -> int:
        """How many events the next database page may hold; 0 marks the window full."""
        room = self.room()
        if room <= 0:
            self.window_full()
            return 0
        return min(live.PAGE, room)

    async def send_event(self, event: dict) -> None:
        self.unacked.append(event["id"])
        await self.send(text_data=event_frame(event))

    def window_full(self) -> None:
        """Stop sending; if no ack frees the window in time, tell the client to resync."""
        self.behind = True
        if self.ack_timer is None and not self.closed:
            self.ack_timer = self.later(settings.TRACEFOUNDRY_WS_ACK_TIMEOUT, self.resync)

    async def resync(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.send_json({"type": "resync", "after_id": self.resume_id()})
        await self.close(code=CLOSE_RESYNC)

    async def run_update(self, message: dict) -> None:
        """A ``run.update`` from runs/realtime.py."""
        if self.closed:
            return
        async with self.lock:
            await self.on_update(message)

    async def run_batch(self, batch: dict) -> None:
        """Several ``run.update`` messages the sender sent together, in order."""
        async with self.lock:
            for message in batch["messages"]:
                if self.closed:
                    return
                await self.on_update(message)

    # --- for subclasses -------------------------------------------------------------------

    async def authorize(self, access: Access) -> bool:
        raise NotImplementedError

    def group_name(self) -> str:
        raise NotImplementedError

    async def start(self, after_id: int | None) -> None:
        raise NotImplementedError

    async def pump(self) -> None:
        raise NotImplementedError

    async def on_update(self, message: dict) -> None:
        raise NotImplementedError

    async def catch_up_after_pause(self) -> None:
        await self.pump()

    def resume_id(self) -> int:
        raise NotImplementedError


class RunStreamConsumer(_LiveConsumer):
    """``/ws/runs/<run_id>/?after_id=N``: one run's snapshot and events."""

    async def authorize(self, access: Access) -> bool:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]

        def visible() -> bool:
            run = Run.objects.filter(pk=self.run_id).only("project_id").first()
            return run is not None and access.can_see_project(run.project_id)

        return await database_sync_to_async(visible)()

    def group_name(self) -> str:
        return realtime.run_group(self.run_id)

    async def start(self, after_id: int | None) -> None:
        last_id, last_seq = await database_sync_to_async(live.run_cursor_start)(
            self.run_id, after_id or 0)
        self.cursor = live.RunCursor(last_id=last_id, last_seq=last_seq)
        self.snapshot_timer = None
        self.state = live.SnapshotState(
            snapshot=await database_sync_to_async(live.run_live_snapshot)(self.run_id))
        await self.send_json({"type": "run", "run": self.state.snapshot})

    async def pump(self) -> None:
        """Send what the database holds after the cursor, as far as the window allows."""
        while not self.closed:
            limit = self.page_limit()
            if not limit:
                break
            events = await database_sync_to_async(live.run_events_after)(
                self.run_id, self.cursor.last_id, limit)
            await self._send_events(events)
            if len(events) < limit:
                break
        await self._send_snapshot()

    async def _send_events(self, events: list[dict]) -> None:
        for event in events:
            self.cursor.advance(event)
            self.state.saw_event(event)
            await self.send_event(event)

    async def _send_snapshot(self) -> None:
        """Send the snapshot now when something people watch changed, else soon (coalesced)."""
        if self.closed or not self.state.dirty:
            return
        if self.state.urgent:
            await self.send_json({"type": "run", "run": self.state.take()})
        elif self.snapshot_timer is None:
            self.snapshot_timer = self.later(SNAPSHOT_INTERVAL, self._flush_snapshot)

    async def _flush_snapshot(self) -> None:
        async with self.lock:
            self.snapshot_timer = None
            snapshot = self.state.take()
            if snapshot is not None and not self.closed:
                await self.send_json({"type": "run", "run": snapshot})

    async def on_update(self, message: dict) -> None:
        self.state.merge_message(message)
        if self.behind:
            return  # the database keeps them until the client acks
        fresh = self.cursor.fresh(message["events"] or []) if message["events"] is not None \
            else None
        if fresh is None or len(fresh) > self.room():
            await self.pump()
            return
        await self._send_events(fresh)
        await self._send_snapshot()

    def resume_id(self) -> int:
        return self.unacked[0] - 1 if self.unacked else self.cursor.last_id


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

    async def start(self, after_id: int | None) -> None:
        if after_id is None:
            after_id = await database_sync_to_async(live.project_tail_start)(self.project_id)
        self.cursor = live.ProjectCursor(after_id=after_id)
        self.high_id = after_id  # the global id the database catch-up has reached
        self.catching_up = True
        self.missed = False
        self.snapshot_timer = None
        self.run_states: dict[str, str] = {}
        self.pending_runs: dict[str, dict] = {}

    async def pump(self) -> None:
        while self.catching_up and not self.closed:
            limit = self.page_limit()
            if not limit:
                return
            events = await database_sync_to_async(live.project_events_after)(
                self.project_id, self.high_id, limit)
            for event in events:
                self.high_id = event["id"]
                cursor = self.cursor.run(event["run_id"])
                if event["seq"] > cursor.last_seq:
                    cursor.advance(event)
                    await self.send_event(event)
            if len(events) < limit:
                self.catching_up = False

    async def on_update(self, message: dict) -> None:
        if self.catching_up:
            return  # the catch-up reads it from the database
        if self.behind:
            self.missed = True  # too slow to follow a whole project live: it will resync
            return
        run_id = message["run_id"]
        cursor = self.cursor.run(run_id)
        fresh = cursor.fresh(message["events"] or []) if message["events"] is not None else None
        if fresh is None:
            fresh = await database_sync_to_async(live.run_events_after)(
                run_id, cursor.last_id, live.PAGE)
            fresh = [e for e in fresh if e["seq"] > cursor.last_seq]
        if len(fresh) > self.room():
            self.window_full()
            self.missed = True
            return
        for event in fresh:
            cursor.advance(event)
            await self.send_event(event)
        await self._send_run(message["run"])

    async def _send_run(self, run: dict) -> None:
        """A run's new state goes out at once; its counters moving, coalesced per run."""
        if self.run_states.get(run["id"]) != run["state"]:
            self.run_states[run["id"]] = run["state"]
            self.pending_runs.pop(run["id"], None)
            await self.send_json({"type": "run", "run": run})
            return
        self.pending_runs[run["id"]] = run
        if self.snapshot_timer is None:
            self.snapshot_timer = self.later(SNAPSHOT_INTERVAL, self._flush_runs)

    async def _flush_runs(self) -> None:
        async with self.lock:
            self.snapshot_timer = None
            pending, self.pending_runs = self.pending_runs, {}
            for run in pending.values():
                if not self.closed:
                    await self.send_json({"type": "run", "run": run})

    async def catch_up_after_pause(self) -> None:
        if self.catching_up:
            await self.pump()
        elif self.missed:
            await self.resync()

    def resume_id(self) -> int:
        if self.unacked:
            return self.unacked[0] - 1
        return self.high_id if self.catching_up else max(
            [self.high_id, *(c.last_id for c in self.cursor.runs.values())])
