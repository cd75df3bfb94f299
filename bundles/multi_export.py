"""Several bundles in one download: a zip holding one bundle (itself a zip) per trace or run,
named ``<trace_id>.zip`` or ``<run_id>.zip``; what the admin's "Export selected as bundle"
action sends when more than one row is selected.

The bundles are prepared one at a time, as the outer zip streams: only one bundle's spool
exists at any moment, so a hundred large traces need no more memory or disk than the largest
one. The entries are stored, not deflated again (a bundle is already deflated). A trace or run
that vanished between the selection and its turn is left out and named in ``MISSING.txt``.
"""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async

from bundles import format as fmt
from bundles.exports import PreparedBundle
from tracefoundry.errors import NotFound

CHUNK = 256 * 1024
MISSING = "MISSING.txt"


def bundles_zip(idents: list[str], prepare: Callable[[str], PreparedBundle]) -> Iterator[bytes]:
    """The outer zip, a chunk at a time: ``prepare(ident)`` for each ident in order, its bundle
    stored as ``<ident>.zip``."""
    out = _Sink()
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for ident in idents:
            try:
                bundle = prepare(ident)
            except NotFound:
                missing.append(ident)
                continue
            chunks = bundle.chunks()
            try:
                # The bundle's size is not known before it is deflated: zip64 headers, so a
                # bundle over 2 GiB cannot end the stream with an error.
                with archive.open(_stored(f"{ident}.zip"), "w", force_zip64=True) as member:
                    for chunk in chunks:
                        member.write(chunk)
                        if out.size >= CHUNK:
                            yield out.take()
            finally:
                chunks.close()
                bundle.close()  # an unstarted generator's cleanup never runs
        if missing:
            text = "Left out (deleted after they were selected):\n" + "\n".join(missing) + "\n"
            archive.writestr(_stored(MISSING), text)
    yield out.take()


async def async_chunks(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A synchronous chunk iterator for an ASGI response. Each step runs in the request's own
    thread (thread-sensitive), because preparing a bundle reads the database through that
    thread's connection, which Django closes when the response ends."""
    step = sync_to_async(_next_or_none, thread_sensitive=True)
    try:
        while (chunk := await step(iterator)) is not None:
            if chunk:
                yield chunk
    finally:
        await sync_to_async(_close, thread_sensitive=True)(iterator)


def _next_or_none(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)


def _close(iterator: Iterator[bytes]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _stored(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o100644 << 16
    return info


class _Sink:
    """The outer zip's output: unseekable, its bytes taken as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts, self.size = b"".join(self._parts), [], 0
        return data
