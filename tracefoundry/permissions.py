"""DRF permission classes on top of ``tracefoundry.roles.Access``."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from tracefoundry.roles import Access, Cap


def access_for(request) -> Access:
    auth = getattr(request, "auth", None)
    key = auth if auth is not None and hasattr(auth, "scopes") else None
    user = request.user if key is None or key.user_id is not None else None
    return Access(user=user, api_key=key)


def allows(cap: Cap, *, lifecycle: bool = False) -> type[BasePermission]:
    """A permission class granting ``cap`` (``lifecycle``: the run-driving endpoints)."""

    class _Allows(BasePermission):
        message = f"your role or key scope does not allow this ({cap.value})"

        def has_permission(self, request, view) -> bool:
            if not (request.user and request.user.is_authenticated):
                return False
            return access_for(request).can(cap, lifecycle=lifecycle)

    _Allows.__name__ = f"Allows{cap.value.title()}{'Lifecycle' if lifecycle else ''}"
    return _Allows
