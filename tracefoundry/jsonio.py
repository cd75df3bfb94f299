"""JSON writing shared by every app: compact text for stored payloads and a never-raising
conversion of arbitrary values into what JSON (and PostgreSQL's JSONB) accepts."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

PREVIEW_CHARS = 512  # how much of an externalised string stays inline as its preview
MAX_DEPTH = 32


def dumps(value: Any) -> str:
    """Compact JSON text. orjson is several times faster than the standard library on the
    append path; it refuses integers beyond 64 bits, which the standard library then writes."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_safe(value: Any, depth: int = 0) -> Any:
    """Return a JSON-serialisable copy of ``value``; never raises.

    PostgreSQL's JSONB rejects NUL characters and NaN/Infinity, so those are replaced too.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return "[truncated: nested too deeply]"
    if isinstance(value, Mapping):
        return {
            (k if isinstance(k, str) else str(k)).replace("\x00", "\ufffd"): json_safe(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return json_safe(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return json_safe(float(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return json_safe(repr(value)[:PREVIEW_CHARS])
    except Exception:
        return f"[unrepresentable {type(value).__name__}]"
