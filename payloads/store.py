"""The payload store: large values saved once, keyed by the SHA-256 of their (redacted) bytes.

``created_at`` is the retention clock of a blob: set when the bytes are first stored, and moved
forward when an older blob is reused (``_blob_reused``), so that retention never deletes a blob
a writer has just decided to point at.

Blob files are written through Django's storage API (the ``payloads`` entry of STORAGES), so the
filesystem default and S3/MinIO via django-storages behave the same. Files are written *before*
the row that references them commits; a rolled-back writer leaves an unreferenced blob that
retention garbage-collects, never a reference to a missing file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import zstandard
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.utils import timezone

from payloads.models import PayloadBlob

_COMPRESSION_LEVEL = 3
# Reusing a blob older than this refreshes its ``created_at`` (see ``_blob_reused``); must stay
# well below retention's shortest cutoff (UNREFERENCED_GRACE, an hour).
REUSE_REFRESH_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class StoredPayload:
    sha256: str
    size_bytes: int
    content_type: str

    @property
    def ref(self) -> str:
        return f"sha256:{self.sha256}"


def blob_storage_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}.zst"


def payload_address(*, data: bytes, content_type: str) -> StoredPayload:
    """Where ``data`` is (or will be) stored, without storing it: its content address."""
    return StoredPayload(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                         content_type=content_type)


def payload_store(*, data: bytes, content_type: str, redaction_mode: str) -> StoredPayload:
    """Store ``data`` (already redacted) once; identical bytes share one blob."""
    stored = payload_address(data=data, content_type=content_type)
    sha256 = stored.sha256
    if _blob_reused(sha256):
        return stored
    compressed = zstandard.ZstdCompressor(level=_COMPRESSION_LEVEL).compress(data)
    # Always (re)write the file when there is no row: a file left by a rolled-back writer, or
    # one that retention is deleting right now, must not be trusted to still be there.
    key = storages["payloads"].save(blob_storage_key(sha256), ContentFile(compressed))
    try:
        with transaction.atomic():
            PayloadBlob.objects.create(
                sha256=sha256,
                size_bytes=len(data),
                stored_bytes=len(compressed),
                compression="zstd",
                content_type=content_type,
                storage_key=key,
                redaction_mode=redaction_mode,
            )
    except IntegrityError:
        pass  # a concurrent writer stored the same bytes first
    return stored


def _blob_reused(sha256: str) -> bool:
    """Whether a blob row for these bytes exists and is safe from retention until the caller's
    reference commits.

    Retention deletes only blobs whose ``created_at`` is older than its cutoffs (an hour at
    least, ``retention.UNREFERENCED_GRACE``), under a row lock, re-checking that age. So a reuse
    of an older blob refreshes ``created_at`` in the statement that finds it: inside a
    transaction the row stays locked until commit (a concurrent cleanup waits, then sees the
    new date and the new reference); in autocommit the new date alone keeps it for the grace
    period. A blob stored or refreshed in the last ``REUSE_REFRESH_AFTER`` is far from any
    cutoff and is reused without a write, so concurrent writers of a popular payload (a system
    prompt in every span) do not queue on its row.
    """
    now = timezone.now()
    refreshed = PayloadBlob.objects.filter(
        sha256=sha256, created_at__lt=now - REUSE_REFRESH_AFTER
    ).update(created_at=now)
    # A fresh statement (READ COMMITTED: a fresh snapshot): a row a cleanup deleted while the
    # UPDATE waited for it is gone here too, and the caller stores the bytes again.
    return bool(refreshed) or PayloadBlob.objects.filter(sha256=sha256).exists()


def payload_read(blob: PayloadBlob) -> bytes:
    with storages["payloads"].open(blob.storage_key, "rb") as fh:
        compressed = fh.read()
    if blob.compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(compressed)
    return compressed
