"""Roles (Django groups created by migration) and what each may do: PRODUCT.md §12.

Capabilities are checked in one place, ``Access.can``, against one table (``RULES``), for users
(by role) and API keys (by scope, capped by the role of the key's user when it has one).
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
    READ = "read"  # runs, events, traces, spans (redacted previews), live streams
    PAYLOADS = "payloads"  # payload contents, full-fidelity export
    WRITE = "write"  # enqueue, cancel, import, dry replay
    LIFECYCLE = "lifecycle"  # start, succeed, fail, steps (worker keys: runs they hold)
    APPEND = "append"  # append run events
    WORKER = "worker"  # claim, heartbeat, acknowledge a cancel
    INGEST = "ingest"  # OTLP ingest
    MANAGE = "manage"  # users, roles, API keys, purge, retention


@dataclass(frozen=True)
class Rule:
    """Who holds a capability (PRODUCT.md §12).

    ``role``: the least role a logged-in user needs (None: no user, whatever the role).
    ``scopes``: the key scopes that grant it (empty: no key).
    ``key_user_role``: the least role the user of a user-bound key needs; such a key never
    grants more than its user's role.
    ``service_keys``: whether a key bound to no user (a project service key) gets it from its
    scopes alone.
    """

    role: str | None
    scopes: frozenset[str]
    key_user_role: str
    service_keys: bool = True


# The one table: every permission decision in the project is a lookup here (``Access.can``).
RULES: dict[Cap, Rule] = {
    Cap.READ: Rule(VIEWER, frozenset({"runs:read"}), VIEWER),
    # Payload contents are for engineers; a service key has no role, so it never reads them.
    Cap.PAYLOADS: Rule(ENGINEER, frozenset({"runs:read"}), ENGINEER, service_keys=False),
    Cap.WRITE: Rule(ENGINEER, frozenset({"runs:write"}), ENGINEER),
    Cap.LIFECYCLE: Rule(ENGINEER, frozenset({"runs:write", "worker"}), ENGINEER),
    Cap.APPEND: Rule(ENGINEER, frozenset({"runs:write", "ingest", "worker"}), ENGINEER),
    # Worker endpoints and OTLP ingest are for keys only (a person is not a worker).
    Cap.WORKER: Rule(None, frozenset({"worker"}), ENGINEER),
    Cap.INGEST: Rule(None, frozenset({"ingest"}), ENGINEER),
    Cap.MANAGE: Rule(ADMIN, frozenset(), ADMIN),
}


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

    def can(self, cap: Cap) -> bool:
        rule = RULES[cap]
        if self.api_key is not None:
            if not rule.scopes.intersection(self.api_key.scopes):
                return False
            if self.api_key.user_id is None:
                return rule.service_keys
            # A key never grants more than its user's role allows.
            return _RANK[user_role(self.api_key.user)] >= _RANK[rule.key_user_role]
        return rule.role is not None and _RANK[self.role] >= _RANK[rule.role]

    def can_see_project(self, project_id: int) -> bool:
        return self.project_id is None or self.project_id == project_id


# The explorer pages: anonymous users and accounts without a role may log in but read nothing
# (PRODUCT.md §12), so they go back to the login page, which says why.
reader_required = user_passes_test(lambda user: Access(user=user).can(Cap.READ))
