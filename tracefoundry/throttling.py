"""Cache-backed throttles for enqueue, cancel and ingest, per API key or user (else per IP).

Fixed windows: a request costs one atomic increment of the window's counter in the cache, where
DRF's SimpleRateThrottle reads, unpickles, trims and writes back the list of every request's
timestamp in the window — at the ingest rate (6,000/min) tens of KB per request, and two
clients racing between its read and its write could both pass. The price of fixed windows: a
client may fit up to twice the rate across a window boundary.

Rates are read from settings on every request (not frozen at import like DRF's defaults), so a
deployment or a test can change TRACEFOUNDRY_THROTTLE_RATES without a restart.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle


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
        # add() only creates the counter (an atomic SET NX), incr() is atomic: no lost counts.
        cache.add(key, 0, duration + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between the two calls: this request opens the window
            cache.add(key, 1, duration + 1)
            count = 1
        if count <= allowed:
            return True
        self._wait = (window + 1) * duration - now
        return False

    def wait(self) -> float | None:
        return self._wait


class EnqueueThrottle(ActionThrottle):
    scope = "enqueue"


class CancelThrottle(ActionThrottle):
    scope = "cancel"


class IngestThrottle(ActionThrottle):
    scope = "ingest"
