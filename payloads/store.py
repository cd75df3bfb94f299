"""The payload store: large values saved once, keyed by the SHA-256 of their (redacted) bytes.

``created_at`` is the retention clock of a blob: set when the bytes are first stored, and moved
forward when an older blob is reused (``_blobs_reused``), so that retention never deletes a blob
a writer has just decided to point at.

Blob files are written through Django's storage API (the ``payloads`` entry of STORAGES), so the
filesystem default and S3/MinIO via django-storages behave the same. Files are written *before*
the row that references them commits; a rolled-back writer leaves an unreferenced blob that
retention garbage-collects, never a reference to a missing file.

Writers that move many values to blobs at once (an OTLP batch, a batch of run events) collect
them in a ``PayloadBatch`` and store them together: a fixed number of statements per batch,
however many blobs it holds, instead of several round trips per blob.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import zstandard
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection
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


class PayloadBatch:
    """Payloads stored together. ``add`` gives each its address at once (the writer puts the
    ref into the row it is building); ``store`` then stores everything added so far:

    1. one SELECT finds which blobs exist already (one more round trip refreshes those old
       enough to need it, see ``_blobs_reused``);
    2. the files of the others, and only theirs, are compressed and written (an existing blob's
       file is never rewritten under a reader);
    3. their rows go in with one INSERT that skips a row a concurrent writer of the same bytes
       inserted first (it names the same file).

    Identical bytes added twice are stored once. ``store`` must run before the rows that refer
    to the blobs commit: inside their transaction, or before it opens.
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[bytes, str, str]] = {}  # sha256 -> (data, type, mode)

    def add(self, *, data: bytes, content_type: str, redaction_mode: str) -> StoredPayload:
        """Address ``data`` (already redacted), to be stored by the next ``store``."""
        stored = payload_address(data=data, content_type=content_type)
        self._pending.setdefault(stored.sha256, (data, content_type, redaction_mode))
        return stored

    def store(self) -> None:
        """Store everything added so far (the batch is empty afterwards); see the class."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        reused = _blobs_reused(list(pending))
        compressor = zstandard.ZstdCompressor(level=_COMPRESSION_LEVEL)
        storage = storages["payloads"]
        now = timezone.now()
        rows = []
        for sha256, (data, content_type, mode) in pending.items():
            if sha256 in reused:
                continue
            compressed = compressor.compress(data)
            # Always (re)write the file when there is no row: a file left by a rolled-back
            # writer, or one that retention is deleting right now, must not be trusted to
            # still be there.
            key = storage.save(blob_storage_key(sha256), ContentFile(compressed))
            rows.append((sha256, len(data), len(compressed), "zstd", content_type, key, mode, now))
        _blobs_insert(rows)


def payload_store(*, data: bytes, content_type: str, redaction_mode: str) -> StoredPayload:
    """Store ``data`` (already redacted) once; identical bytes share one blob."""
    batch = PayloadBatch()
    stored = batch.add(data=data, content_type=content_type, redaction_mode=redaction_mode)
    batch.store()
    return stored


def _blobs_reused(sha256s: list[str]) -> set[str]:
    """Those of ``sha256s`` whose blob row exists and is safe from retention until the
    caller's references commit.

    Retention deletes only blobs whose ``created_at`` is older than its cutoffs (an hour at
    least, ``retention.UNREFERENCED_GRACE``), under a row lock, re-checking that age. A blob
    stored or refreshed in the last ``REUSE_REFRESH_AFTER`` is far from any cutoff and is
    reused as it is found, without a write, so concurrent writers of a popular payload (a
    system prompt in every span) do not queue on its row. An older one is refreshed first
    (``_blobs_refresh``).
    """
    now = timezone.now()
    stale = now - REUSE_REFRESH_AFTER
    found = dict(
        PayloadBlob.objects.filter(sha256__in=sha256s).order_by()
        .values_list("sha256", "created_at")
    )
    old = sorted(sha256 for sha256, created_at in found.items() if created_at < stale)
    if not old:
        return set(found)
    return (found.keys() - set(old)) | _blobs_refresh(old, now=now, stale=stale)


def _blobs_refresh(sha256s: list[str], *, now: datetime, stale: datetime) -> set[str]:
    """Move ``created_at`` of these old blobs (sorted) to ``now``; return those that exist.

    The refresh happens in the statement that finds each row: inside a transaction the row
    stays locked until commit (a concurrent cleanup waits, then sees the new date and the new
    reference); in autocommit the new date alone keeps it for the grace period. Rows are locked
    in sha256 order, so two writers refreshing overlapping sets cannot deadlock. Then a second
    statement (READ COMMITTED: a fresh snapshot) lists the rows that exist: one a cleanup
    deleted while the UPDATE waited for it is gone there too, and the caller stores those bytes
    again. On PostgreSQL both statements go in one round trip.
    """
    if connection.vendor == "postgresql":
        table = PayloadBlob._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET created_at = %s WHERE sha256 IN ("
                f"SELECT sha256 FROM {table} WHERE sha256 = ANY(%s) AND created_at < %s "
                f"ORDER BY sha256 FOR UPDATE); "
                f"SELECT sha256 FROM {table} WHERE sha256 = ANY(%s)",
                [now, sha256s, stale, sha256s],
            )
            cursor.cursor.nextset()  # Django's client-side binding cursor runs both at once
            return {sha256 for (sha256,) in cursor.fetchall()}
    # SQLite: one writer at a time, nothing to wait for.
    PayloadBlob.objects.filter(sha256__in=sha256s, created_at__lt=stale).update(created_at=now)
    return set(PayloadBlob.objects.filter(sha256__in=sha256s).values_list("sha256", flat=True))


_BLOB_COLUMNS = ("sha256", "size_bytes", "stored_bytes", "compression", "content_type",
                 "storage_key", "redaction_mode", "created_at")


def _blobs_insert(rows: list[tuple]) -> None:
    """Insert blob rows (ordered as ``_BLOB_COLUMNS``) with one statement; a row whose sha256
    exists is skipped: a concurrent writer stored the same bytes first, and its row names the
    same file."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        # One parameter per column, whatever the number of rows (PostgreSQL takes 65,535).
        table = PayloadBlob._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(_BLOB_COLUMNS)}) SELECT * FROM unnest("
                f"%s::varchar[], %s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], "
                f"%s::varchar[], %s::varchar[], %s::timestamptz[]) "
                f"ON CONFLICT (sha256) DO NOTHING",
                [list(column) for column in zip(*rows, strict=True)],
            )
        return
    PayloadBlob.objects.bulk_create(
        [PayloadBlob(**dict(zip(_BLOB_COLUMNS, row, strict=True))) for row in rows],
        ignore_conflicts=True,
    )


def payload_read(blob: PayloadBlob) -> bytes:
    with storages["payloads"].open(blob.storage_key, "rb") as fh:
        compressed = fh.read()
    if blob.compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(compressed)
    return compressed
