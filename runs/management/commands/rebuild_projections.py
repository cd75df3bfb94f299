"""``manage.py rebuild_projections``: recompute every Run and Step row from the events alone."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from runs.models import Run
from runs.services import projections_rebuild


class Command(BaseCommand):
    help = "Rebuild run and step state and counters from the run event streams."

    def add_arguments(self, parser):
        parser.add_argument("run_ids", nargs="*", help="Only these runs (default: all).")

    def handle(self, *args, **options):
        ids = options["run_ids"] or list(Run.objects.values_list("id", flat=True))
        done = 0
        for start in range(0, len(ids), 100):
            done += projections_rebuild(run_ids=ids[start:start + 100])
            if self.stdout.isatty():
                self.stdout.write(f"\r  {done}/{len(ids)} runs", ending="")
        if self.stdout.isatty():
            self.stdout.write("")
        self.stdout.write(f"Rebuilt the projections of {done} run(s).")
