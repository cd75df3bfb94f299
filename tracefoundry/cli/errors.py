"""The one error the CLI reports: a message for stderr and the process's exit status."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # not found, conflict, unreachable server, failed or canceled run
EXIT_USAGE = 2  # bad arguments, as argparse reports them
EXIT_TIMEOUT = 124  # `runs tail --timeout` ran out, as timeout(1) does
EXIT_INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
