"""Moving large span attribute values into the payload store.

A value over TRACEFOUNDRY_SPAN_INLINE_LIMIT bytes (prompts, completions, ``input.value``,
``output.value``, tool arguments and results, big span-event attributes) is stored once as a
content-addressed blob; the span keeps a short preview under the original key and the blob's
address under ``tracefoundry.payload.<role>_ref``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from payloads.store import PayloadBatch
from tracefoundry.jsonio import PREVIEW_CHARS, dumps

REF_PREFIX = "tracefoundry.payload."
_ROLE_BY_KEY = {
    "input.value": "input",
    "output.value": "output",
    "gen_ai.prompt": "prompt",
    "gen_ai.completion": "completion",
    "gen_ai.input.messages": "prompt",
    "gen_ai.output.messages": "completion",
    "gen_ai.system_instructions": "prompt",
    "llm.prompts": "prompt",
    "llm.input_messages": "prompt",
    "llm.output_messages": "completion",
    "gen_ai.tool.call.arguments": "tool_args",
    "gen_ai.tool.call.result": "tool_result",
    "tool.parameters": "tool_args",
    "tool.output": "tool_result",
}


_SMALL = frozenset({int, float, bool, type(None)})  # never over the limit


@dataclass(frozen=True)
class SpanBlob:
    sha256: str
    role: str
    json_path: str


def role_for(key: str) -> str:
    """The payload role of an attribute: exact names first, then their indexed forms
    (``gen_ai.prompt.0.content`` is a prompt)."""
    if key in _ROLE_BY_KEY:
        return _ROLE_BY_KEY[key]
    for name, role in _ROLE_BY_KEY.items():
        if key.startswith(name + "."):
            return role
    return "attribute"


def _oversize(value, limit: int) -> tuple[bytes | None, str]:
    """The value's bytes when they exceed ``limit`` (a string of n characters is at most 4n
    UTF-8 bytes, so short strings, by far the most common case, are never encoded)."""
    if isinstance(value, str):
        if len(value) * 4 <= limit:
            return None, ""
        data = value.encode("utf-8")
        return (data if len(data) > limit else None), "text/plain; charset=utf-8"
    if isinstance(value, list | dict):
        data = dumps(value).encode("utf-8")
        return (data if len(data) > limit else None), "application/json"
    return None, ""


def externalize(attributes: dict, *, path: str, mode: str, blobs: list[SpanBlob],
                batch: PayloadBatch) -> dict:
    """Return ``attributes`` with oversize values replaced by a preview plus a ref attribute.

    The values go into ``batch``, addressed but not stored yet: the caller stores the batch
    before the rows that reference them commit (the ingest does this after its COPY, during
    which the connection cannot run other queries)."""
    limit = settings.TRACEFOUNDRY_SPAN_INLINE_LIMIT
    quarter = limit // 4  # a str of at most this many characters cannot exceed the limit
    out = None
    for key, value in attributes.items():
        kind = type(value)  # the common leaves first: this loop sees every attribute
        if (kind is str and len(value) <= quarter) or kind in _SMALL:
            continue
        data, content_type = _oversize(value, limit)
        if data is None:
            continue
        if out is None:
            out = dict(attributes)
        stored = batch.add(data=data, content_type=content_type, redaction_mode=mode)
        role = role_for(key)
        ref_key = f"{REF_PREFIX}{role}_ref"
        if ref_key in out:  # two values of one role: name the ref after the attribute instead
            ref_key = f"{REF_PREFIX}{key}_ref"
        preview = value if isinstance(value, str) else dumps(value)
        out[key] = preview[:PREVIEW_CHARS] + "…"
        out[ref_key] = stored.ref
        blobs.append(SpanBlob(sha256=stored.sha256, role=role, json_path=f"{path}/{key}"))
    return attributes if out is None else out
