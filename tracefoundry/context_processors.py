"""Template context for the pages: the user's role, so templates can hide what it can't do,
and how often a quiet live stream sends a keep-alive (the pages tell a stale stream by it)."""

from django.conf import settings

from tracefoundry.roles import ADMIN, ENGINEER, user_role


def role(request):
    current = user_role(getattr(request, "user", None))
    return {"tf_role": current or "", "tf_can_write": current in (ENGINEER, ADMIN),
            "tf_can_see_payloads": current in (ENGINEER, ADMIN),
            "tf_live_keepalive_ms": int(settings.TRACEFOUNDRY_SSE_KEEPALIVE_SECONDS * 1000)}
