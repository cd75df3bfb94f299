"""The attribute allowlist of the strict redaction policy (deploy/trace-allowlist.yaml)."""

from __future__ import annotations

import fnmatch
import functools
import re
from pathlib import Path

import yaml
from django.conf import settings
from django.core.signals import setting_changed


@functools.lru_cache(maxsize=4)
def _pattern(path: str) -> re.Pattern:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    entries = doc.get("allow", []) if isinstance(doc, dict) else []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f"{path}: `allow` must be a list of attribute keys or globs")
    if not entries:
        return re.compile(r"(?!)")  # an empty list allows nothing
    return re.compile("|".join(f"(?:{fnmatch.translate(e)})" for e in entries))


def allowlist_path() -> str:
    return str(settings.TRACEFOUNDRY_TRACE_ALLOWLIST)


def is_allowed(key: str) -> bool:
    return _pattern(allowlist_path()).match(key) is not None


def keep_allowed(attributes: dict) -> dict:
    """The attributes whose keys the allowlist names; everything else is dropped."""
    pattern = _pattern(allowlist_path())
    return {k: v for k, v in attributes.items() if pattern.match(k)}


def _reset(setting: str, **kwargs) -> None:
    if setting == "TRACEFOUNDRY_TRACE_ALLOWLIST":
        _pattern.cache_clear()


setting_changed.connect(_reset)
