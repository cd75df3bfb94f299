"""Live streaming names and senders: the one place that knows Channels group names.

Services call ``broadcast_on_commit``, so no client ever sees an event whose transaction rolled
back, and a failing channel layer never fails the write: delivery is best-effort, clients catch
up from the database by event id.

With a cross-process layer (Redis) messages are handed to one long-lived sender thread per
process, which keeps its connections and delivers in order, so writers never wait on the
network. The in-memory layer only serves consumers on the server's own event loop, so there the
send is scheduled on that loop (bound by tracefoundry.asgi), or run through ``async_to_sync``
outside a server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from runs import wire

log = logging.getLogger(__name__)

SENDER_QUEUE_LIMIT = 10_000
# Messages that queued up while the sender was busy leave together: one ``run.batch`` message
# per group (``{"type": "run.batch", "messages": [run.update, ...]}``), in order.
BATCH_LIMIT = 200
# Bigger batches travel as an id range: listeners read them from the database (they catch up
# by id anyway), so a 1,000-event append does not serialise every event twice.
LIVE_INLINE_EVENTS = 200


def run_group(run_id: str) -> str:
    return f"run.{run_id}"


def project_group(slug: str) -> str:
    return f"project.{slug}"


async def _deliver(groups: Sequence[str], message: dict) -> None:
    await _deliver_each(dict.fromkeys(groups, message))


async def _groups_with_members(layer, groups: list[str]) -> list[str]:
    """Of ``groups``, those a Redis channel layer has members in: one pipelined ZCARD per Redis
    host for all of them, where ``group_send`` spends two round trips per group just to find an
    empty one. Most groups are empty (a worker finishes runs nobody is watching), so this is
    most of the broadcast cost saved. A consumer that joins a moment later catches up from the
    database, as after any missed message. Other layers: every group."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - channels-redis is a dependency
        return groups
    if not isinstance(layer, RedisChannelLayer):
        return groups
    try:
        # channels-redis 4's own addressing of a group (the key group_send reads).
        by_host: dict[int, list[str]] = {}
        for group in groups:
            by_host.setdefault(layer.consistent_hash(group), []).append(group)
        found = []
        for index, names in by_host.items():
            pipe = layer.connection(index).pipeline(transaction=False)
            for group in names:
                pipe.zcard(layer._group_key(group))
            counts = await pipe.execute()
            found += [group for group, count in zip(names, counts, strict=True) if count]
        return found
    except Exception:
        # Redis unreachable, or another channels-redis: let group_send try (and log) as before.
        # Nothing may escape: it would end the sender's loop, and every later broadcast of
        # this process with it.
        return groups


async def _deliver_each(messages: dict[str, dict]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    groups = await _groups_with_members(layer, list(messages))
    if not groups:
        return
    results = await asyncio.gather(*(layer.group_send(g, messages[g]) for g in groups),
                                   return_exceptions=True)
    for group, result in zip(groups, results, strict=True):
        if isinstance(result, Exception):  # the write committed; live delivery is best-effort
            log.warning("live broadcast to %s failed: %r", group, result)


class _Sender:
    """A daemon thread with its own event loop that sends queued messages in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self.dropped = 0

    def submit(self, groups: Sequence[str], message: dict) -> None:
        loop = self._ensure_started()
        loop.call_soon_threadsafe(self._enqueue, groups, message)

    def _enqueue(self, groups: Sequence[str], message: dict) -> None:
        assert self._queue is not None
        if self._queue.qsize() >= SENDER_QUEUE_LIMIT:
            self.dropped += 1  # never buffer without bound; clients resync from the database
            return
        self._queue.put_nowait((groups, message))

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                threading.Thread(target=self._main, args=(ready,), name="tf-live-sender",
                                 daemon=True).start()
                ready.wait()
            assert self._loop is not None
            return self._loop

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._queue = asyncio.Queue()
        self._loop = loop
        ready.set()
        loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        """Deliver in order; what queued up meanwhile goes out as one message per group."""
        assert self._queue is not None
        while True:
            pending = [await self._queue.get()]
            while not self._queue.empty() and len(pending) < BATCH_LIMIT:
                pending.append(self._queue.get_nowait())
            try:
                await self._send(pending)
            except Exception:  # best-effort: this batch is lost, the sender lives on
                log.warning("live broadcast failed", exc_info=True)

    @staticmethod
    async def _send(pending: list[tuple[Sequence[str], dict]]) -> None:
        if len(pending) == 1:
            await _deliver(*pending[0])
            return
        by_group: dict[str, list[dict]] = {}
        for groups, message in pending:
            for group in groups:
                by_group.setdefault(group, []).append(message)
        await _deliver_each({
            group: messages[0] if len(messages) == 1
            else {"type": "run.batch", "messages": messages}
            for group, messages in by_group.items()
        })


_sender = _Sender()
_server_loop: asyncio.AbstractEventLoop | None = None


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the ASGI application: the loop the in-memory layer's consumers live on."""
    global _server_loop
    _server_loop = loop


def _send_in_memory(groups: Sequence[str], message: dict) -> None:
    loop = _server_loop
    if loop is not None and loop.is_running():
        # Fire and forget on the server loop: tasks run in the order they were scheduled, and
        # the in-memory layer's group_send never suspends, so messages stay in order.
        loop.call_soon_threadsafe(lambda: loop.create_task(_deliver(groups, message)))
    else:
        async_to_sync(_deliver)(groups, message)


def send(groups: Sequence[str], message: dict) -> None:
    """Send now (call it after commit): hand-off to the sender thread, or on the server loop."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            # Only consumers of this process can listen. None in these groups (a worker process
            # never has any): nothing to deliver, so no hop through async_to_sync (a thread).
            # Checked after commit: a consumer that joins later reads the change from the DB.
            if not any(group in layer.groups for group in groups):
                return
            _send_in_memory(groups, message)
        else:
            _sender.submit(groups, message)
    except Exception:
        log.warning("live broadcast failed", exc_info=True)


def live_events(rows: Sequence) -> dict:
    """The events part of a live message: the ids they span, and the events when few."""
    if not rows:
        return {"first_id": None, "last_id": None, "events": []}
    events = [wire.event_dict(r) for r in rows] if len(rows) <= LIVE_INLINE_EVENTS else None
    return {"first_id": rows[0].id, "last_id": rows[-1].id, "events": events}


def broadcast_on_commit(
    *, run_id: str, project_slug: str, events: dict, run: dict, steps: Sequence[dict] = ()
) -> None:
    """After commit, send the new events and the run's fresh snapshot to its two groups.

    The message: ``{"type": "run.update", "run_id", "first_id", "last_id", "events", "run",
    "steps"}`` where ``events`` is None when the batch was too big to inline (read ids
    first..last) and ``steps`` holds the steps whose state changed.
    """
    message = {"type": "run.update", "run_id": run_id, **events, "run": run,
               "steps": list(steps)}
    transaction.on_commit(lambda: send((run_group(run_id), project_group(project_slug)), message))
