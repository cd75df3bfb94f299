"""Log lines pass the redactor too: the console formatter redacts each formatted record —
message, arguments and traceback — under the configured policy (settings.LOGGING)."""

from __future__ import annotations

import logging

from payloads.redaction import get_redactor


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return get_redactor().text(super().format(record))
