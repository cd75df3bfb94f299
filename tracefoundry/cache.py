"""One Redis connection pool per process for Django's cache.

Django's ASGI handler serves each request in a context of its own, where ``caches`` builds a new
``RedisCache`` whose client builds a new connection pool: every throttled request opened (and
leaked) a fresh TCP connection to Redis, about 2.5 ms. ``RedisCache`` takes a ``pool_class``
option; this one hands out a single pool per URL and options, and redis-py pools are
thread-safe and reset themselves after a fork.
"""

from __future__ import annotations

import threading

import redis

_pools: dict[tuple, redis.ConnectionPool] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **kwargs):
        key = (url, tuple(sorted((name, repr(value)) for name, value in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **kwargs)
            return pool
