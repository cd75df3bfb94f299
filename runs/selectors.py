"""Reads of projects, runs, steps and events."""

from __future__ import annotations

import functools
import time

from django.db.models import Count, Max, Q, QuerySet

from runs.models import Project, Run, RunEvent, RunState, Step
from tracefoundry.errors import Forbidden, NotFound
from tracefoundry.roles import Access

EVENT_PAGE_DEFAULT = 100
EVENT_PAGE_MAX = 1000


# The project `bootstrap` creates: where runs go when neither a key nor the request names one.
DEFAULT_PROJECT_SLUG = "default"


def project_get(*, slug: str) -> Project:
    try:
        return Project.objects.get(slug=slug)
    except Project.DoesNotExist:
        raise NotFound(f"project {slug!r} does not exist") from None


@functools.lru_cache(maxsize=1024)
def project_slug(*, project_id: int) -> str:
    """A project's slug, cached: slugs never change once created (the admin keeps them fixed)."""
    return Project.objects.values_list("slug", flat=True).get(pk=project_id)


_POLICY_TTL = 5.0
_policies: tuple[float, dict[int, str]] = (0.0, {})


def project_policy_overrides() -> dict[int, str]:
    """Projects whose redaction policy differs from the server's, remembered for 5 seconds
    (a policy changed in the admin applies everywhere within that time)."""
    global _policies
    now = time.monotonic()
    if now >= _policies[0]:
        found = dict(Project.objects.exclude(redaction_policy="")
                     .values_list("pk", "redaction_policy"))
        _policies = (now + _POLICY_TTL, found)
    return _policies[1]


def project_policy_overrides_forget() -> None:
    global _policies
    _policies = (0.0, {})


def run_projects(*, run_ids: list[str]) -> dict[str, Project]:
    """The project of each of these runs (those that exist), in two queries."""
    project_ids = dict(Run.objects.filter(pk__in=run_ids).values_list("id", "project_id"))
    projects = Project.objects.in_bulk(set(project_ids.values()))
    return {run_id: projects[pk] for run_id, pk in project_ids.items()}


def project_list(*, access: Access) -> QuerySet[Project]:
    qs = Project.objects.all()
    if access.project_id is not None:
        qs = qs.filter(pk=access.project_id)
    return qs


def project_for_enqueue(*, access: Access, slug: str | None) -> Project:
    """The project a new run goes to: an API key's own project (naming another one is refused),
    else the project named, else the default project."""
    if access.api_key is not None:
        if slug and slug != access.api_key.project.slug:
            raise Forbidden("this API key belongs to another project")
        return access.api_key.project
    return project_get(slug=slug or DEFAULT_PROJECT_SLUG)


def project_list_with_counts(*, access: Access) -> QuerySet[Project]:
    """The projects ``access`` may see, each with its run totals for the projects page."""
    return project_list(access=access).annotate(
        run_count=Count("runs"),
        active_count=Count("runs", filter=Q(runs__state__in=[RunState.QUEUED, RunState.RUNNING])),
        failed_count=Count("runs", filter=Q(runs__state=RunState.FAILED)),
        last_run_at=Max("runs__created_at"),
    )


def project_visible(*, slug: str, access: Access) -> Project:
    """A project ``access`` may see; other projects do not exist for a key."""
    project = Project.objects.filter(slug=slug).first()
    if project is None or not access.can_see_project(project.id):
        raise NotFound(f"project {slug!r} does not exist")
    return project


def run_list(*, access: Access) -> QuerySet[Run]:
    """Runs visible to ``access``; filtering and ordering are applied by the API layer."""
    qs = Run.objects.select_related("project")
    if access.project_id is not None:
        qs = qs.filter(project_id=access.project_id)
    return qs


def run_get(*, run_id: str, access: Access) -> Run:
    """A run visible to ``access``; runs of other projects do not exist for a key."""
    run = Run.objects.select_related("project").filter(pk=run_id).first()
    if run is None or not access.can_see_project(run.project_id):
        raise NotFound(f"run {run_id} does not exist")
    return run


def step_list(*, run: Run) -> QuerySet[Step]:
    return Step.objects.filter(run_id=run.id).order_by("position", "created_at", "id")


def event_page(
    *,
    run: Run,
    after_id: int = 0,
    limit: int = EVENT_PAGE_DEFAULT,
    types: list[str] | None = None,
    levels: list[str] | None = None,
    step_id: str | None = None,
) -> tuple[list[RunEvent], int]:
    """Events of ``run`` with ``id > after_id`` in id order; returns (events, next_after_id).

    ``next_after_id`` is the id to pass next time: the last id returned, or ``after_id`` when
    nothing new has arrived, so a poller never skips or repeats an event.
    """
    limit = max(1, min(limit, EVENT_PAGE_MAX))
    qs = RunEvent.objects.filter(run_id=run.id, id__gt=after_id)
    if types:
        qs = qs.filter(type__in=types)
    if levels:
        qs = qs.filter(level__in=levels)
    if step_id:
        qs = qs.filter(step_id=step_id)
    events = list(qs.order_by("id")[:limit])
    return events, (events[-1].id if events else after_id)
