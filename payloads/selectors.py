"""Reads of payload blobs."""

from __future__ import annotations

from payloads.models import PayloadBlob
from payloads.store import payload_read
from runs.errors import NotFound


def payload_get(*, sha256: str) -> PayloadBlob:
    blob = PayloadBlob.objects.filter(sha256=sha256.lower()).first()
    if blob is None:
        raise NotFound(f"payload {sha256} does not exist")
    return blob


def payload_content(*, blob: PayloadBlob) -> bytes:
    """The blob's original (decompressed) bytes."""
    try:
        return payload_read(blob)
    except FileNotFoundError:
        # Retention removed the file between the row read and now.
        raise NotFound(f"payload {blob.sha256} does not exist") from None
