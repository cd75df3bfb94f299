"""Load-balancer probes: ``/healthz`` (the process is up), ``/readyz`` (its dependencies are)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.storage import storages
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

log = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


# /readyz answers within READY_DEADLINE whatever is down: a probe that times out reads as
# "unknown", not as "unavailable". Each check runs on a thread of its own; one still running
# from an earlier probe is reported as not ready instead of being started again, so a hung
# dependency never piles up threads.
READY_DEADLINE = 1.5
CHANNEL_LAYER_TIMEOUT = 1.0

_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")
_in_flight: dict[str, Future] = {}
_in_flight_lock = threading.Lock()


def _check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's connection back to the pool (or closed)


def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    async def round_trip() -> None:
        # One event loop for the whole trip: the Redis pub/sub layer's subscriptions belong
        # to the loop that made them.
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "readyz.ping", "nonce": uuid.uuid4().hex})
        await asyncio.wait_for(layer.receive(channel), CHANNEL_LAYER_TIMEOUT)

    async_to_sync(round_trip)()


def _check_storage() -> None:
    storages["payloads"].exists("readyz-probe")


CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer,
          "storage": _check_storage}


def _timed(check) -> float:
    started = time.perf_counter()
    check()
    return round((time.perf_counter() - started) * 1000, 2)


def _start(name: str, check) -> Future:
    with _in_flight_lock:
        running = _in_flight.get(name)
        if running is not None and not running.done():
            return running
        future = _in_flight[name] = _executor.submit(_timed, check)
        return future


@never_cache
@require_GET
def readyz(request):
    futures = {name: _start(name, check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=READY_DEADLINE)
    results, ok = {}, True
    for name, future in futures.items():
        if not future.done():
            ok = False
            log.warning("readyz: %s did not answer within %g s", name, READY_DEADLINE)
            results[name] = {"ok": False, "error": "Timeout"}
        elif future.exception() is not None:
            ok = False
            exc = future.exception()
            log.warning("readyz: %s unavailable: %s", name, exc)
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True, "ms": future.result()}
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": results},
                        status=200 if ok else 503)
