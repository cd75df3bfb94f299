"""``manage.py cleanup [--dry-run] [--batch-size N]``: apply the retention policy once."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payloads.retention import UNREFERENCED_GRACE
from tracefoundry.maintenance import retention_cleanup

ROWS = (
    ("runs", "runs"),
    ("steps", "steps"),
    ("events", "run events"),
    ("traces", "traces"),
    ("spans", "spans"),
    ("expired_blobs", "payload blobs (expired)"),
    ("unreferenced_blobs", "payload blobs (unreferenced)"),
)


class Command(BaseCommand):
    help = (
        "Delete finished runs and traces older than TRACEFOUNDRY_RETENTION_DAYS, payload blobs "
        "older than TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS and unreferenced payload blobs, from the "
        "database and the payload storage."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Print what would be deleted and change nothing.")
        parser.add_argument("--batch-size", type=int, default=1000,
                            help="Rows per delete transaction (default 1000).")

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        dry_run = options["dry_run"]
        result = retention_cleanup(
            dry_run=dry_run, batch_size=batch_size,
            stdout=self.stdout if options["verbosity"] >= 2 else None,
        )
        grace_minutes = int(UNREFERENCED_GRACE.total_seconds() // 60)
        self.stdout.write(
            f"{'Would delete (dry run, nothing changed)' if dry_run else 'Deleted'}: "
            f"runs and traces older than {settings.TRACEFOUNDRY_RETENTION_DAYS} days, payload "
            f"blobs older than {settings.TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS} days, unreferenced "
            f"payload blobs older than {grace_minutes} minutes."
        )
        counts = result.as_dict()
        for field, label in ROWS:
            self.stdout.write(f"  {label}: {counts[field]}")
