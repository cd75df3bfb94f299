"""Cache-backed throttles for enqueue, cancel and ingest, per API key or user (else per IP).

Rates are read from settings on every request (not frozen at import like DRF's defaults), so a
deployment or a test can change TRACEFOUNDRY_THROTTLE_RATES without a restart.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ActionThrottle(SimpleRateThrottle):
    scope = ""

    def get_rate(self):
        return settings.TRACEFOUNDRY_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        key = getattr(request, "auth", None)
        if key is not None and hasattr(key, "prefix"):
            ident = f"key:{key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"


class EnqueueThrottle(ActionThrottle):
    scope = "enqueue"


class CancelThrottle(ActionThrottle):
    scope = "cancel"


class IngestThrottle(ActionThrottle):
    scope = "ingest"
