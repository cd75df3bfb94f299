"""Seeded trace and span ids: the same demo seed gives the same ids.

``SeededIdGenerator`` is an OpenTelemetry ``IdGenerator`` for a TracerProvider. Inside
``seeded_ids(key)`` the ids come from ``random.Random(key)`` in the order the spans start;
anywhere else (other code sharing the provider, another thread) they are random as usual, so a
provider given this generator stays safe for everything else in the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Iterator

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID

_rng: contextvars.ContextVar[random.Random | None] = contextvars.ContextVar(
    "tracefoundry_sdk_demo_ids", default=None)


class SeededIdGenerator(IdGenerator):
    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        rng = _rng.get()
        if rng is None:
            return self._random.generate_span_id()
        while True:
            value = rng.getrandbits(64)
            if value != INVALID_SPAN_ID:
                return value

    def generate_trace_id(self) -> int:
        rng = _rng.get()
        if rng is None:
            return self._random.generate_trace_id()
        while True:
            value = rng.getrandbits(128)
            if value != INVALID_TRACE_ID:
                return value


@contextlib.contextmanager
def seeded_ids(key: str) -> Iterator[None]:
    """Ids from ``random.Random(key)`` for the spans started inside (a string seed is hashed
    the same way in every process, whatever ``PYTHONHASHSEED`` says)."""
    token = _rng.set(random.Random(f"tracefoundry-demo-ids:{key}"))
    try:
        yield
    finally:
        _rng.reset(token)
