"""Sending a zip as it is made: the one response the export API, the admin action and the
multi-bundle download share, and the unseekable sink their ``zipfile`` writes into.

Under ASGI (daphne) Django collects a synchronous iterator whole before sending a byte, so the
chunks are made by ``sync_to_async`` one at a time; under WSGI (and the test client) they are
iterated directly. Either way the response owns the chunk iterator and a cleanup (``on_close``:
a bundle's spool): both run when the response is closed (Django closes it after sending, or
when the client went away), even when it was never read, and never while a chunk is still
being made in another thread (``generator already executing``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

ZIP = "application/zip"


class Pipe:
    """A zip's output: an unseekable sink whose bytes are taken as they come (``zipfile``
    writes data descriptors when it cannot seek back)."""

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


def zip_response(request: HttpRequest, chunks: Iterator[bytes], *, filename: str, mode: str,
                 on_close: Callable[[], None] | None = None,
                 reads_database: bool = False) -> StreamingHttpResponse:
    """A ``200 application/zip`` attachment streaming ``chunks``.

    ``reads_database``: the chunks query the database (the multi-bundle download prepares each
    bundle as it goes), so under ASGI they are made in the request's own thread, whose
    connection Django closes at the end; otherwise in any worker thread, so deflating a large
    bundle never holds up the thread other requests' views run in."""
    if isinstance(request, ASGIRequest):
        content = _AsyncChunks(chunks, on_close, thread_sensitive=reads_database)
    else:
        content = _SyncChunks(chunks, on_close)
    response = StreamingHttpResponse(content, content_type=ZIP)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-TraceFoundry-Export-Mode"] = mode
    return response


class _Chunks:
    """The response's content: the chunk iterator, stepped and closed under one lock, so a
    close (from whatever thread the server closes the response in) waits for a chunk still
    being made instead of closing a running generator."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None) -> None:
        self._chunks, self._on_close = chunks, on_close
        self._lock = threading.Lock()
        self._closed = False

    def next_or_none(self) -> bytes | None:
        with self._lock:
            if self._closed:
                return None
            return next(self._chunks, None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    close()
            finally:
                if self._on_close is not None:
                    self._on_close()


class _SyncChunks(_Chunks):
    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.next_or_none()) is not None:
            yield chunk


class _AsyncChunks(_Chunks):
    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None, *,
                 thread_sensitive: bool) -> None:
        super().__init__(chunks, on_close)
        self._step = sync_to_async(self.next_or_none, thread_sensitive=thread_sensitive)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._step()) is not None:
            if chunk:
                yield chunk
