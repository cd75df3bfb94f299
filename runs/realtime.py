"""Live streaming names and senders: the one place that knows Channels group names.

Senders are only ever called through ``transaction.on_commit`` by the services, so no client
sees an event whose transaction rolled back; a failing channel layer never fails the write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def run_group(run_id: str) -> str:
    return f"run.{run_id}"


def project_group(slug: str) -> str:
    return f"project.{slug}"


def _send(groups: Iterable[str], message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # the write already committed; live delivery is best-effort
        log.exception("live broadcast failed for %s", message.get("type"))


def broadcast_on_commit(*, run_id: str, project_slug: str, events: list[dict], run: dict) -> None:
    """After commit, send the new events and the run's fresh snapshot to its groups."""
    groups = (run_group(run_id), project_group(project_slug))

    def send() -> None:
        if events:
            _send(groups, {"type": "run.events", "run_id": run_id, "events": events})
        _send(groups, {"type": "run.snapshot", "run_id": run_id, "run": run})

    transaction.on_commit(send)
