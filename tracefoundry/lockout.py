"""Brute-force protection for password logins (django-axes), HTTP Basic on the API included.

The login page and the admin login call ``django.contrib.auth.authenticate`` with the request,
so axes counts their failures and ``AxesMiddleware`` answers a locked-out pair with a 429 page.
DRF's Basic authentication does too; a locked-out Basic client gets the API's JSON error,
``401 locked_out`` with ``Retry-After``, instead of a misleading "wrong password".
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check, for logins that come with a request (every login over HTTP). Logins
    without one (``Client.login`` in tests, scripts) have no client address to count against."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LockedOut(exceptions.AuthenticationFailed):
    """401, like any credentials the API refuses (what a client must do is the same: stop sending
    them), with its own code and ``Retry-After``: when this user may try again from here."""

    def __init__(self, wait: int) -> None:
        super().__init__(
            code="locked_out",
            detail="too many failed logins for this user from this address; try again later",
        )
        self.wait = wait


class LockoutBasicAuthentication(BasicAuthentication):
    def authenticate_credentials(self, userid, password, request=None):
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if request is not None and getattr(request, "axes_locked_out", False):
                cool_off = get_cool_off(request)
                raise LockedOut(int(cool_off.total_seconds()) if cool_off else 60) from None
            raise
