"""ASGI entry point: HTTP through Django, WebSockets (/ws/…) through Channels, under daphne."""

import asyncio
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracefoundry.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from runs import realtime  # noqa: E402
from runs.routing import websocket_urlpatterns  # noqa: E402
from tracefoundry.ws_auth import websocket_stack  # noqa: E402

router = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
})


# Everything imported so far lives as long as the process: keep it out of the garbage
# collector's generations, whose full passes otherwise stall requests for ~100 ms.
gc.collect()
gc.freeze()


async def application(scope, receive, send):
    realtime.bind_server_loop(asyncio.get_running_loop())
    await router(scope, receive, send)
