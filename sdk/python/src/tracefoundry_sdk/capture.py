"""Turning an agent's values (prompts, completions, tool arguments and results, outputs) into
what the server accepts, capped in size.

The server refuses a whole event batch for one bad value (NaN, a lone surrogate, nesting deeper
than 254 levels), and the OTLP encoder fails a whole span batch on a lone surrogate, so every
value is made safe here first, never trusted.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # deeper values are cut: the server's own limit is 254 levels
MAX_ITEMS = 1000  # items kept per list or dict


def cap(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}…[{len(text) - max_chars} more characters]"


def safe_text(text: str, max_chars: int) -> str:
    text = cap(text, max_chars)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not valid in JSON or protobuf strings
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def jsonable(value: Any, max_chars: int, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: strings capped, non-finite floats as strings, other
    objects by their ``str()``, at most MAX_DEPTH levels and MAX_ITEMS items per level."""
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        return safe_text(value, max_chars)
    if kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        out = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more items"
                break
            key = k if isinstance(k, str) else str(k)
            out[safe_text(key, 256)] = jsonable(v, max_chars, _depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [jsonable(v, max_chars, _depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out_list.append(f"…{len(items) - MAX_ITEMS} more items")
        return out_list
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return jsonable(float(value), max_chars)
    if isinstance(value, bytes):
        return safe_text(value.decode("utf-8", "replace"), max_chars)
    try:
        text = str(value)
    except Exception:
        text = f"<{kind.__name__}>"
    return safe_text(text, max_chars)


def as_text(value: Any, max_chars: int) -> str:
    """A span attribute value: strings as they are, anything else as JSON (both capped)."""
    if isinstance(value, str):
        return safe_text(value, max_chars)
    text = json.dumps(jsonable(value, max_chars), ensure_ascii=False, separators=(",", ":"))
    return cap(text, max_chars)
