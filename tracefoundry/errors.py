"""The domain error types every service raises (runs, traces, payloads, API keys); the API layer
maps them to HTTP statuses (tracefoundry.api.errors), the CLI to exit codes."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}


class InvalidInput(DomainError):
    """Bad input: nothing was written (HTTP 400)."""

    code = "invalid"


class Forbidden(DomainError):
    """The caller may not do this here (HTTP 403), e.g. a key naming another project."""

    code = "permission_denied"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request conflicts with the current state of the ledger (HTTP 409)."""

    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, *, entity: str, current_state: str, action: str) -> None:
        super().__init__(
            f"cannot {action} a {entity} that is {current_state}",
            details={"entity": entity, "state": current_state, "action": action},
        )
        self.current_state = current_state


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class RunFinished(Conflict):
    code = "run_finished"
