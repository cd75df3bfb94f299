"""``manage.py worker [--concurrency N] [--kinds a,b] [--worker-id ID]``: run queued jobs."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from runs.worker import Worker, WorkerConfig, default_worker_id

# Connections a worker holds besides one per slot: the main loop and housekeeping.
EXTRA_CONNECTIONS = 2


class Command(BaseCommand):
    help = (
        "Claim queued runs and run their jobs (the kinds registered with @job in the installed "
        "apps' jobs.py). SIGTERM/SIGINT: stop claiming, let the jobs in hand finish within "
        "TRACEFOUNDRY_WORKER_SHUTDOWN_GRACE_SECONDS, hand the rest back to the queue, exit 0."
    )

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=1,
                            help="Jobs run at once, each in its own thread (default 1).")
        parser.add_argument("--kinds", default="",
                            help="Comma-separated run kinds to work on (default: every "
                                 "registered kind).")
        parser.add_argument("--worker-id", default="",
                            help="This worker's id in claims and heartbeats (default "
                                 "host:pid). Must be unique among running workers.")

    def handle(self, *args, **options):
        concurrency = options["concurrency"]
        if not 1 <= concurrency <= 256:
            raise CommandError("--concurrency must be between 1 and 256")
        kinds = [k.strip() for k in options["kinds"].split(",") if k.strip()] or None
        _size_pool(concurrency + EXTRA_CONNECTIONS)
        try:
            worker = Worker(WorkerConfig(worker_id=options["worker_id"] or default_worker_id(),
                                         concurrency=concurrency, kinds=kinds))
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        def stop(signum, frame):
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.run()


def _size_pool(needed: int) -> None:
    """Every slot thread holds a connection: make the PostgreSQL pool (if any) big enough
    before its first connection is made."""
    pool = connections.settings["default"].get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size", 0) < needed:
        pool["max_size"] = needed
