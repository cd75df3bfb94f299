"""Following a run or a project live: the one catch-up-then-follow loop behind both WebSocket
consumers and the SSE streams.

A follower is pulled: ``await follower.next(limit)`` returns what the client should be sent
next (events, in order, each once; snapshots; the end of a finished run), waiting until there
is something. Two sources wake it, and either alone is enough:

* **the channel layer** — ``offer(message)`` hands it the ``run.update`` messages of
  runs/realtime.py. Their inline events are used only when they continue the client's cursor
  exactly; anything else is read back from the database (runs/live.py's cursor rules).
* **the database** — one ``ChangeWatcher`` per event loop polls for events committed by any
  process (a worker, the CLI, another web process, a shell) every
  ``TRACEFOUNDRY_LIVE_POLL_MS`` while anybody follows, and pokes the followers of the runs that
  changed. This is what makes the embedded default (in-memory layer: only this process's
  messages) and PostgreSQL without Redis live across processes, and what heals a stream that
  missed messages while Redis was down: it never depends on the channel layer.

The database is always the source of truth: the cursor only moves over events read in id order
of one run (appends to a run commit in id order: they hold the run's row lock), so a client gets
no gap and no duplicate whichever source delivered first.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Max

from runs import live, wire
from runs.models import FINISHED_RUN_STATES, Run, RunEvent, Step

log = logging.getLogger(__name__)

# Counter-only snapshot changes are sent at most this often per client.
SNAPSHOT_INTERVAL = 0.25
# Live messages a follower keeps while its client is not reading; beyond it, the database.
PENDING_LIMIT = 200
# Commits of different runs may land out of id order: each poll looks back over the ids the
# last two polls saw, so an event whose id was taken before a later one committed is not missed.
WATCH_LOOKBACK_POLLS = 2
# A poll that finds more new ids than this pokes every follower rather than listing runs.
WATCH_SCAN_LIMIT = 20_000

Item = tuple[str, dict]  # ("event" | "run" | "end", data)


# --- database reads (sync; called through database_sync_to_async) -----------------------------

def max_event_id() -> int:
    return RunEvent.objects.aggregate(top=Max("id"))["top"] or 0


def changes_since(since: int) -> tuple[int, dict[str, tuple[int, int]] | None]:
    """(the newest event id, {run_id: (project_id, newest id of the run)} of the events after
    ``since``), or None for the runs when there are too many ids to list."""
    top = max_event_id()
    if top <= since:
        return top, {}
    if top - since > WATCH_SCAN_LIMIT:
        return top, None
    rows = (RunEvent.objects.filter(id__gt=since, id__lte=top)
            .values_list("run_id", "run__project_id").annotate(last=Max("id")))
    return top, {run_id: (project_id, last) for run_id, project_id, last in rows}


def run_refresh(run_id: str, steps: bool) -> dict | None:
    """What a live message would have carried: the run's snapshot and, if asked, its steps."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return None
    message = {"run": {**wire.run_snapshot(run), "trace_id": run.trace_id}}
    if steps:
        message["steps"] = [wire.step_dict(s) for s in Step.objects.filter(run_id=run_id)]
    return message


def run_snapshots(run_id: str) -> list[dict]:
    return [wire.run_snapshot(r) for r in Run.objects.filter(pk=run_id)]


_in_flight: dict[tuple, asyncio.Future] = {}


async def shared_read(fn, *args):
    """``fn(*args)`` through database_sync_to_async, once for every follower of this event loop
    that asks for the same thing while it runs: a hundred sockets on one run woken together by
    one change cost one query, not a hundred in a row on Channels' single database thread."""
    key = (id(asyncio.get_running_loop()), fn.__name__, *args)
    future = _in_flight.get(key)
    # Only a read still running is shared: one that finished may predate a newer commit (its
    # done-callback that forgets it runs a loop iteration later).
    if future is None or future.done():
        future = asyncio.ensure_future(database_sync_to_async(fn)(*args))
        _in_flight[key] = future
        future.add_done_callback(lambda done: _in_flight.pop(key, None)
                                 if _in_flight.get(key) is done else None)
    return await asyncio.shield(future)


def db_grace() -> float:
    """How long a follower that the watcher says is behind waits for the channel layer before
    it reads the database: the layer usually brings the events within milliseconds (the
    watcher can see a commit before its message was handed over), so only events that no
    message will bring — another process's under the in-memory layer, or lost while Redis was
    down — cost a read, instead of every socket reading every change."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return 0.0
    if isinstance(layer, InMemoryChannelLayer):
        return 0.1
    return settings.TRACEFOUNDRY_LIVE_POLL_MS / 2000


# --- the watcher ---------------------------------------------------------------------------------

class ChangeWatcher:
    """Polls the database for new events while followers exist on its event loop."""

    def __init__(self) -> None:
        self.followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    def add(self, follower: Follower) -> None:
        self.followers.add(follower)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def discard(self, follower: Follower) -> None:
        self.followers.discard(follower)

    async def _watch(self) -> None:
        try:
            marks = deque([await database_sync_to_async(max_event_id)()],
                          maxlen=WATCH_LOOKBACK_POLLS + 1)
        except Exception:
            log.warning("live watcher could not read the database", exc_info=True)
            marks = deque([0], maxlen=WATCH_LOOKBACK_POLLS + 1)
        while self.followers:
            await asyncio.sleep(settings.TRACEFOUNDRY_LIVE_POLL_MS / 1000)
            try:
                top, runs = await database_sync_to_async(changes_since)(marks[0])
            except Exception as exc:  # the database is down: followers wait, nothing is lost
                log.warning("live watcher: database unavailable: %s", exc)
                continue
            if top < marks[-1]:  # the table was emptied (tests, a purge): start again
                marks.clear()
            marks.append(top)
            if runs is None or runs:
                for follower in list(self.followers):
                    follower.poke(runs)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ChangeWatcher] = \
    weakref.WeakKeyDictionary()


def watcher() -> ChangeWatcher:
    loop = asyncio.get_running_loop()
    found = _watchers.get(loop)
    if found is None:
        found = _watchers[loop] = ChangeWatcher()
    return found


# --- followers -----------------------------------------------------------------------------------

@dataclass(eq=False)
class Follower:
    """What both kinds of followers share: the wake-up, pending messages and registration."""

    pending: deque = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    busy: bool = False
    grace: float = field(default_factory=db_grace)
    behind: dict[str, int] = field(default_factory=dict)  # run id -> the id the watcher saw

    def behind_on(self, run_id: str, last: int) -> None:
        """The watcher saw events of ``run_id`` up to ``last`` that this follower has not had:
        read them from the database unless the channel layer brings them within the grace."""
        if self.grace <= 0:
            self.read_from_database(run_id)
            return
        if run_id not in self.behind:
            asyncio.get_running_loop().call_later(self.grace, self._recheck, run_id)
        self.behind[run_id] = max(last, self.behind.get(run_id, 0))

    def _recheck(self, run_id: str) -> None:
        last = self.behind.pop(run_id, None)
        if last is not None and not self.closed and last > self.cursor_of(run_id):
            self.read_from_database(run_id)

    def read_from_database(self, run_id: str) -> None:
        raise NotImplementedError

    def cursor_of(self, run_id: str) -> int:
        raise NotImplementedError

    def open(self) -> None:
        watcher().add(self)

    def close(self) -> None:
        self.closed = True
        watcher().discard(self)
        self.wake.set()

    def offer(self, message: dict, *, wake: bool = True) -> None:
        """A message of the channel layer: one ``run.update``, or a ``run.batch`` of them.
        ``wake=False``: the caller sends what ``take_ready`` gives itself."""
        updates = message["messages"] if message.get("type") == "run.batch" else [message]
        for update in updates:
            self.take_message(update)
        if wake:
            self.wake.set()

    def take_ready(self, limit: int) -> list[Item]:
        """What the offered messages bring that can go out at once, without the database (the
        fast path of a socket that keeps up); anything else wakes ``next()``'s loop."""
        self.wake.set()
        return []

    def take_message(self, update: dict) -> None:
        raise NotImplementedError

    def poke(self, runs: dict[str, tuple[int, int]] | None) -> None:
        raise NotImplementedError

    async def gather(self, limit: int) -> list[Item]:
        raise NotImplementedError

    async def next(self, limit: int, *, keepalive: float | None = None) -> list[Item]:
        """What to send next (at most ``limit`` events), waiting until there is something, or
        ``[("keepalive", {})]`` when ``keepalive`` seconds passed without anything. An empty
        list means the follower was closed."""
        deadline = time.monotonic() + keepalive if keepalive else None
        loop = asyncio.get_running_loop()
        while not self.closed:
            self.wake.clear()
            self.busy = True  # the cursor may move before these items are sent: no fast path
            try:
                items = await self.gather(limit)
            finally:
                self.busy = False
            if items:
                return items
            timeout = self.wait_timeout()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return [("keepalive", {})]
                timeout = left if timeout is None else min(timeout, left)
            # A timer that sets the event, not asyncio.wait_for: that wraps every wait in a task
            # of its own, for every socket and every message.
            timer = loop.call_later(timeout, self.wake.set) if timeout is not None else None
            try:
                await self.wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        return []

    def wait_timeout(self) -> float | None:
        return None


class RunFollower(Follower):
    """One run: its snapshot first, then its events after ``after_id``, then live, then the end
    once the run has finished and every event was sent."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.need_db = True
        self.need_steps = False
        self.ended = False
        self.last_snapshot_at = 0.0
        self.snapshot_timer: asyncio.TimerHandle | None = None
        self.cursor = live.RunCursor()
        self.state = live.SnapshotState()

    async def start(self, after_id: int) -> dict | None:
        last_id, last_seq = await database_sync_to_async(live.run_cursor_start)(
            self.run_id, after_id)
        self.cursor = live.RunCursor(last_id=last_id, last_seq=last_seq)
        self.state = live.SnapshotState(
            snapshot=await database_sync_to_async(live.run_live_snapshot)(self.run_id))
        self.last_snapshot_at = time.monotonic()
        self.open()
        return self.state.snapshot

    def take_message(self, update: dict) -> None:
        self.state.merge_message(update)
        if self.need_db:
            return  # the database read will have these events
        if update["events"] is None or len(self.pending) >= PENDING_LIMIT:
            self.need_db = True
            self.pending.clear()
            return
        self.pending.append(update["events"])

    def poke(self, runs) -> None:
        if runs is None:
            self.read_from_database(self.run_id)
            return
        change = runs.get(self.run_id)
        if change is not None and change[1] > self.cursor.last_id:
            self.behind_on(self.run_id, change[1])

    def read_from_database(self, run_id: str) -> None:
        self.need_db = self.need_steps = True
        self.wake.set()

    def cursor_of(self, run_id: str) -> int:
        return self.cursor.last_id

    async def gather(self, limit: int) -> list[Item]:
        items: list[Item] = []
        while self.pending and not self.need_db and len(items) < limit:
            fresh = self.cursor.fresh(self.pending.popleft())
            if fresh is None or len(fresh) > limit - len(items):
                self.need_db = True
                break
            items.extend(self._sent(fresh))
        if self.need_db:
            self.pending.clear()
            room = limit - len(items)
            if room > 0:
                events = await shared_read(live.run_events_after, self.run_id,
                                           self.cursor.last_id, room)
                self.need_db = len(events) == room
                if events:
                    items.extend(self._sent(events))
                    await self._refresh_from_database()
        items.extend(self._snapshot())
        if not items and not self.need_db and not self.ended and self._finished():
            self.ended = True
            items.append(("end", {"state": self.state.snapshot["state"],
                                  "last_id": self.cursor.last_id}))
        return items

    def _sent(self, events: list[dict]) -> list[Item]:
        for event in events:
            self.cursor.advance(event)
            self.state.saw_event(event)
        return [("event", e) for e in events]

    async def _refresh_from_database(self) -> None:
        """Events read from the database came with no live message: read the run too."""
        message = await shared_read(run_refresh, self.run_id, self.need_steps)
        self.need_steps = False
        if message is not None:
            self.state.merge_message(message)

    def take_ready(self, limit: int) -> list[Item]:
        items: list[Item] = []
        while self.pending and not self.need_db:
            fresh = self.cursor.fresh(self.pending[0])
            if fresh is None or len(fresh) > limit - len(items):
                break
            self.pending.popleft()
            items.extend(self._sent(fresh))
        if self.pending or self.need_db or self._finished():
            self.wake.set()  # a gap, a full window or the end: next()'s loop takes over
        items.extend(self._snapshot())
        if self.state.dirty and self.snapshot_timer is None:
            # The coalesced snapshot is due later: wake next()'s loop then.
            self.snapshot_timer = asyncio.get_running_loop().call_later(
                self.wait_timeout() or 0.0, self._snapshot_due)
        return items

    def _snapshot_due(self) -> None:
        self.snapshot_timer = None
        self.wake.set()

    def _snapshot(self) -> list[Item]:
        if not self.state.dirty:
            return []
        now = time.monotonic()
        if self.state.urgent or now - self.last_snapshot_at >= SNAPSHOT_INTERVAL:
            self.last_snapshot_at = now
            return [("run", self.state.take())]
        return []

    def wait_timeout(self) -> float | None:
        if self.state.dirty:  # a coalesced snapshot is due
            return max(0.0, SNAPSHOT_INTERVAL - (time.monotonic() - self.last_snapshot_at))
        return None

    def _finished(self) -> bool:
        return (self.state.snapshot is not None
                and self.state.snapshot.get("state") in FINISHED_RUN_STATES)

    def resume_id(self) -> int:
        return self.cursor.last_id


class ProjectFollower(Follower):
    """Every run of a project: its events after ``after_id`` (read as one stream by id), then
    live per run, with each changed run's snapshot (state changes at once, counters coalesced).
    """

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id
        self.catching_up = True
        self.high_id = 0  # the project-wide id the catch-up has reached
        self.cursor = live.ProjectCursor(after_id=0)
        self.stale: set[str] = set()  # runs to read from the database
        self.run_states: dict[str, str] = {}
        self.pending_runs: dict[str, dict] = {}  # snapshots of runs whose counters moved
        self.last_snapshot_at = 0.0

    async def start(self, after_id: int | None) -> None:
        if after_id is None:
            after_id = await database_sync_to_async(live.project_tail_start)(self.project_id)
        self.high_id = after_id
        self.cursor = live.ProjectCursor(after_id=after_id)
        self.open()

    def take_message(self, update: dict) -> None:
        if self.catching_up:
            return  # the catch-up reads it from the database
        run_id = update["run_id"]
        self._note_run(update["run"])
        if run_id in self.stale or update["events"] is None \
                or len(self.pending) >= PENDING_LIMIT:
            self.stale.add(run_id)
            return
        self.pending.append((run_id, update["events"]))

    def poke(self, runs) -> None:
        if self.catching_up:
            self.wake.set()
            return
        if runs is None:
            # Too many changes to list: every run this stream follows, and new ones.
            self.stale.update(self.cursor.runs)
            self.catching_up = True  # re-read the project by id; per-run seq drops repeats
            self.high_id = min((c.last_id for c in self.cursor.runs.values()),
                               default=self.high_id)
        else:
            for run_id, (project_id, last) in runs.items():
                if project_id == self.project_id and last > self.cursor.run(run_id).last_id:
                    self.behind_on(run_id, last)
            return
        self.wake.set()

    def read_from_database(self, run_id: str) -> None:
        self.stale.add(run_id)
        self.wake.set()

    def cursor_of(self, run_id: str) -> int:
        return self.cursor.run(run_id).last_id

    async def gather(self, limit: int) -> list[Item]:
        if self.catching_up:
            return await self._catch_up(limit)
        items: list[Item] = []
        while self.pending and len(items) < limit:
            run_id, events = self.pending.popleft()
            if run_id in self.stale:
                continue
            cursor = self.cursor.run(run_id)
            fresh = cursor.fresh(events)
            if fresh is None or len(fresh) > limit - len(items):
                self.stale.add(run_id)
                continue
            items.extend(self._sent(cursor, fresh))
        for run_id in list(self.stale):
            room = limit - len(items)
            if room <= 0:
                break
            cursor = self.cursor.run(run_id)
            page = await shared_read(live.run_events_after, run_id, cursor.last_id, room)
            events = [e for e in page if e["seq"] > cursor.last_seq]
            if len(page) < room:
                self.stale.discard(run_id)
            items.extend(self._sent(cursor, events))
            if events:
                for run in await shared_read(run_snapshots, run_id):
                    self._note_run(run)
        return items + self._snapshots()

    async def _catch_up(self, limit: int) -> list[Item]:
        events = await shared_read(live.project_events_after, self.project_id, self.high_id,
                                   limit)
        items: list[Item] = []
        for event in events:
            self.high_id = event["id"]
            cursor = self.cursor.run(event["run_id"])
            if event["seq"] > cursor.last_seq:
                items.extend(self._sent(cursor, [event]))
        if len(events) < limit:
            self.catching_up = False
            self.pending.clear()
        return items

    @staticmethod
    def _sent(cursor: live.RunCursor, events: list[dict]) -> list[Item]:
        for event in events:
            cursor.advance(event)
        return [("event", e) for e in events]

    def _note_run(self, run: dict) -> None:
        self.pending_runs[run["id"]] = run

    def _snapshots(self) -> list[Item]:
        """Runs whose state changed go out at once; those whose counters moved, coalesced."""
        items: list[Item] = []
        for run_id, run in list(self.pending_runs.items()):
            if self.run_states.get(run_id) != run["state"]:
                self.run_states[run_id] = run["state"]
                items.append(("run", self.pending_runs.pop(run_id)))
        now = time.monotonic()
        if self.pending_runs and now - self.last_snapshot_at >= SNAPSHOT_INTERVAL:
            self.last_snapshot_at = now
            items.extend(("run", run) for run in self.pending_runs.values())
            self.pending_runs.clear()
        return items

    def wait_timeout(self) -> float | None:
        if self.pending_runs:
            return max(0.0, SNAPSHOT_INTERVAL - (time.monotonic() - self.last_snapshot_at))
        return None

    def resume_id(self) -> int:
        return self.high_id if self.catching_up else max(
            [self.high_id, *(c.last_id for c in self.cursor.runs.values())])


# --- the channel layer, best-effort ------------------------------------------------------------

LAYER_TIMEOUT = 2.0


class Subscription:
    """Feeds ``follower`` with the messages of ``group`` for as long as the channel layer works
    (SSE streams; the WebSocket consumers get theirs through Channels' own dispatch). A layer
    that is down costs nothing but latency: the watcher still follows the database."""

    def __init__(self, group: str, follower: Follower) -> None:
        self.group = group
        self.follower = follower
        self.layer = None
        self.channel = ""
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Subscription:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return self
        try:
            self.channel = await asyncio.wait_for(layer.new_channel(), LAYER_TIMEOUT)
            await asyncio.wait_for(layer.group_add(self.group, self.channel), LAYER_TIMEOUT)
        except Exception as exc:
            log.warning("live: channel layer unavailable, following the database: %r", exc)
            return self
        self.layer = layer
        self.task = asyncio.get_running_loop().create_task(self._receive())
        return self

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as exc:
                log.warning("live: channel layer receive failed: %r", exc)
                return
            self.follower.offer(message)

    async def __aexit__(self, *exc_info) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.layer is not None:
            try:
                await asyncio.wait_for(self.layer.group_discard(self.group, self.channel),
                                       LAYER_TIMEOUT)
            except Exception:  # the client is gone either way
                log.debug("group_discard failed", exc_info=True)
