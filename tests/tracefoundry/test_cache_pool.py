"""The Redis cache keeps one connection pool per process.

Django's ASGI handler serves every request in a context (and thread) of its own, and ``caches``
builds a cache object per context: without a shared pool each throttled request opened a new
TCP connection to Redis. Threads stand in for those request contexts here."""

from __future__ import annotations

import threading

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

pytestmark = pytest.mark.skipif(
    "redis" not in settings.CACHES["default"]["BACKEND"].lower(),
    reason="the cache is Redis only with REDIS_URL",
)


def _connections_received() -> int:
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


def test_request_contexts_share_one_connection_pool():
    cache.set("tf-test-pool", 1)  # this thread's pool, connected before counting
    before = _connections_received()
    errors: list[BaseException] = []

    def one_request() -> None:
        try:
            cache.add("tf-test-pool-window", 0, 5)
            cache.incr("tf-test-pool-window")
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(20):
        thread = threading.Thread(target=one_request)
        thread.start()
        thread.join()
    assert not errors
    # Reused from the shared pool: 20 contexts, no new connection (two of slack for the
    # _connections_received client itself and anything else on the server).
    assert _connections_received() - before <= 3
