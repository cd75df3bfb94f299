"""``manage.py bootstrap [--demo]``: the admin login (and demo data) for a fresh install.

The generated admin password is kept in .local/admin-password (git-ignored, mode 600) so every
``make run`` can print the login again, until someone changes the password.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from runs.demo import demo_runs_create
from runs.selectors import DEFAULT_PROJECT_SLUG, project_get


class Command(BaseCommand):
    help = "Create the admin superuser (printing its login) and, with --demo, demo runs."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="Also load the demo runs.")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/",
                            help="Where the server will listen (printed with the login).")

    def handle(self, *args, **options):
        username = options["username"]
        password_file = Path(settings.BASE_DIR) / ".local" / f"{username}-password"
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            user.groups.add(Group.objects.get(name="admin"))
            password_file.parent.mkdir(exist_ok=True)
            password_file.write_text(password)
            os.chmod(password_file, 0o600)
        else:
            password = password_file.read_text().strip() if password_file.exists() else None
            if password and not user.check_password(password):
                password = None
        if options["demo"]:
            created = demo_runs_create(project=project_get(slug=DEFAULT_PROJECT_SLUG))
            if created:
                self.stdout.write(f"Loaded {created} demo runs.")
        self.stdout.write("")
        self.stdout.write(f"  TraceFoundry is starting on {options['url']}")
        if password:
            self.stdout.write(f"  Log in as {username} / {password}")
        else:
            self.stdout.write(f"  Log in as {username} (password changed since it was generated;"
                              f" reset it with `manage.py changepassword {username}`)")
        self.stdout.write("")
