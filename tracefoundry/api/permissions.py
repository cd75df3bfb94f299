"""DRF permission classes on top of ``tracefoundry.roles.Access``."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission

from tracefoundry.roles import Access, Cap


def access_for(request) -> Access:
    auth = getattr(request, "auth", None)
    key = auth if auth is not None and hasattr(auth, "scopes") else None
    user = request.user if key is None or key.user_id is not None else None
    return Access(user=user, api_key=key)


def allows(cap: Cap) -> type[BasePermission]:
    """A permission class granting ``cap`` (decided by ``Access.can``)."""

    class _Allows(BasePermission):
        message = f"your role or key scope does not allow this ({cap.value})"

        def has_permission(self, request, view) -> bool:
            if not (request.user and request.user.is_authenticated):
                return False
            return access_for(request).can(cap)

    _Allows.__name__ = f"Allows{cap.value.title()}"
    return _Allows


class ApiDocsAccess(BasePermission):
    """``/api/schema/`` and ``/api/docs/``: anyone when TRACEFOUNDRY_PUBLIC_API_DOCS is on (the
    default with DEBUG on), otherwise any authenticated caller."""

    def has_permission(self, request, view) -> bool:
        if settings.TRACEFOUNDRY_PUBLIC_API_DOCS:
            return True
        return bool(request.user and request.user.is_authenticated)
