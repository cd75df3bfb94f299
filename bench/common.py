"""Helpers shared by the benchmark scripts in this folder (not a benchmark itself).

The scripts are run as ``python bench/<script>.py`` from the repository root; they put this folder
on ``sys.path`` and ``import common``. Everything here is independent of what a script measures:
throwaway databases (a temp SQLite file, a PostgreSQL database created and dropped again), the
environment and ``manage.py`` calls of the server, a ``daphne`` subprocess, percentiles, cProfile
tables, the machine/version header and the common ``main`` loop with its summary and exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import json
import math
import os
import platform
import pstats
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

Checks = list[tuple[str, bool]]


# --- measuring ---------------------------------------------------------------------------------


def prose(rng, words: Sequence[str], lo: int, hi: int, prefix: str = "") -> str:
    """Words drawn from ``words`` until the text is ``lo``..``hi`` characters (the workloads'
    log lines, prompts and tool output); deterministic for a seeded ``rng``."""
    target = rng.randint(lo, hi)
    out = [prefix] if prefix else []
    size = len(prefix)
    while size < target:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:hi]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def _short(path: str) -> str:
    for marker in ("site-packages/", f"{REPO}/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_text(prof: cProfile.Profile, title: str, top: int = 25, own: int = 0) -> str:
    """The ``top`` functions by cumulative time, then (when ``own``) the ``own`` by own time."""
    stats = pstats.Stats(prof)
    table = stats.stats  # {(file, line, name): (cc, ncalls, tottime, cumtime, callers)}
    lines = [f"--- {title}: top {top} by cumulative time (total {stats.total_tt * 1000:.1f} ms, "
             f"cProfile overhead included) ---",
             f"{'ncalls':>9} {'tottime ms':>10} {'cumtime ms':>10}  function"]
    sections = [(3, top)]
    if own:
        sections.append((2, own))
    for n, (column, count) in enumerate(sections):
        if n:
            lines.append(f"--- {title}: top {count} by own time ---")
        rows = sorted(table.items(), key=lambda kv: kv[1][column], reverse=True)[:count]
        for (path, line, name), (_cc, nc, tt, ct, _callers) in rows:
            where = name if path == "~" else f"{_short(path)}:{line}({name})"
            lines.append(f"{nc:>9} {tt * 1000:>10.1f} {ct * 1000:>10.1f}  {where}")
    return "\n".join(lines)


# --- the server and its databases --------------------------------------------------------------


def redis_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


def base_env(tmp: Path, db_url: str, redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH"):
        env.pop(name, None)
    (tmp / "payloads").mkdir(exist_ok=True)
    (tmp / "static").mkdir(exist_ok=True)
    env.update(
        DATABASE_URL=db_url,
        DJANGO_SETTINGS_MODULE="tracefoundry.settings",
        PYTHONPATH=str(REPO),
        DEBUG="0",
        SECRET_KEY="bench-" + uuid.uuid4().hex,
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        SECURE_SSL_REDIRECT="0",
        TRACEFOUNDRY_PAYLOAD_DIR=str(tmp / "payloads"),
        STATIC_ROOT=str(tmp / "static"),
        LOG_LEVEL="WARNING",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(env: dict, *argv: str) -> str:
    proc = subprocess.run([sys.executable, "manage.py", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(drop)


@contextlib.contextmanager
def sqlite_database(path: Path) -> Iterator[str]:
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def bench_db(kind: str, tmp: Path, redis_url: str | None, *, pg_db: str, sqlite_name: str,
             scopes: str) -> Iterator[tuple[str, dict[str, str], str]]:
    """A fresh migrated database of ``kind`` (dropped again at the end): yields its URL, the
    server's environment (with ``BENCH_API_KEY``) and an API key of the default project."""
    db_ctx = postgres_database(pg_db) if kind == "postgres" else sqlite_database(tmp / sqlite_name)
    with db_ctx as db_url:
        env = base_env(tmp, db_url, redis_url)
        print(f"[{kind}] migrate ...", file=sys.stderr, flush=True)
        manage(env, "migrate", "--noinput")
        key = manage(env, "apikey", "create", "--project", "default", "--scopes",
                     scopes).strip().splitlines()[-1]
        env["BENCH_API_KEY"] = key
        yield db_url, env, key


def db_title(kind: str, pg_db: str, sqlite_note: str = "temp file, WAL, synchronous=NORMAL") -> str:
    return (f"SQLite {sqlite3.sqlite_version} ({sqlite_note})" if kind == "sqlite"
            else f"PostgreSQL {pg_version()} (database {pg_db})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _healthy(base: str) -> bool:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def daphne_server(env: dict, log_path: Path) -> Iterator[str]:
    port = free_port()
    # The project's entry point: daphne with the request-body guard (tracefoundry/server.py).
    cmd = [sys.executable, "-m", "tracefoundry.server", "-b", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _healthy(base):
            if proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {proc.returncode}:\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not answer /healthz in 30 s:\n{tail(log_path)}")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# --- the in-process phase: a subprocess of the script with Django set up ------------------------


def run_phase(script: str, phase: str, out: Path, argv: Sequence[str], env: dict, *,
              profile: bool, timeout: int) -> dict[str, Any]:
    """Run ``script --_phase phase --_out out *argv`` against the bench database; its JSON."""
    cmd = [sys.executable, str(Path(script).resolve()), "--_phase", phase, "--_out", str(out),
           *argv]
    if profile:
        cmd.append("--profile")
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=timeout)
    return json.loads(out.read_text())


def setup_django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracefoundry.settings")
    import django

    django.setup()


# --- the header --------------------------------------------------------------------------------


def pg_version() -> str:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except psycopg.Error as exc:
        return f"unavailable ({exc.__class__.__name__})"


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"],
                               cwd=REPO, text=True, capture_output=True).stdout.strip()
        return head + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_machine(title: str, db: str, *, load_average: bool, versions: str = "") -> None:
    """The header's first lines: what, when, which commit, machine and versions.

    ``versions`` is appended to the django line (e.g. ``", httpx 0.28.1"``)."""
    import django

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    load = (", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
            if load_average else "")
    print(f"TraceFoundry bench: {title} (PRODUCT.md §14)")
    print(f"  date        {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC   commit {git_describe()}")
    print(f"  machine     nproc {cpus}, {cpu_model()}, {platform.system()} {platform.release()}"
          f"{load}")
    print(f"  python      {platform.python_version()} ({sys.executable})")
    print(f"  django      {django.get_version()}, psycopg {psycopg.__version__}{versions}")
    print(f"  sqlite      {sqlite3.sqlite_version}")
    print(f"  postgresql  {pg_version() if db != 'sqlite' else '-'}")


# --- main --------------------------------------------------------------------------------------


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench(args, *, tmp_prefix: str, order: tuple[str, str],
              header: Callable[[Any, str | None], None],
              bench_one: Callable[[str, Path, str | None], Checks]) -> int:
    """Run ``bench_one(kind, tmp, redis_url)`` for each database of ``args.db`` (both: in
    ``order``), then print the summary. Exit status: 0 every check passed, 1 one failed, 2 the
    bench itself failed (the temp dir is kept then)."""
    signal.signal(signal.SIGTERM, _terminate)
    redis_url = None
    if args.redis == "on" or (args.redis == "auto" and redis_reachable(REDIS_URL)):
        redis_url = REDIS_URL
    header(args, redis_url)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    checks: Checks = []
    try:
        for kind in order if args.db == "both" else (args.db,):
            checks += bench_one(kind, tmp, redis_url)
    except (Exception, KeyboardInterrupt) as exc:
        traceback.print_exc()
        print(f"bench failed: {exc!r} (logs kept in {tmp})", file=sys.stderr)
        args.keep = True
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("Summary")
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(f"  total bench time {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok in checks) else 1


def add_run_options(p: argparse.ArgumentParser, *, redis_help: str, seed: int,
                    profile_help: str) -> None:
    """``--redis``, ``--seed``, ``--profile``, ``--keep`` and the hidden ``--_phase``/``--_out``
    of a subprocess phase, in this order in ``--help``."""
    p.add_argument("--redis", choices=("auto", "on", "off"), default="auto",
                   help=f"{redis_help} ({REDIS_URL}; auto: if reachable)")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--profile", action="store_true", help=profile_help)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daphne logs)")
    p.add_argument("--_phase", dest="phase", help=argparse.SUPPRESS)
    p.add_argument("--_out", dest="out", help=argparse.SUPPRESS)


def print_checks(kind: str, checks: Checks) -> Checks:
    """Print a database's PASS/FAIL lines; return them prefixed with ``kind`` for the summary."""
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(flush=True)
    return [(f"{kind}: {text}", ok) for text, ok in checks]
