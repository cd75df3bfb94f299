"""``bundles.streaming.zip_response``: the response owns its chunks and their cleanup.

A download the client never reads (or abandons) still closes the bundle's spool, and a close
that arrives while a chunk is being made in another thread waits for it instead of failing
with "generator already executing" (what a client that goes away mid-download causes under
ASGI)."""

from __future__ import annotations

import threading

from django.test import RequestFactory

from bundles.streaming import zip_response


def _response(chunks, closed: list[str]):
    request = RequestFactory().get("/api/v1/traces/x/export")
    return zip_response(request, chunks, filename="b.zip", mode="full",
                        on_close=lambda: closed.append("spool"))


def test_a_response_never_read_still_runs_its_cleanup():
    closed: list[str] = []

    def chunks():
        try:
            yield b"PK"
        finally:
            closed.append("chunks")

    response = _response(chunks(), closed)
    assert response["Content-Type"] == "application/zip"
    response.close()
    assert closed == ["spool"]  # an unstarted generator has nothing to clean up
    response.close()  # twice is harmless
    assert closed == ["spool"]


def test_a_close_during_a_chunk_waits_for_it():
    closed: list[str] = []
    making, release = threading.Event(), threading.Event()

    def chunks():
        try:
            yield b"first"
            making.set()
            release.wait(10)
            yield b"second"
        finally:
            closed.append("chunks")

    response = _response(chunks(), closed)
    parts = iter(response)
    assert next(parts) == b"first"
    reader = threading.Thread(target=lambda: next(parts, None))
    reader.start()
    assert making.wait(10)
    errors: list[BaseException] = []

    def close():
        try:
            response.close()
        except BaseException as exc:  # "generator already executing" would land here
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close did not wait for the chunk being made"
    release.set()
    reader.join(10)
    closer.join(10)
    assert not errors and closed == ["chunks", "spool"]
