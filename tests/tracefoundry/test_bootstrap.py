"""`manage.py bootstrap --demo` (what `make run` calls): the admin login it prints works, and a
second run changes nothing."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from runs.models import Run

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


def test_prints_a_working_login_and_loads_demo_runs(settings, tmp_path):
    settings.BASE_DIR = tmp_path  # the generated password is kept under BASE_DIR/.local
    output = bootstrap("--demo", "--url", "http://127.0.0.1:8011/")
    assert "starting on http://127.0.0.1:8011/" in output
    password = re.search(r"Log in as admin / (\S+)", output).group(1)
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser
    assert user.groups.filter(name="admin").exists()
    demo_runs = Run.objects.count()
    assert demo_runs > 0

    again = bootstrap("--demo")
    assert f"Log in as admin / {password}" in again  # the same login, printed again
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Run.objects.count() == demo_runs  # demo runs are loaded once
