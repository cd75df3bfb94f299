"""Reads of payload blobs."""

from __future__ import annotations

from payloads.models import PayloadBlob
from payloads.references import project_refers
from payloads.store import payload_read
from tracefoundry.errors import NotFound


def payload_get(*, sha256: str, project_id: int | None = None) -> PayloadBlob:
    """A blob; with ``project_id`` (API keys) only one that project's data refers to, since a
    blob is shared by every project that stored the same bytes."""
    sha256 = sha256.lower()
    blob = PayloadBlob.objects.filter(sha256=sha256).first()
    if blob is None or (project_id is not None
                        and not project_refers(sha256=sha256, project_id=project_id)):
        raise NotFound(f"payload {sha256} does not exist")
    return blob


def payload_content(*, blob: PayloadBlob) -> bytes:
    """The blob's original (decompressed) bytes."""
    try:
        return payload_read(blob)
    except FileNotFoundError:
        # Retention removed the file between the row read and now.
        raise NotFound(f"payload {blob.sha256} does not exist") from None
