"""Live pages follow what other processes do, in the embedded default (SQLite, in-memory channel
layer) as much as with PostgreSQL and Redis: a real ``manage.py worker`` runs a job while its
run page is open; the runs list and the project stream (over its SSE fallback too) follow runs
that change elsewhere. Playwright's ``expect`` retries for a few seconds: no fixed waits."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.run_helpers import token
from tests.browser.test_run_pages import rows
from tests.livestack import MANAGE, ROOT, login

# The worker's run must show within a second of finishing; expect's default 5 s only keeps a
# broken page from passing, it is not a timing assertion.
SECOND = 5_000


@pytest.fixture
def as_viewer(browser_page, server, live_stack):
    username = f"cross-{token()}"
    login(browser_page, server, username, live_stack.create_user(username, "viewer"))
    return browser_page


@pytest.fixture
def worker(live_stack, tmp_path):
    """A real worker process on the deployment's database, serving a kind of its own."""
    kind = "system.sleep"
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, MANAGE, "worker", "--worker-id", f"w-browser-{token()}",
         "--kinds", kind],
        cwd=ROOT, env={**live_stack.env, "TRACEFOUNDRY_WORKER_POLL_MS": "100"},
        stdout=log, stderr=subprocess.STDOUT)
    yield kind
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_run_page_shows_a_worker_process_finish_the_run(as_viewer, server, runs, worker):
    page = as_viewer
    run_id = runs.call("POST", "/runs", {"kind": worker, "name": "worker run",
                                         "input": {"seconds": 1.5}})["id"]
    page.goto(f"{server.url}/runs/{run_id}/")
    state = page.locator('[data-f="state"] .badge')
    expect(state).to_have_text(re.compile("queued|running"))
    expect(state).to_have_text("running", timeout=30_000)  # the worker claimed it
    expect(page.locator(".conn")).to_have_attribute("data-state", "live")
    expect(state).to_have_text("succeeded", timeout=SECOND)
    expect(rows(page, type="run.succeeded")).to_have_count(1)
    expect(page.locator(".conn")).to_have_attribute("data-state", "ended")
    expect(page.locator(".conn")).to_be_hidden()


def test_runs_list_follows_runs_changed_elsewhere(as_viewer, server, runs, live_stack):
    page = as_viewer
    name = f"list-{token()}"
    page.goto(f"{server.url}/runs/?q={name}")
    expect(page.locator("#runs-page")).to_have_attribute("data-loaded", "1")
    run_id = runs.run(name=name)  # created and started through the API: another client
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-state", "running", timeout=SECOND)
    live_stack.shell("from runs import services\n"
                     f"services.run_succeed(run_id={run_id!r})\n")  # another process
    expect(row).to_have_attribute("data-state", "succeeded", timeout=SECOND)


def test_project_stream_falls_back_to_sse(as_viewer, server, runs):
    page = as_viewer
    attempts = []
    page.route_web_socket(re.compile(r"/ws/projects/"),
                          lambda ws: (attempts.append(ws.url), ws.close(code=1011)))
    page.goto(f"{server.url}/projects/default/stream/")
    expect(page.locator(".conn")).to_have_attribute("data-state", "sse")
    run_id = runs.run(name="over sse")
    event = runs.log(run_id, "project stream over SSE")
    expect(rows(page, id=event["id"])).to_contain_text("project stream over SSE")
    assert len(attempts) == 2
