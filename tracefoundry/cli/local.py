"""The local backend: runs.services and runs.selectors on the server's own database, acting as
the system (like manage.py). Import only after ``bootstrap.django_setup()``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from django.db import DatabaseError

from runs import selectors, services, wire
from runs.api.serializers import RunListSerializer, RunSerializer
from runs.models import Run
from tracefoundry import errors as ledger
from tracefoundry.api.renderers import FastJSONRenderer
from tracefoundry.cli.backend import EventDict, RunDict, RunQuery
from tracefoundry.cli.errors import CliError
from tracefoundry.roles import Access

SYSTEM = Access(user=None)  # no key: every project is visible, as to manage.py
_renderer = FastJSONRenderer()


def _plain(data: Any) -> Any:
    """Exactly what the API would send: rendered by its renderer, parsed back."""
    return orjson.loads(_renderer.render(data))


class LocalBackend:
    source = "cli"

    def enqueue(
        self,
        *,
        kind: str,
        project: str | None,
        input: Any,
        idempotency_key: str | None,
        max_attempts: int | None,
    ) -> tuple[RunDict, bool]:
        with _ledger_errors():
            run, created = services.run_enqueue(
                project=selectors.project_get(slug=project or selectors.DEFAULT_PROJECT_SLUG),
                kind=kind, input=input, idempotency_key=idempotency_key,
                max_attempts=max_attempts, source=self.source,
            )
            return _plain(RunSerializer(run).data), created

    def get(self, run_id: str) -> RunDict:
        with _ledger_errors():
            return _plain(RunSerializer(selectors.run_get(run_id=run_id, access=SYSTEM)).data)

    def list(self, query: RunQuery) -> list[RunDict]:
        qs = selectors.run_list(access=SYSTEM)
        if query.project:
            qs = qs.filter(project__slug=query.project)
        if query.states:
            qs = qs.filter(state__in=query.states)
        if query.kind:
            qs = qs.filter(kind=query.kind)
        if query.since:
            qs = qs.filter(created_at__gte=query.since)
        with _ledger_errors():
            runs: list[Run] = list(qs.order_by("-created_at", "-id")[: query.limit])
            return _plain(RunListSerializer(runs, many=True).data)

    def cancel(self, run_id: str, *, reason: str, force: bool) -> RunDict:
        with _ledger_errors():
            run = selectors.run_get(run_id=run_id, access=SYSTEM)
            run = services.run_cancel(run_id=run.id, reason=reason, force=force)
            run = selectors.run_get(run_id=run.id, access=SYSTEM)
            return _plain(RunSerializer(run).data)

    def events(self, run_id: str, *, after_id: int, limit: int) -> tuple[list[EventDict], int]:
        with _ledger_errors():
            run = Run(id=run_id)  # event_page only needs the id; get() checked it exists
            events, next_after_id = selectors.event_page(run=run, after_id=after_id, limit=limit)
            return _plain([wire.event_dict(e) for e in events]), next_after_id

    def close(self) -> None:
        pass


@contextmanager
def _ledger_errors() -> Iterator[None]:
    """Domain and database errors become CLI errors carrying the API's messages."""
    try:
        yield
    except ledger.DomainError as exc:
        raise CliError(exc.message) from None
    except DatabaseError as exc:
        raise CliError(
            f"database error: {exc} (is DATABASE_URL right, and has `manage.py migrate` run?)"
        ) from None
