"""Cache-backed throttles for enqueue, cancel and ingest, per API key or user (else per IP).

Fixed windows: a request costs one atomic increment of the window's counter in the cache, where
DRF's SimpleRateThrottle reads, unpickles, trims and writes back the list of every request's
timestamp in the window — at the ingest rate (6,000/min) tens of KB per request, and two
clients racing between its read and its write could both pass. The price of fixed windows: a
client may fit up to twice the rate across a window boundary.

Rates are read from settings on every request (not frozen at import like DRF's defaults), so a
deployment or a test can change TRACEFOUNDRY_THROTTLE_RATES without a restart.

Throttles fail open. A rate limit protects the service; it must never be the reason the service
is down. When the cache (Redis) cannot be reached the request passes, the failure is logged and
counted, and for ``BREAKER_SECONDS`` no request waits on the cache again: ingest, enqueue and
cancel work as if no Redis were configured until it answers again.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

log = logging.getLogger(__name__)

BREAKER_SECONDS = 5.0


class _Breaker:
    """Whether the cache is worth asking, and how often it could not be asked (per process)."""

    def __init__(self) -> None:
        self.open_until = 0.0
        self.failures = 0  # requests let through because the cache failed
        self.skipped = 0  # requests let through while the breaker was open
        self._lock = threading.Lock()

    def closed(self) -> bool:
        if time.monotonic() >= self.open_until:
            return True
        with self._lock:
            self.skipped += 1
        return False

    def trip(self, scope: str, error: Exception) -> None:
        with self._lock:
            self.failures += 1
            self.open_until = time.monotonic() + BREAKER_SECONDS
        log.warning("event=throttle.fail_open scope=%s error=%s: %s retry_in_s=%g", scope,
                    type(error).__name__, error, BREAKER_SECONDS)


breaker = _Breaker()


class ActionThrottle(BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def get_cache_key(self, request) -> str:
        key = getattr(request, "auth", None)
        if key is not None and hasattr(key, "prefix"):
            ident = f"key:{key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        rate = settings.TRACEFOUNDRY_THROTTLE_RATES.get(self.scope)
        if not rate:
            return True
        allowed, duration = SimpleRateThrottle.parse_rate(self, rate)  # uses only `rate`
        now = time.time()
        window = int(now // duration)
        key = f"{self.get_cache_key(request)}:{window}"
        if not breaker.closed():
            return True
        try:
            count = self._count(key, duration)
        except (redis.RedisError, OSError) as error:
            breaker.trip(self.scope, error)
            return True
        if count <= allowed:
            return True
        self._wait = (window + 1) * duration - now
        return False

    @staticmethod
    def _count(key: str, duration: int) -> int:
        # add() only creates the counter (an atomic SET NX), incr() is atomic: no lost counts.
        cache.add(key, 0, duration + 1)
        try:
            return cache.incr(key)
        except ValueError:  # expired between the two calls: this request opens the window
            cache.add(key, 1, duration + 1)
            return 1

    def wait(self) -> float | None:
        return self._wait


class EnqueueThrottle(ActionThrottle):
    scope = "enqueue"


class CancelThrottle(ActionThrottle):
    scope = "cancel"


class IngestThrottle(ActionThrottle):
    scope = "ingest"
