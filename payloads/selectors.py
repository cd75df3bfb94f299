"""Reads of payload blobs."""

from __future__ import annotations

from django.db.models import Q

from payloads.models import PayloadBlob, PayloadRef
from payloads.store import payload_read
from runs.models import Run
from tracefoundry.errors import NotFound


def payload_get(*, sha256: str, project_id: int | None = None) -> PayloadBlob:
    """A blob; with ``project_id`` (API keys) only one that project's data refers to, since a
    blob is shared by every project that stored the same bytes."""
    sha256 = sha256.lower()
    blob = PayloadBlob.objects.filter(sha256=sha256).first()
    if blob is None or (project_id is not None and not payload_referenced(sha256, project_id)):
        raise NotFound(f"payload {sha256} does not exist")
    return blob


def payload_referenced(sha256: str, project_id: int) -> bool:
    """Whether the project's data (run events, spans, run outputs) refers to the blob."""
    refs = PayloadRef.objects.filter(blob_id=sha256).filter(
        Q(run_event__run__project_id=project_id) | Q(span__trace__project_id=project_id)
    )
    return refs.exists() or Run.objects.filter(
        project_id=project_id, output_ref=f"sha256:{sha256}"
    ).exists()


def payload_content(*, blob: PayloadBlob) -> bytes:
    """The blob's original (decompressed) bytes."""
    try:
        return payload_read(blob)
    except FileNotFoundError:
        # Retention removed the file between the row read and now.
        raise NotFound(f"payload {blob.sha256} does not exist") from None
