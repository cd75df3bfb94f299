"""WebSocket routes of the live streams (consumers in runs/consumers.py)."""

from django.urls import re_path

from runs import consumers

websocket_urlpatterns = [
    re_path(r"^ws/runs/(?P<run_id>run_[0-9A-Za-z]{1,36})/?$",
            consumers.RunStreamConsumer.as_asgi()),
    re_path(r"^ws/projects/(?P<slug>[-a-zA-Z0-9_]{1,64})/?$",
            consumers.ProjectStreamConsumer.as_asgi()),
]
