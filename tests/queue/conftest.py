"""Fixtures of the queue tests: worker keys and clients, in-process workers, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from runs.worker import Worker, WorkerConfig
from tests.conftest import client_for

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], object], *, timeout: float = 60, what: str = "") -> object:
    """Poll ``condition`` until it returns something truthy (never a timing assertion: the
    timeout only keeps a broken test from hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or condition}")
        time.sleep(0.05)


@pytest.fixture
def worker_raw_key(make_key) -> str:
    return make_key("worker")[1]


@pytest.fixture
def worker_client(worker_raw_key):
    return client_for(raw_key=worker_raw_key)


@pytest.fixture
def make_worker():
    def make(**options) -> Worker:
        options.setdefault("worker_id", "w-test")
        options.setdefault("heartbeat_seconds", 0.05)
        options.setdefault("poll_seconds", 0.05)
        options.setdefault("reaper_interval", 3600)
        options.setdefault("shutdown_grace", 5)
        options.setdefault("listen", False)
        # Run spans are stored from a background thread (with its own connection): off here,
        # where tests roll back their transactions; tests/sdk/test_worker_spans.py tests them.
        options.setdefault("spans", False)
        return Worker(WorkerConfig(**options))

    return make


def database_url() -> str:
    """A URL of the test database for a child process (PostgreSQL tests only)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path, worker_id: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.worker_id = worker_id

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_process(tmp_path):
    """Start ``manage.py worker`` as a real process against the test database."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        child_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "TRACEFOUNDRY_PAYLOAD_DIR": str(tmp_path / "payloads"),
            "TRACEFOUNDRY_WORKER_POLL_MS": "100",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        child_env.pop("DJANGO_SETTINGS_MODULE", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "manage.py", "worker", *args], cwd=ROOT,
                                    env=child_env, stdout=log, stderr=subprocess.STDOUT)
        worker_id = args[args.index("--worker-id") + 1] if "--worker-id" in args else ""
        started.append(WorkerProcess(proc, log_path, worker_id))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(30)
