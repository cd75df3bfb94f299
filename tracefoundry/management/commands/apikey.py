"""``manage.py apikey create|list|revoke``: issue, list and revoke API keys."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runs.selectors import DEFAULT_PROJECT_SLUG, project_get
from tracefoundry import selectors, services
from tracefoundry.errors import InvalidInput, NotFound
from tracefoundry.models import SCOPES


class Command(BaseCommand):
    help = "Create, list and revoke API keys. `create` prints the new key alone on its last line."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a new key (shown once).")
        create.add_argument("--project", default=DEFAULT_PROJECT_SLUG, help="Project slug.")
        create.add_argument("--scopes", required=True,
                            help=f"Comma-separated, from: {', '.join(SCOPES)}.")
        create.add_argument("--user", help="Username the key acts for (caps it to their role).")
        create.add_argument("--name", default="", help="A label for the key.")
        listing = sub.add_parser("list", help="List keys (never their secrets).")
        listing.add_argument("--project", help="Only this project's keys.")
        revoke = sub.add_parser("revoke", help="Revoke a key by prefix or id.")
        revoke.add_argument("key", help="The key's prefix (from `list`), the key itself, or id.")

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options):
        try:
            project = project_get(slug=options["project"])
        except NotFound as exc:
            raise CommandError(exc.message) from None
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"user {options['user']!r} does not exist")
        try:
            issued = services.apikey_create(project=project, scopes=options["scopes"],
                                            name=options["name"], user=user)
        except InvalidInput as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Created key {issued.key.prefix} for project {project.slug} with scopes "
            f"{','.join(issued.key.scopes)}. Copy it now; it is not shown again:"
        )
        self.stdout.write(issued.raw)

    def _list(self, options):
        rows = [("PREFIX", "PROJECT", "SCOPES", "USER", "NAME", "LAST USED", "STATUS")]
        for key in selectors.apikey_list(project_slug=options.get("project")):
            rows.append((
                key.prefix, key.project.slug, ",".join(key.scopes),
                key.user.username if key.user else "-", key.name or "-",
                key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
                "revoked" if key.revoked_at else "active",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    def _revoke(self, options):
        key = selectors.apikey_find(ident=options["key"])
        if key is None:
            raise CommandError(f"no API key matches {options['key']!r}")
        services.apikey_revoke(key=key)
        self.stdout.write(f"Revoked key {key.prefix} ({key.project.slug}).")
