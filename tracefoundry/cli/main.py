"""``tracefoundry``: argument parsing and the `runs` commands.

Local mode (the default) works on the server's database through Django, with the same settings
as manage.py. Remote mode (``--remote``, or ``TRACEFOUNDRY_API_URL`` set) talks to a server's
HTTP API with ``TRACEFOUNDRY_API_KEY``. Both print the same output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tracefoundry.cli import __version__, render
from tracefoundry.cli import bundles as bundle_commands
from tracefoundry.cli.backend import RunQuery, RunsBackend
from tracefoundry.cli.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
)
from tracefoundry.cli.tail import follow

API_URL_ENV = "TRACEFOUNDRY_API_URL"
API_KEY_ENV = "TRACEFOUNDRY_API_KEY"
STATES = ("queued", "running", "succeeded", "failed", "canceled")
MAX_ATTEMPTS_LIMIT = 100
LIST_DEFAULT_LIMIT = 20


# --- argument types (bad values are usage errors: exit 2, argparse's message) ------------------

def json_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def iso_datetime(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 date or date-time: {raw!r} (e.g. 2025-01-31 or "
            "2025-01-31T12:00:00Z)"
        ) from None
    # A naive time means UTC, as on the server (TIME_ZONE = UTC).
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def state_list(raw: str) -> list[str]:
    states = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in states if s not in STATES]
    if bad or not states:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(bad) or raw!r} (choose from {', '.join(STATES)})"
        )
    return states


def _int_between(low: int, high: int | None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds} (got {value})")
        return value

    return parse


def positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (got {raw})")
    return value


# --- the parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracefoundry",
        description=("TraceFoundry command line: enqueue, inspect, cancel and tail runs; export, "
                     "import and dry-replay bundles."),
        epilog=(
            f"Local mode uses the server's database (DATABASE_URL, as manage.py). Remote mode "
            f"(--remote, or {API_URL_ENV} set) uses the HTTP API with {API_KEY_ENV}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = parser.add_subparsers(
        dest="group", metavar="{runs,import-bundle,dry-replay,export-trace,export-run}",
        required=True)
    runs = groups.add_parser("runs", help="queue, inspect, cancel and follow runs")
    commands = runs.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where to act")
    mode = where.add_mutually_exclusive_group()
    mode.add_argument("--remote", action="store_true",
                      help=f"use the HTTP API (default when {API_URL_ENV} is set)")
    mode.add_argument("--local", action="store_true",
                      help=f"use the local database even when {API_URL_ENV} is set")
    where.add_argument("--api-url", metavar="URL", default=os.environ.get(API_URL_ENV) or None,
                       help=f"server URL, e.g. https://tf.example.com (default: ${API_URL_ENV})")
    where.add_argument("--api-key", metavar="KEY", default=os.environ.get(API_KEY_ENV) or None,
                       help=f"API key (default: ${API_KEY_ENV})")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    enqueue = commands.add_parser("enqueue", parents=[common], help="queue a run",
                                  description="Queue a run of KIND.")
    enqueue.add_argument("kind", help="job kind, e.g. script.pull")
    enqueue.add_argument("--project", metavar="SLUG",
                         help="project slug (default: `default`, or the API key's project)")
    source = enqueue.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="JSON", type=json_value, help="input as JSON")
    source.add_argument("--stdin", action="store_true", help="read the input JSON from stdin")
    enqueue.add_argument("--idempotency-key", metavar="KEY",
                         help="the same key returns the existing run instead of a new one")
    enqueue.add_argument("--max-attempts", metavar="N", type=_int_between(1, MAX_ATTEMPTS_LIMIT),
                         help=f"attempts before failing for good (1-{MAX_ATTEMPTS_LIMIT})")
    enqueue.set_defaults(handler=cmd_enqueue)

    status = commands.add_parser("status", parents=[common], help="show one run")
    status.add_argument("run_id", metavar="RUN_ID")
    status.set_defaults(handler=cmd_status)

    listing = commands.add_parser("list", parents=[common], help="list runs, newest first")
    listing.add_argument("--project", metavar="SLUG")
    listing.add_argument("--state", metavar="STATE", type=state_list, action="extend",
                         help=f"{'|'.join(STATES)}; repeat or comma-separate")
    listing.add_argument("--kind", metavar="KIND")
    listing.add_argument("--since", metavar="ISO", type=iso_datetime,
                         help="created at or after this ISO-8601 time (naive means UTC)")
    listing.add_argument("--limit", metavar="N", type=_int_between(1, None),
                         default=LIST_DEFAULT_LIMIT, help=f"default {LIST_DEFAULT_LIMIT}")
    listing.set_defaults(handler=cmd_list)

    cancel = commands.add_parser(
        "cancel", parents=[common], help="cancel a run (asks to confirm)",
        description="Cancel a run: a queued run at once, a running run is asked to stop.",
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--yes", "-y", action="store_true", help="do not ask to confirm")
    cancel.add_argument("--reason", default="", help="recorded with the cancellation")
    cancel.add_argument("--force", action="store_true",
                        help="cancel a running run at once instead of asking its worker")
    cancel.set_defaults(handler=cmd_cancel)

    tail = commands.add_parser(
        "tail", parents=[common], help="print a run's events until it finishes",
        description=(
            "Print a run's events, then new ones as they arrive, until the run finishes; then "
            "its output (or output_ref) or error. Exit 0 when it succeeded, 1 when it failed or "
            f"was canceled, {EXIT_TIMEOUT} when --timeout ran out."
        ),
    )
    tail.add_argument("run_id", metavar="RUN_ID")
    tail.add_argument("--timeout", metavar="SECONDS", type=positive_seconds,
                      help="give up after this long (default: wait for the run to finish)")
    tail.set_defaults(handler=cmd_tail)
    bundle_commands.add_commands(groups, common)
    return parser


# --- backends ----------------------------------------------------------------------------------

def open_backend(args: argparse.Namespace) -> RunsBackend:
    if args.remote or (args.api_url and not args.local):
        if not args.api_url:
            raise CliError(f"--remote needs --api-url or {API_URL_ENV}", exit_code=EXIT_USAGE)
        from tracefoundry.cli.remote import RemoteBackend

        return RemoteBackend(api_url=args.api_url, api_key=args.api_key)
    from tracefoundry.cli.bootstrap import django_setup

    django_setup()
    from tracefoundry.cli.local import LocalBackend

    return LocalBackend()


# --- commands ----------------------------------------------------------------------------------

def cmd_enqueue(args: argparse.Namespace, backend: RunsBackend) -> int:
    data = args.input
    if args.stdin:
        raw = sys.stdin.read()
        if not raw.strip():
            raise CliError("--stdin: no input on stdin", exit_code=EXIT_USAGE)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CliError(f"--stdin: not valid JSON ({exc})", exit_code=EXIT_USAGE) from None
    run, created = backend.enqueue(
        kind=args.kind, project=args.project, input=data,
        idempotency_key=args.idempotency_key, max_attempts=args.max_attempts,
    )
    _emit(args, run, render.enqueued(run, created))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, backend: RunsBackend) -> int:
    run = backend.get(args.run_id)
    _emit(args, run, render.run_detail(run))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, backend: RunsBackend) -> int:
    runs = backend.list(RunQuery(
        project=args.project, states=tuple(dict.fromkeys(args.state or ())), kind=args.kind,
        since=args.since, limit=args.limit,
    ))
    _emit(args, runs, render.run_list(runs))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, backend: RunsBackend) -> int:
    run = backend.get(args.run_id)  # an unknown run is reported before asking anything
    if not args.yes:
        _confirm(f"Cancel run {run['id']}? [y/N] ")
    run = backend.cancel(run["id"], reason=args.reason, force=args.force)
    _emit(args, run, render.canceled(run))
    return EXIT_OK


def cmd_tail(args: argparse.Namespace, backend: RunsBackend) -> int:
    out = sys.stdout

    def on_event(event: dict) -> None:
        if args.json:
            render.write_json_line(out, {"event": event})
        else:
            out.write(render.event_line(event))
            out.flush()

    result = follow(backend, args.run_id, on_event=on_event, timeout=args.timeout)
    run = result.run
    if run is None:
        raise CliError(
            f"timed out after {args.timeout:g}s; run {args.run_id} is still {result.last_state}",
            exit_code=EXIT_TIMEOUT,
        )
    if args.json:
        render.write_json_line(out, {"run": run})
    if run["state"] == "succeeded":
        if not args.json:
            out.write(render.run_outcome(run) + "\n")
        return EXIT_OK
    if run["state"] == "canceled":
        detail = f": {run['error']}" if run.get("error") else ""
        _error(f"run {run['id']} was canceled{detail}")
    else:
        _error(run.get("error") or f"run {run['id']} failed")
    return EXIT_ERROR


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        render.write_json(sys.stdout, data)
    else:
        sys.stdout.write(text)


def _confirm(prompt: str) -> None:
    if not sys.stdin.isatty():
        raise CliError("refusing to cancel without confirmation: stdin is not a terminal "
                       "(pass --yes)")
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CliError("aborted; nothing was canceled")


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


# --- entry point -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    backend: RunsBackend | None = None
    try:
        backend = getattr(args, "open_backend", open_backend)(args)
        return args.handler(args, backend)
    except CliError as exc:
        _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `tracefoundry runs tail … | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again (the recipe of Python's signal docs).
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    finally:
        if backend is not None:
            backend.close()
