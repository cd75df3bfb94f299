"""A real deployment for end-to-end tests: its own database, server processes, a browser.

The servers run the project's entry point, ``python -m tracefoundry.server`` (daphne with the
request-body guard), so every live test goes through it.

The test process never shares a connection with the servers: it talks to them the way users
do (HTTP, WebSocket, a browser) and sets data up through ``manage.py`` subprocesses. The
database follows the suite's: a fresh PostgreSQL database on the same server when
``DATABASE_URL`` is PostgreSQL, else an SQLite file. With ``REDIS_URL`` set the servers use the
Redis channel layer, so events appended through one process reach clients of another.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
MANAGE = str(ROOT / "manage.py")
CHROMIUM = os.environ.get("TRACEFOUNDRY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_database(url: str, name: str, *, drop: bool = False) -> str:
    import psycopg

    parts = urlsplit(url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class LiveStack:
    workdir: Path
    database_url: str
    pg_name: str | None = None
    env: dict = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)

    @classmethod
    def create(cls, workdir: Path, *, database_url: str | None = None,
               env: dict | None = None) -> LiveStack:
        """``database_url``: a database of the caller's (e.g. a fault test's own cluster),
        migrated here and never dropped; ``env``: settings on top of the stack's."""
        suite_db = os.environ.get("DATABASE_URL", "")
        pg_name = None
        if database_url is None and suite_db.startswith(("postgres://", "postgresql://")):
            pg_name = f"tf_live_{os.getpid()}_{secrets.token_hex(3)}"
            database_url = _postgres_database(suite_db, pg_name)
        elif database_url is None:
            database_url = f"sqlite:///{workdir / 'live.sqlite3'}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracefoundry.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "1",
            "SECRET_KEY": "live-stack-" + secrets.token_hex(16),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TRACEFOUNDRY_PAYLOAD_DIR": str(workdir / "payloads"),
            "TRACEFOUNDRY_THROTTLE_ENQUEUE": "1000000/min",
            "TRACEFOUNDRY_THROTTLE_CANCEL": "1000000/min",
            "TRACEFOUNDRY_THROTTLE_INGEST": "1000000/min",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        stack = cls(workdir=workdir, database_url=database_url, pg_name=pg_name, env=env)
        stack.manage("migrate", "--noinput")
        return stack

    # --- set-up through manage.py -------------------------------------------------------

    def manage(self, *args: str, input: str | None = None, check: bool = True):
        result = subprocess.run(
            [sys.executable, MANAGE, *args], cwd=ROOT, env=self.env, input=input,
            capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result

    def shell(self, code: str) -> str:
        """Run Python inside the deployment (Django set up) and return what it printed."""
        return self.manage("shell", "-c", code).stdout

    def create_user(self, username: str, role: str | None) -> str:
        password = "pw-" + secrets.token_hex(8)
        self.shell(
            "from django.contrib.auth.models import Group, User\n"
            f"u = User.objects.create_user({username!r}, password={password!r}, "
            f"is_staff={role == 'admin'!r}, is_superuser={role == 'admin'!r})\n"
            + (f"u.groups.add(Group.objects.get(name={role!r}))\n" if role else "")
        )
        return password

    def api_key(self, scopes: str = "runs:read,runs:write", project: str = "default") -> str:
        out = self.manage("apikey", "create", "--project", project, "--scopes", scopes).stdout
        return out.strip().splitlines()[-1].strip()

    # --- servers ------------------------------------------------------------------------------

    def server(self, name: str = "web", env: dict | None = None, args: tuple = ()) -> Server:
        """The server process called ``name``, started on first use (``env``: settings of its
        own on top of the stack's; ``args``: more command-line options)."""
        if name in self.servers and self.servers[name].process.poll() is None:
            return self.servers[name]
        port = free_port()
        log_path = self.workdir / f"daphne-{name}.log"
        # The project's entry point (daphne with the request-body guard), as `make run` uses.
        process = subprocess.Popen(
            [sys.executable, "-m", "tracefoundry.server", "-b", "127.0.0.1", "-p", str(port),
             *args],
            cwd=ROOT, env={**self.env, **(env or {})}, stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = Server(name=name, port=port, process=process, log_path=log_path)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daphne {name} exited:\n{server.log()}")
            try:
                with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"daphne {name} did not start:\n{server.log()}")
            time.sleep(0.1)
        self.servers[name] = server
        return server

    def request(self, method: str, url: str, *, key: str | None = None, body=None,
                headers: dict | None = None) -> tuple[int, dict | None]:
        """A JSON request to one of the servers (``url`` absolute)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"raw": raw.decode(errors="replace")}

    def close(self) -> None:
        for server in self.servers.values():
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.process.kill()
        self.servers.clear()
        if self.pg_name:
            _postgres_database(os.environ["DATABASE_URL"], self.pg_name, drop=True)


def login(page, server: Server, username: str, password: str) -> None:
    """Log a Playwright page in through the real login form."""
    page.goto(f"{server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
