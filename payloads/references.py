"""Who refers to a payload blob.

PayloadRef rows (a run event's or a span's values) are payloads' own. Other apps keep references
payloads cannot see — a run's ``output_ref`` — and register a ``ReferenceSource`` for them in
their ``AppConfig.ready``, so payloads never imports the apps above it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from payloads.models import PayloadRef

REF_PREFIX = "sha256:"
# How a PayloadRef reaches each kind of owner that a dry run may ask to ignore.
_OWNER_LOOKUPS = {"runs": "run_event__run__in", "traces": "span__trace__in"}


@dataclass(frozen=True)
class ReferenceSource:
    # Whether the project's rows refer to the blob (``sha256``, ``project_id``).
    project_refers: Callable[[str, int], bool]
    # Which of ``sha256s`` are referenced (since ``since``; ignoring the owners in ``ignoring``).
    referenced: Callable[[Collection[str], datetime | None, Mapping[str, QuerySet]], set[str]]


_sources: list[ReferenceSource] = []


def reference_source_register(source: ReferenceSource) -> None:
    if source not in _sources:
        _sources.append(source)


def project_refers(*, sha256: str, project_id: int) -> bool:
    """Whether the project's data (run events, spans, and what other apps register) refers to
    the blob."""
    refs = PayloadRef.objects.filter(blob_id=sha256).filter(
        Q(run_event__run__project_id=project_id) | Q(span__trace__project_id=project_id)
    )
    return refs.exists() or any(s.project_refers(sha256, project_id) for s in _sources)


def blobs_referenced(
    sha256s: Collection[str],
    *,
    since: datetime | None = None,
    ignoring: Mapping[str, QuerySet] | None = None,
) -> set[str]:
    """The blobs among ``sha256s`` that something still points at — the one definition of
    "referenced" for retention: a PayloadRef row (from a run event or a span), or a reference a
    registered source knows (a run's ``output_ref``).

    ``since``: only references made at or after that time count. ``ignoring``: references held
    by these owners (``{"runs": QuerySet, "traces": QuerySet}``) do not count — a dry run's view
    of rows it would delete.
    """
    if not sha256s:
        return set()
    ignoring = ignoring or {}
    refs = PayloadRef.objects.filter(blob_id__in=sha256s)
    if since is not None:
        refs = refs.filter(created_at__gte=since)
    for owner, owners in ignoring.items():
        refs = refs.exclude(**{_OWNER_LOOKUPS[owner]: owners.values("pk")})
    found = set(refs.values_list("blob_id", flat=True).distinct())
    for source in _sources:
        found |= source.referenced(sha256s, since, ignoring)
    return found
