"""Local mode runs inside Django, configured exactly as manage.py is (same DATABASE_URL)."""

from __future__ import annotations

import os

from tracefoundry.cli.errors import CliError


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracefoundry.settings")
    import django
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    if apps.ready:
        return  # already configured (tests, or a caller that embeds the CLI)
    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise CliError(f"cannot configure the local server settings: {exc}") from None
