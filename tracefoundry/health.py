"""Load-balancer probes: ``/healthz`` (the process is up), ``/readyz`` (its dependencies are)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

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


CHANNEL_LAYER_TIMEOUT = 3.0


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


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


@never_cache
@require_GET
def readyz(request):
    results, ok = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}
        except Exception as exc:
            ok = False
            log.warning("readyz: %s unavailable: %s", name, exc)
            results[name] = {"ok": False, "error": type(exc).__name__}
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": results},
                        status=200 if ok else 503)
