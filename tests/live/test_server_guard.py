"""The web server refuses request bodies it should not read, before reading them.

A real ``python -m tracefoundry.server`` process (the stack's servers all run it) and raw
sockets: requests that declare a huge body but send none get their answer and the end of the
connection without the server waiting for the body, so a server that read first would leave the
client waiting (the socket's timeout then fails the test).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.livestack import Server
from tests.traces.otlp_builders import json_request, json_span

API_MAX, OTLP_MAX, PAGE_MAX = 65536, 131072, 4096
SMALL_CAPS = {"TRACEFOUNDRY_MAX_REQUEST_BYTES": str(API_MAX),
              "TRACEFOUNDRY_OTLP_MAX_BYTES": str(OTLP_MAX),
              "TRACEFOUNDRY_PAGE_MAX_BYTES": str(PAGE_MAX)}
TWO_GIB = 2 * 1024**3


@pytest.fixture(scope="module")
def guarded(live_stack) -> Server:
    return live_stack.server("guard", env=SMALL_CAPS)


@pytest.fixture(scope="module")
def keys(live_stack) -> dict[str, str]:
    return {"api": live_stack.api_key("runs:read,runs:write"),
            "otlp": live_stack.api_key("ingest")}


def exchange(server: Server, head: str, chunks=(), *, timeout: float = 30):
    """Send ``head`` (request line and headers), then ``chunks`` while the server takes them,
    then read to the end of the connection. Returns (status, headers, body bytes) of the final
    answer; headers["continued"] says whether a "100 Continue" came first."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server has answered and closed: read its answer
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    continued = data.startswith(b"HTTP/1.1 100 ")
    if continued:
        data = data.partition(b"\r\n\r\n")[2]
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    headers["continued"] = continued
    return int(lines[0].split()[1]), headers, body


def request_head(method: str, path: str, *, length: int | None = None, key: str | None = None,
                 extra: str = "") -> str:
    head = f"{method} {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
    if length is not None:
        head += f"Content-Length: {length}\n"
    if key:
        head += f"Authorization: Bearer {key}\n"
    return head + extra


def assert_error(status: int, headers: dict, body: bytes, expected: int, code: str) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["details"] == {}


@pytest.mark.parametrize("path, with_key", [
    ("/api/v1/runs", "api"), ("/otlp/v1/traces", "otlp"), ("/healthz", None),
    ("/accounts/login/", None), ("/api/v1/runs", None),
])
def test_a_declared_2_gib_body_is_413_before_any_of_it_is_sent(guarded, keys, path, with_key):
    head = request_head("POST", path, length=TWO_GIB, key=keys.get(with_key))
    assert_error(*exchange(guarded, head), 413, "payload_too_large")


def test_expect_100_continue_gets_the_413_and_no_continue(guarded, keys):
    head = request_head("POST", "/otlp/v1/traces", length=TWO_GIB, key=keys["otlp"],
                        extra="Expect: 100-continue\n")
    status, headers, body = exchange(guarded, head)
    assert_error(status, headers, body, 413, "payload_too_large")
    assert not headers["continued"] and b"100 Continue" not in body


@pytest.mark.parametrize("path", ["/api/v1/runs", "/otlp/v1/traces", "/%61pi/v1/runs",
                                  "/api/v1/runs?x=1", "/otlp/v1/traces?"])
def test_an_anonymous_body_to_the_api_is_401_before_it_is_sent(guarded, path):
    status, headers, body = exchange(guarded, request_head("POST", path, length=1000))
    assert_error(status, headers, body, 401, "not_authenticated")
    assert headers["www-authenticate"].startswith("Bearer")


def test_a_chunked_body_is_cut_with_413_once_over_the_cap(guarded, keys):
    head = request_head("POST", "/api/v1/runs", key=keys["api"],
                        extra="Transfer-Encoding: chunked\n")
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    status, headers, body = exchange(guarded, head, [chunk] * (4 * API_MAX // 16384))
    assert_error(status, headers, body, 413, "payload_too_large")


def test_an_anonymous_chunked_body_to_otlp_is_401(guarded):
    head = request_head("POST", "/otlp/v1/traces", extra="Transfer-Encoding: chunked\n")
    status, headers, body = exchange(guarded, head, [b"4\r\n{}  \r\n0\r\n\r\n"])
    assert_error(status, headers, body, 401, "not_authenticated")


def test_what_fits_still_works(live_stack, guarded, keys):
    run = json.dumps({"kind": "guard.test", "input": {"pad": "x" * (API_MAX // 2)}})
    status, body = live_stack.request("POST", f"{guarded.url}/api/v1/runs", key=keys["api"],
                                      body=json.loads(run))
    assert status == 201, body
    spans = json_request([json_span("d" * 31 + "1", "1" * 16, "fits")])
    head = request_head("POST", "/otlp/v1/traces", length=len(spans), key=keys["otlp"],
                        extra="X-TraceFoundry-Key: " + keys["otlp"] + "\nConnection: close\n"
                        "Expect: 100-continue\n")
    status, headers, body = exchange(guarded, head, [spans])
    assert status == 200 and headers["continued"], body
    # A body without credentials where none are needed, and a page.
    status, _, _ = exchange(guarded, "GET /healthz HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")
    assert status == 200
    status, _, body = exchange(guarded, "GET /accounts/login/ HTTP/1.1\nHost: 127.0.0.1\n"
                               "Connection: close\n")
    assert status == 200 and b"password" in body


def test_a_session_cookie_or_a_bad_key_goes_on_to_django(guarded):
    """The server only looks for credentials; judging them is the application's job."""
    for extra in ("Cookie: sessionid=not-a-session\n", "Authorization: Bearer tf_bogus\n"):
        head = request_head("POST", "/api/v1/runs", length=2, extra=extra + "Connection: close\n")
        status, headers, body = exchange(guarded, head, [b"{}"])
        assert status in (401, 403), body
        assert 'realm="tracefoundry"' not in headers.get("www-authenticate", "")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_refused_bodies_do_not_grow_the_server(guarded, keys):
    before = rss_kib(guarded.process.pid)
    data = b"x" * 65536
    for path, key in [("/api/v1/runs", keys["api"]), ("/otlp/v1/traces", keys["otlp"]),
                      ("/healthz", None), ("/otlp/v1/traces", None)] * 4:
        # Each client keeps sending up to 8 MiB of its declared 2 GiB while the server answers.
        status, _, _ = exchange(guarded, request_head("POST", path, length=TWO_GIB, key=key),
                                [data] * 128)
        assert status in (401, 413)
    grown = rss_kib(guarded.process.pid) - before
    assert grown < 32 * 1024, f"the server grew by {grown} KiB"
    status, _, _ = exchange(guarded, "GET /healthz HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")
    assert status == 200


def test_the_routes_are_matched_below_the_root_path(live_stack, keys):
    server = live_stack.server("guard-root", env=SMALL_CAPS, args=("--root-path", "/tf"))
    status, headers, body = exchange(server, request_head("POST", "/tf/api/v1/runs", length=10))
    assert_error(status, headers, body, 401, "not_authenticated")
    # The API's cap, not the pages' one: this body is allowed in and served.
    run = json.dumps({"kind": "guard.root", "input": {"pad": "x" * (2 * PAGE_MAX)}}).encode()
    head = request_head("POST", "/tf/api/v1/runs", length=len(run), key=keys["api"],
                        extra="Connection: close\n")
    status, _, body = exchange(server, head, [run])
    assert status == 201, body
    head = request_head("POST", "/tf/api/v1/runs", length=API_MAX + 1, key=keys["api"])
    assert_error(*exchange(server, head), 413, "payload_too_large")
