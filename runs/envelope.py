"""Turning untrusted event input into rows that are safe to store.

In order: validate the envelope, make the payload valid JSON, redact secrets, move strings over
the inline limit into the payload store, and cap the whole payload. Everything here runs before
the append transaction opens, so blob writes and regex work never hold the run's row lock; a
batch's blobs are stored together, once every event of it is prepared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from payloads.redaction import Redactor, get_redactor
from payloads.store import PayloadBatch
from runs import lifecycle as lc
from runs.models import EventLevel
from tracefoundry.errors import InvalidInput
from tracefoundry.jsonio import PREVIEW_CHARS, dumps, json_safe

ENVELOPE_KEYS = frozenset(
    {"type", "level", "source", "payload", "step_id", "correlation_id", "causation_id", "worker_id"}
)
LOG_STREAMS = frozenset({"stdout", "stderr"})

_ROLE_BY_TYPE = {
    "llm_request": "prompt",
    "llm_response": "completion",
    "tool_call": "tool_args",
    "tool_result": "tool_result",
    "patch_proposed": "diff",
    "patch_applied": "diff",
    "log": "log",
}


@dataclass
class BlobRef:
    sha256: str
    role: str
    json_path: str


@dataclass
class PreparedEvent:
    type: str
    level: str
    source: str
    payload: dict
    payload_json: str
    payload_bytes: int
    truncated: bool
    step_id: str | None = None
    correlation_id: str = ""
    causation_id: str = ""
    blobs: list[BlobRef] = field(default_factory=list)


def _externalize(value: Any, *, limit: int, role: str, path: str, blobs: list[BlobRef], mode: str,
                 batch: PayloadBatch):
    """Replace every string longer than ``limit`` bytes with a preview and a blob reference
    (the blob goes into ``batch``)."""
    if isinstance(value, str):
        # len() bounds the UTF-8 size from below (and 4x from above), so most strings skip encode.
        if len(value) * 4 <= limit:
            return value, False
        data = value.encode("utf-8")
        if len(data) <= limit:
            return value, False
        stored = batch.add(data=data, content_type="text/plain; charset=utf-8",
                           redaction_mode=mode)
        blobs.append(BlobRef(sha256=stored.sha256, role=role, json_path=path))
        return {
            "truncated": True,
            "preview": value[:PREVIEW_CHARS],
            "payload_ref": stored.ref,
            "size_bytes": len(data),
        }, True
    if isinstance(value, dict):
        out, any_cut = {}, False
        for k, v in value.items():
            out[k], cut = _externalize(v, limit=limit, role=role, path=f"{path}/{k}", blobs=blobs,
                                       mode=mode, batch=batch)
            any_cut = any_cut or cut
        return out, any_cut
    if isinstance(value, list):
        out_list, any_cut = [], False
        for i, v in enumerate(value):
            item, cut = _externalize(v, limit=limit, role=role, path=f"{path}/{i}", blobs=blobs,
                                     mode=mode, batch=batch)
            out_list.append(item)
            any_cut = any_cut or cut
        return out_list, any_cut
    return value, False


def _error(index: int, field_name: str, message: str) -> dict:
    return {"index": index, "field": field_name, "message": message}


def _check_str(raw: Mapping, key: str, index: int, errors: list, *, max_len: int = 64) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_len or "\x00" in value:
        errors.append(_error(index, key, f"must be a string of at most {max_len} characters "
                                         "(no NUL)"))
        return ""
    return value


def _validate_type_payload(etype: str, payload: dict, index: int, errors: list) -> None:
    if etype == "log":
        if not isinstance(payload.get("text"), str):
            errors.append(_error(index, "payload.text", "a log event needs a string `text`"))
        if payload.get("stream", "stdout") not in LOG_STREAMS:
            errors.append(_error(index, "payload.stream", "must be `stdout` or `stderr`"))
    elif etype == "progress":
        for key in ("completed", "total"):
            value = payload.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                errors.append(_error(index, f"payload.{key}", "must be a number >= 0"))


@dataclass(frozen=True)
class BatchOrigin:
    worker_id: str | None  # who sent the batch: the first event naming a worker (late checks)
    source: str  # the default ``source`` of its events


def batch_origin(raw_events: Any, *, from_api_key: bool) -> BatchOrigin:
    """Where a batch of events posted to the API comes from: agents hold API keys, people
    posting with a session are ``api``."""
    worker_id = None
    if isinstance(raw_events, list):
        worker_id = next((e.get("worker_id") for e in raw_events
                          if isinstance(e, dict) and e.get("worker_id")), None)
    return BatchOrigin(worker_id=worker_id, source="agent" if from_api_key else "api")


def validate_envelope(raw: Any, index: int, errors: list, *, default_source: str) -> dict | None:
    """Check one event envelope; append problems to ``errors``; return the cleaned fields."""
    if not isinstance(raw, Mapping):
        errors.append(_error(index, "", "an event must be a JSON object"))
        return None
    unknown = sorted(str(k) for k in raw.keys() - ENVELOPE_KEYS)
    if unknown:
        errors.append(_error(index, ",".join(unknown), "unknown field(s); put data in `payload`"))
    n_errors = len(errors)
    etype = raw.get("type")
    if not isinstance(etype, str) or not lc.CUSTOM_TYPE_RE.match(etype):
        errors.append(_error(index, "type", "must match ^[a-z][a-z0-9_.]{0,63}$"))
    elif etype.startswith(lc.RESERVED_PREFIXES):
        errors.append(_error(index, "type", "run.* and step.* events are written by the server"))
    level = raw.get("level", "error" if etype == "error" else "info")
    if not isinstance(level, str) or level not in lc.LEVELS:
        errors.append(_error(index, "level", f"must be one of {', '.join(EventLevel.values)}"))
    source = raw.get("source", default_source)
    if not isinstance(source, str) or not lc.SOURCE_RE.match(source):
        errors.append(_error(index, "source", "must match ^[a-z][a-z0-9_.-]{0,31}$"))
    for name, value in (("type", etype), ("source", source)):  # names, never credentials
        if isinstance(value, str) and get_redactor().text(value) != value:
            errors.append(_error(index, name, "must not contain a credential"))
    step_id = _check_str(raw, "step_id", index, errors, max_len=40) or None
    correlation_id = _check_str(raw, "correlation_id", index, errors)
    causation_id = _check_str(raw, "causation_id", index, errors)
    _check_str(raw, "worker_id", index, errors, max_len=200)
    payload = raw.get("payload", {})
    payload = payload if isinstance(payload, dict) else {"value": payload}
    if isinstance(etype, str):
        _validate_type_payload(etype, payload, index, errors)
    if len(errors) > n_errors:
        return None
    return {
        "type": etype, "level": level, "source": source, "step_id": step_id,
        "correlation_id": correlation_id, "causation_id": causation_id, "payload": payload,
    }


@dataclass(frozen=True, slots=True)
class _Limits:
    """What prepare_event reads from settings, read once per batch (settings lookups cost more
    than preparing a small event)."""

    redactor: Redactor
    inline: int  # TRACEFOUNDRY_INLINE_STRING_LIMIT
    cap: int  # TRACEFOUNDRY_EVENT_PAYLOAD_LIMIT

    @classmethod
    def current(cls, policy: str | None) -> _Limits:
        return cls(get_redactor(policy), settings.TRACEFOUNDRY_INLINE_STRING_LIMIT,
                   settings.TRACEFOUNDRY_EVENT_PAYLOAD_LIMIT)


def prepare_event(
    fields: dict, *, from_json: bool = False, policy: str | None = None,
    limits: _Limits | None = None, batch: PayloadBatch | None = None,
) -> PreparedEvent:
    """Make a validated envelope storable: JSON-safe, redacted, truncated, capped.

    ``from_json``: the payload came out of a JSON parser, so only NUL characters (which
    PostgreSQL's JSONB refuses) can still be unsafe; the full ``json_safe`` copy is skipped.
    ``limits``: the redactor and size limits, when the caller has them (else read here).
    ``batch``: where the event's blobs go, for the caller to store; without one they are
    stored here.
    """
    if batch is None:
        batch = PayloadBatch()
        prepared = prepare_event(fields, from_json=from_json, policy=policy, limits=limits,
                                 batch=batch)
        batch.store()
        return prepared
    limits = limits or _Limits.current(policy)
    redactor, limit, cap = limits.redactor, limits.inline, limits.cap
    role = _ROLE_BY_TYPE.get(fields["type"], "event")
    raw = fields["payload"]
    payload = redactor.value(raw if from_json else json_safe(raw))
    blobs: list[BlobRef] = []
    text = dumps(payload)
    if from_json and "\\u0000" in text:
        payload = json_safe(payload)
        text = dumps(payload)
    size = len(text.encode("utf-8"))
    truncated = False
    # No string inside is longer (in UTF-8) than the whole document, so most payloads skip
    # the walk that looks for strings to move into the payload store.
    if size > limit:
        payload, truncated = _externalize(payload, limit=limit, role=role, path="",
                                          blobs=blobs, mode=redactor.policy, batch=batch)
        if truncated:
            text = dumps(payload)
            size = len(text.encode("utf-8"))
    if size > cap:
        data = text.encode("utf-8")
        stored = batch.add(data=data, content_type="application/json",
                           redaction_mode=redactor.policy)
        blobs = [BlobRef(sha256=stored.sha256, role=role, json_path="")]
        payload = {
            "truncated": True,
            "preview": text[:PREVIEW_CHARS],
            "payload_ref": stored.ref,
            "size_bytes": len(data),
        }
        text = dumps(payload)
        size = len(text.encode("utf-8"))
        truncated = True
    return PreparedEvent(
        type=fields["type"],
        level=fields["level"],
        source=fields["source"],
        payload=payload,
        payload_json=text,
        payload_bytes=size,
        truncated=truncated,
        step_id=fields["step_id"],
        correlation_id=redactor.text(fields["correlation_id"])[:64],  # a label may be longer
        causation_id=redactor.text(fields["causation_id"])[:64],
        blobs=blobs,
    )


def prepare_events(
    raw_events: list, *, default_source: str, from_json: bool = False, policy: str | None = None
) -> list[PreparedEvent]:
    """Validate a whole batch first (all-or-nothing), then prepare each event."""
    if not isinstance(raw_events, list) or not raw_events:
        raise InvalidInput("expected an event object or a non-empty list of events")
    batch_limit = settings.TRACEFOUNDRY_EVENT_BATCH_LIMIT
    if len(raw_events) > batch_limit:
        raise InvalidInput(
            f"a batch holds at most {batch_limit} events, got {len(raw_events)}",
            details={"limit": batch_limit, "received": len(raw_events)},
        )
    errors: list[dict] = []
    cleaned = [validate_envelope(raw, i, errors, default_source=default_source)
               for i, raw in enumerate(raw_events)]
    if errors:
        raise InvalidInput("invalid event(s); nothing was appended", details={"errors": errors})
    limits = _Limits.current(policy)
    batch = PayloadBatch()
    prepared = [prepare_event(fields, from_json=from_json, limits=limits, batch=batch)
                for fields in cleaned if fields is not None]
    batch.store()
    return prepared
