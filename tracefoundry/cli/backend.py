"""What a CLI backend does. Local and remote backends return the API's JSON shapes as plain
dicts (runs/api/serializers.py for runs, runs/wire.py for events), so output never depends on
where the data came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

RunDict = dict[str, Any]
EventDict = dict[str, Any]


@dataclass(frozen=True)
class RunQuery:
    """Filters of `runs list`, newest first."""

    project: str | None = None
    states: tuple[str, ...] = ()
    kind: str | None = None
    since: datetime | None = None  # timezone-aware
    limit: int = 20


class RunsBackend(Protocol):
    def enqueue(
        self,
        *,
        kind: str,
        project: str | None,
        input: Any,
        idempotency_key: str | None,
        max_attempts: int | None,
    ) -> tuple[RunDict, bool]:
        """The run and whether it was created (False: an idempotency key matched)."""

    def get(self, run_id: str) -> RunDict: ...

    def list(self, query: RunQuery) -> list[RunDict]: ...

    def cancel(self, run_id: str, *, reason: str, force: bool) -> RunDict: ...

    def events(self, run_id: str, *, after_id: int, limit: int) -> tuple[list[EventDict], int]:
        """Events with id > after_id in id order, and the after_id to ask with next."""

    def close(self) -> None: ...
