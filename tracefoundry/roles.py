"""Roles (Django groups created by migration) and what each may do: PRODUCT.md §12.

Capabilities are checked in one place, ``Access.can``, for users (by role) and API keys (by
scope, capped by the role of the key's user when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.contrib.auth.decorators import user_passes_test

VIEWER = "viewer"
ENGINEER = "engineer"
ADMIN = "admin"
ROLES = (VIEWER, ENGINEER, ADMIN)
_RANK = {None: 0, VIEWER: 1, ENGINEER: 2, ADMIN: 3}


class Cap(StrEnum):
    READ = "read"  # runs, events, traces, spans (redacted previews)
    PAYLOADS = "payloads"  # payload contents, full-fidelity export
    WRITE = "write"  # enqueue, cancel, lifecycle, steps, import, dry replay
    APPEND = "append"  # append run events
    WORKER = "worker"  # claim, heartbeat
    INGEST = "ingest"  # OTLP ingest
    MANAGE = "manage"  # users, roles, API keys, purge, retention


_MIN_ROLE = {
    Cap.READ: VIEWER,
    Cap.PAYLOADS: ENGINEER,
    Cap.WRITE: ENGINEER,
    Cap.APPEND: ENGINEER,
    Cap.MANAGE: ADMIN,
}
# Which key scopes grant a capability.
_SCOPES_FOR = {
    Cap.READ: {"runs:read"},
    Cap.WRITE: {"runs:write"},
    Cap.APPEND: {"runs:write", "ingest", "worker"},
    Cap.WORKER: {"worker"},
    Cap.INGEST: {"ingest"},
}
# Worker keys drive the lifecycle of the runs they hold (start, succeed, fail, steps).
LIFECYCLE_SCOPES = {"runs:write", "worker"}


def user_role(user) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    names = getattr(user, "_tf_group_names", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._tf_group_names = names
    best = None
    for role in ROLES:
        if role in names and _RANK[role] > _RANK[best]:
            best = role
    return best


@dataclass(frozen=True)
class Access:
    """Who is asking: a user (session/basic) or an API key (maybe tied to a user)."""

    user: object | None
    api_key: object | None = None

    @property
    def role(self) -> str | None:
        return user_role(self.user)

    @property
    def project_id(self) -> int | None:
        """Keys are confined to their project; users see every project."""
        return self.api_key.project_id if self.api_key is not None else None

    def can(self, cap: Cap, *, lifecycle: bool = False) -> bool:
        if self.api_key is not None:
            scopes = set(self.api_key.scopes)
            wanted = LIFECYCLE_SCOPES if lifecycle else _SCOPES_FOR.get(cap, set())
            if not scopes & wanted:
                return False
            if self.api_key.user_id is None:
                return True
            # A key never grants more than its user's role allows.
            minimum = _MIN_ROLE.get(cap)
            return minimum is None or _RANK[self.role] >= _RANK[minimum]
        minimum = _MIN_ROLE.get(cap)
        return minimum is not None and _RANK[self.role] >= _RANK[minimum]

    def can_see_project(self, project_id: int) -> bool:
        return self.project_id is None or self.project_id == project_id


# The explorer pages: anonymous users and accounts without a role may log in but read nothing
# (PRODUCT.md §12), so they go back to the login page, which says why.
reader_required = user_passes_test(lambda user: Access(user=user).can(Cap.READ))
