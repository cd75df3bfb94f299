"""The remote backend: the server's HTTP API (/api/v1/) with an API key."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from tracefoundry.cli.backend import EventDict, RunDict, RunQuery
from tracefoundry.cli.errors import CliError

API_PREFIX = "/api/v1"
PAGE_MAX = 100  # the API's largest list page
TIMEOUT_SECONDS = 30.0
# The API's run URLs only match these ids; anything else could never exist (and must not be
# spliced into a path unchecked).
RUN_ID_RE = re.compile(r"^run_[0-9A-Za-z]{1,36}$")


def normalize_api_url(url: str) -> str:
    """Accept the server's root, with or without a trailing slash or /api/v1."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    if not re.match(r"^https?://[^/]+", url):
        raise CliError(f"the API URL must start with http:// or https:// (got {url!r})")
    return url


class RemoteBackend:
    def __init__(self, *, api_url: str, api_key: str | None) -> None:
        from tracefoundry.cli import __version__

        self.base_url = normalize_api_url(api_url)
        self.has_key = bool(api_key)
        headers = {"User-Agent": f"tracefoundry-cli/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # One INFO line per request is noise on a terminal; errors are reported by the CLI.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.http = httpx.Client(
            base_url=self.base_url + API_PREFIX, headers=headers, timeout=TIMEOUT_SECONDS
        )

    def enqueue(
        self,
        *,
        kind: str,
        project: str | None,
        input: Any,
        idempotency_key: str | None,
        max_attempts: int | None,
    ) -> tuple[RunDict, bool]:
        body: dict[str, Any] = {"kind": kind}
        if input is not None:
            body["input"] = input
        if project:
            body["project"] = project
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        resp = self._request("POST", "/runs", json=body, headers=headers)
        return resp.json(), resp.status_code == 201

    def get(self, run_id: str) -> RunDict:
        return self._request("GET", self._run_path(run_id)).json()

    def list(self, query: RunQuery) -> list[RunDict]:
        params: dict[str, Any] = {"limit": min(query.limit, PAGE_MAX)}
        if query.project:
            params["project"] = query.project
        if query.states:
            params["state"] = ",".join(query.states)
        if query.kind:
            params["kind"] = query.kind
        if query.since:
            params["since"] = query.since.isoformat()
        runs: list[RunDict] = []
        url: str | None = "/runs"
        while url and len(runs) < query.limit:
            # The cursor's `next` link carries every parameter itself.
            body = self._request("GET", url, params=params if url == "/runs" else None).json()
            runs += body["results"]
            url = body.get("next")
        return runs[: query.limit]

    def cancel(self, run_id: str, *, reason: str, force: bool) -> RunDict:
        path = self._run_path(run_id) + "/cancel"
        return self._request("POST", path, json={"reason": reason, "force": force}).json()

    def events(self, run_id: str, *, after_id: int, limit: int) -> tuple[list[EventDict], int]:
        body = self._request(
            "GET", self._run_path(run_id) + "/events",
            params={"after_id": after_id, "limit": limit},
        ).json()
        return body["events"], body["next_after_id"]

    def close(self) -> None:
        self.http.close()

    # --- HTTP ---------------------------------------------------------------------------

    @staticmethod
    def _run_path(run_id: str) -> str:
        if not RUN_ID_RE.match(run_id):
            raise CliError(f"run {run_id} does not exist")  # the local backend's wording
        return f"/runs/{run_id}"

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._send(self.http.build_request(method, url, **kwargs), stream=False)

    def _stream(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A response whose body is not read yet (``iter_bytes``; the caller closes it). An
        error status is read, closed and raised here, as ``_request`` does."""
        return self._send(self.http.build_request(method, url, **kwargs), stream=True)

    def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        try:
            resp = self.http.send(request, stream=stream)
            if stream and resp.status_code >= 400:
                try:
                    resp.read()
                finally:
                    resp.close()
        except httpx.TimeoutException:
            raise CliError(f"cannot reach {self.base_url}: timed out") from None
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {self.base_url}: {_transport_reason(exc)}") from None
        if resp.status_code >= 400:
            raise CliError(self._error_message(resp))
        return resp

    def _error_message(self, resp: httpx.Response) -> str:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {resp.status_code} {resp.reason_phrase} from {self.base_url}"
        if resp.status_code == 401 and not self.has_key:
            message += " (set TRACEFOUNDRY_API_KEY or pass --api-key)"
        elif resp.status_code == 429 and resp.headers.get("Retry-After"):
            message += f" (retry after {resp.headers['Retry-After']} s)"
        return message


def _transport_reason(exc: httpx.TransportError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__
