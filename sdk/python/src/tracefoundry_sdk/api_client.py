"""JSON over HTTP to the TraceFoundry run API, with the standard library only.

Every call is bounded: a per-request timeout, and for retried calls a deadline after which the
caller gets an ``ApiError`` instead of more waiting. 429 and 503 (the server's "throttled" and
"busy, retry" answers, both with ``Retry-After``), 502/504 and connection errors are retryable;
anything else is the server's final word.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0


class ApiError(Exception):
    """A request the server refused or did not answer. ``status`` is None when no HTTP answer
    came (connection refused, timeout)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body

    @property
    def details(self) -> dict:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        return details if isinstance(details, dict) else {}


def backoff_s(attempt: int, retry_after: float | None = None) -> float:
    """How long to wait before retry number ``attempt`` (1, 2, …): the server's Retry-After
    when it gave one, else exponential with full jitter from 0.25 s, at most MAX_BACKOFF_S."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_BACKOFF_S)
    ceiling = min(MAX_BACKOFF_S, 0.25 * (2 ** min(attempt, 16)))
    return random.uniform(ceiling / 2, ceiling)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from this server; fall back to our own backoff


def _message(status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"HTTP {status}: {error['message']}"
    return f"HTTP {status}"


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def request_once(self, method: str, path: str, body: Any = None, *,
                     timeout_s: float | None = None) -> Any:
        """One request; the parsed JSON answer, or ApiError."""
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "tracefoundry-sdk-python")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                raw_error = exc.read()
                parsed = json.loads(raw_error) if raw_error else None
            except (ValueError, OSError):
                parsed = None
            finally:
                exc.close()
            raise ApiError(_message(exc.code, parsed), status=exc.code,
                           retryable=exc.code in RETRYABLE_STATUSES,
                           retry_after=_retry_after(exc.headers.get("Retry-After")),
                           body=parsed) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # URLError wraps refused connections; socket timeouts are OSErrors; ValueError:
            # a malformed URL. All mean "no answer".
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"{method} {path}: no answer from {self.base_url} ({reason})",
                           retryable=True) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def request(self, method: str, path: str, body: Any = None, *,
                deadline_s: float) -> Any:
        """``request_once``, retried on retryable failures until ``deadline_s`` seconds have
        passed (each attempt's timeout is cut to what is left)."""
        deadline = time.monotonic() + deadline_s
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return self.request_once(method, path, body,
                                         timeout_s=max(0.05, min(self.timeout_s, left)))
            except ApiError as exc:
                attempt += 1
                wait = backoff_s(attempt, exc.retry_after)
                if not exc.retryable or time.monotonic() + wait >= deadline:
                    raise
                time.sleep(wait)
