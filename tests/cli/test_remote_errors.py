"""Remote mode's failures: no server, no key, a key of another project, no URL."""

from __future__ import annotations

import socket

import pytest


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused(cli):
    url = f"http://127.0.0.1:{closed_port()}"
    for argv in (["status", "run_01ABC"], ["list"], ["enqueue", "x"], ["tail", "run_01ABC"],
                 ["cancel", "run_01ABC", "--yes"]):
        result = cli("runs", *argv, "--api-url", url)  # --api-url alone means remote
        assert (result.code, result.out) == (1, "")
        assert result.err == f"error: cannot reach {url}: connection refused\n"


def test_remote_needs_a_url(cli):
    result = cli("runs", "list", "--remote")
    assert result.code == 2
    assert result.err == "error: --remote needs --api-url or TRACEFOUNDRY_API_URL\n"


def test_bad_url(cli):
    result = cli("runs", "list", "--api-url", "tf.example.com")
    assert result.code == 1
    assert "must start with http:// or https://" in result.err


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_missing_or_wrong_key(cli, live_server, make_key, other_project):
    missing = cli("runs", "list", "--api-url", live_server.url)
    assert missing.code == 1
    assert "(set TRACEFOUNDRY_API_KEY or pass --api-key)" in missing.err
    bad = cli("runs", "list", "--api-url", live_server.url, "--api-key", "tf_nope_nope")
    assert bad.code == 1 and bad.err.startswith("error: ")
    _, reader = make_key("runs:read")
    denied = cli("runs", "enqueue", "x", "--api-url", live_server.url, "--api-key", reader)
    assert denied.err == "error: your role or key scope does not allow this (write)\n"
    _, key = make_key("runs:read,runs:write")
    other = cli("runs", "enqueue", "x", "--project", "other", "--api-url", live_server.url,
                "--api-key", key)
    assert other.err == "error: this API key belongs to another project\n"
