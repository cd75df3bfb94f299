"""The payload store: large values saved once, keyed by the SHA-256 of their (redacted) bytes.

Blob files are written through Django's storage API (the ``payloads`` entry of STORAGES), so the
filesystem default and S3/MinIO via django-storages behave the same. Files are written *before*
the row that references them commits; a rolled-back writer leaves an unreferenced blob that
retention garbage-collects, never a reference to a missing file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zstandard
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import IntegrityError, transaction

from payloads.models import PayloadBlob

_COMPRESSION_LEVEL = 3


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


def payload_store(*, data: bytes, content_type: str, redaction_mode: str) -> StoredPayload:
    """Store ``data`` (already redacted) once; identical bytes share one blob."""
    sha256 = hashlib.sha256(data).hexdigest()
    stored = StoredPayload(sha256=sha256, size_bytes=len(data), content_type=content_type)
    if PayloadBlob.objects.filter(sha256=sha256).exists():
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


def payload_read(blob: PayloadBlob) -> bytes:
    with storages["payloads"].open(blob.storage_key, "rb") as fh:
        compressed = fh.read()
    if blob.compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(compressed)
    return compressed
