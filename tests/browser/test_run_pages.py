"""The run pages in a real browser: runs list, live run page, projects and the project stream.

Data is set up through the public API of a real daphne deployment while the page is open; the
pages must show it without a reload. Nothing here waits for a fixed time: Playwright's
``expect`` retries until the page catches up.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.run_helpers import SSE_SERVED, WEBSOCKETS_SERVED, RunApi, token
from tests.livestack import login

LIVE_STATE = "live" if WEBSOCKETS_SERVED else re.compile("sse|polling")


@pytest.fixture(scope="module")
def users(live_stack) -> dict[str, tuple[str, str]]:
    """One user per role: name -> (username, password)."""
    out = {}
    for role in ("viewer", "engineer", "admin"):
        username = f"runpages-{role}-{token()}"
        out[role] = (username, live_stack.create_user(username, role))
    return out


@pytest.fixture
def as_viewer(browser_page, server, users):
    login(browser_page, server, *users["viewer"])
    return browser_page


@pytest.fixture
def as_engineer(browser_page, server, users):
    login(browser_page, server, *users["engineer"])
    return browser_page


def open_run(page, server, run_id: str, query: str = ""):
    page.goto(f"{server.url}/runs/{run_id}/{query}")
    expect(page.locator(".conn")).to_have_attribute("data-state", LIVE_STATE)
    return page


def rows(page, **data):
    selector = ".timeline-rows .ev" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    return page.locator(selector)


# --- access ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/runs/", "/runs/run_01ABC/", "/projects/",
                                  "/projects/default/stream/"])
def test_anonymous_is_sent_to_login(browser_page, server, path):
    browser_page.goto(f"{server.url}{path}")
    expect(browser_page).to_have_url(re.compile(r"/accounts/login/\?next=" + re.escape(path)))


def test_user_without_role_is_sent_back_to_login(browser_page, server, live_stack):
    username = f"runpages-norole-{token()}"
    password = live_stack.create_user(username, None)
    page = browser_page
    page.goto(f"{server.url}/runs/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    # Logged in, but a user without a role reads nothing: back to the login page, told why.
    expect(page.locator(".who .user")).to_have_text(username)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/runs/"))
    expect(page.locator(".error")).to_contain_text("can't see that page")


def test_unknown_run_is_404(as_viewer, server):
    response = as_viewer.goto(f"{server.url}/runs/run_00000000000000000000000000/")
    assert response.status == 404


# --- runs list ---------------------------------------------------------------------------------

def test_runs_list_shows_runs_and_filters_by_state(as_viewer, server, runs):
    tag = f"listed-{token()}"
    queued = runs.run(name=f"{tag} queued", start=False)
    running = runs.run(name=f"{tag} running")
    step = runs.step(running, "fetch")
    runs.step(running, "answer", start=False)
    runs.step_action(running, step, "succeed")
    page = as_viewer

    page.goto(f"{server.url}/runs/?q={tag}")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    row = page.locator(f'tr[data-run-id="{running}"]')
    expect(row.locator(".badge")).to_have_text("running")
    expect(row.locator(".steps-count")).to_have_text("1/2")
    expect(page.locator(f'tr[data-run-id="{queued}"] .badge')).to_have_text("queued")

    page.select_option("select[name=state]", "running")  # submits: the filter goes in the URL
    expect(page).to_have_url(re.compile(r"state=running"))
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator("table.runs tbody tr")).to_have_attribute("data-run-id", running)
    expect(page.locator("input[name=q]")).to_have_value(tag)

    page.locator(f'tr[data-run-id="{running}"] td a').first.click()
    expect(page).to_have_url(f"{server.url}/runs/{running}/")
    expect(page.locator(".run-title h1")).to_have_text(f"{tag} running")


def test_runs_list_pages_with_the_api_cursors(as_viewer, server, runs):
    tag = f"paged-{token()}"
    ids = [runs.run(name=f"{tag} {n}", start=False) for n in range(3)]
    page = as_viewer
    page.goto(f"{server.url}/runs/?q={tag}&limit=2")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator("table.runs tbody tr").first).to_have_attribute("data-run-id", ids[2])
    expect(page.locator(".pager .prev")).to_be_hidden()
    page.locator(".pager .next").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator("table.runs tbody tr")).to_have_attribute("data-run-id", ids[0])
    page.locator(".pager .prev").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(2)


# --- the live run page -------------------------------------------------------------------------

def test_events_and_step_states_arrive_without_reload(as_viewer, server, runs):
    run_id = runs.run(name="live page")
    step_id = runs.step(run_id, "compile")
    page = open_run(as_viewer, server, run_id)
    step = page.locator(f'.step[data-step-id="{step_id}"]')
    expect(step.locator(".step-state .badge")).to_have_text("running")

    event = runs.log(run_id, "hello from the worker", step_id=step_id)
    expect(rows(page, id=event["id"])).to_contain_text("hello from the worker")
    expect(step.locator(".step-last")).to_have_text("hello from the worker")
    runs.event(run_id, "progress", payload={"completed": 1, "total": 2, "message": "half way"})
    expect(rows(page, type="progress")).to_contain_text("1/2 · half way")

    runs.step_action(run_id, step_id, "succeed")
    expect(step.locator(".step-state .badge")).to_have_text("succeeded")
    expect(page.locator('[data-f="steps"]')).to_contain_text("1/1")
    expect(rows(page, type="step.succeeded")).to_have_count(1)

    runs.call("POST", f"/runs/{run_id}/succeed", {})
    expect(page.locator('[data-f="state"] .badge')).to_have_text("succeeded")
    # The run finished and its stream ended: no "live" badge any more.
    expect(page.locator(".conn")).to_have_attribute("data-state", "ended")
    expect(page.locator(".conn")).to_be_hidden()


def test_pause_autoscroll_counts_new_events_and_keeps_the_view(as_viewer, server, runs):
    run_id = runs.run(name="pause")
    runs.notes(run_id, 120, prefix="before")
    page = open_run(as_viewer, server, run_id)
    expect(rows(page, type="note")).to_have_count(120)
    scroller = page.locator("#run-page .timeline")
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 4"
    assert scroller.evaluate(at_bottom)

    page.click("#run-page .pause")
    expect(page.locator("#run-page .pause")).to_have_attribute("aria-pressed", "true")
    top = scroller.evaluate("el => el.scrollTop")
    runs.notes(run_id, 5, prefix="after")
    expect(page.locator(".new-events")).to_have_text("5 new events ↓")
    expect(rows(page, type="note")).to_have_count(125)
    assert scroller.evaluate("el => el.scrollTop") == top
    assert not scroller.evaluate(at_bottom)

    page.click(".new-events")  # back to following: jumps to the newest event
    expect(page.locator(".new-events")).to_be_hidden()
    expect(page.locator("#run-page .follow")).to_have_attribute("aria-pressed", "true")
    assert scroller.evaluate(at_bottom)
    runs.notes(run_id, 1, prefix="followed")
    expect(rows(page, type="note")).to_have_count(126)
    assert scroller.evaluate(at_bottom)


def test_filters_by_level_type_and_stream(as_viewer, server, runs):
    run_id = runs.run(name="filters")
    step_id = runs.step(run_id, "build")
    out = runs.log(run_id, "compiling", step_id=step_id)
    err = runs.log(run_id, "warning: deprecated", stream="stderr", step_id=step_id, level="warn")
    boom = runs.event(run_id, "error", level="error", payload={"message": "boom"})
    page = open_run(as_viewer, server, run_id)
    expect(rows(page, id=boom["id"])).to_be_visible()

    page.select_option("#run-page select[name=level]", "error")
    expect(rows(page, id=boom["id"])).to_be_visible()
    expect(rows(page, id=out["id"])).to_be_hidden()
    expect(rows(page, id=err["id"])).to_be_hidden()
    late = runs.log(run_id, "more output", step_id=step_id)  # live rows obey the filter too
    expect(rows(page, id=late["id"])).to_have_count(1)
    expect(rows(page, id=late["id"])).to_be_hidden()

    page.select_option("#run-page select[name=level]", "")
    page.select_option("#run-page select[name=stream]", "stderr")
    expect(rows(page, id=err["id"])).to_be_visible()
    expect(rows(page, id=err["id"])).to_contain_text("stderr")
    expect(rows(page, id=out["id"])).to_be_hidden()
    expect(rows(page, id=boom["id"])).to_be_hidden()

    page.select_option("#run-page select[name=stream]", "")
    page.select_option("#run-page select[name=type]", "error")
    expect(rows(page, id=boom["id"])).to_be_visible()
    expect(rows(page, id=out["id"])).to_be_hidden()


def test_step_log_pane_collapses_and_expands(as_viewer, server, runs):
    run_id = runs.run(name="log panes")
    step_id = runs.step(run_id, "test")
    other = runs.step(run_id, "lint")
    runs.log(run_id, "collected 3 items", step_id=step_id)
    runs.log(run_id, "FAILED test_x", stream="stderr", step_id=step_id)
    runs.log(run_id, "lint clean", step_id=other)
    page = open_run(as_viewer, server, run_id)
    step = page.locator(f'.step[data-step-id="{step_id}"]')
    pane = step.locator(".log-lines")
    expect(step.locator(".pane-count")).to_have_text("2 lines · 1 stderr")
    expect(pane).to_be_hidden()

    step.locator(".step-log summary").click()
    expect(pane.locator(".log-line")).to_have_count(2)
    expect(pane.locator(".log-line.stdout")).to_contain_text("collected 3 items")
    expect(pane.locator(".log-line.stderr")).to_contain_text("FAILED test_x")
    expect(pane).not_to_contain_text("lint clean")
    runs.log(run_id, "3 passed", step_id=step_id)  # an open pane follows live
    expect(pane.locator(".log-line")).to_have_count(3)

    step.locator(".step-log summary").click()
    expect(pane).to_be_hidden()


def test_trace_link(as_viewer, server, runs):
    trace_id = "ab" * 16
    run_id = runs.run(name="traced", trace_id=trace_id)
    page = open_run(as_viewer, server, run_id)
    expect(page.locator("a.trace-link")).to_have_attribute("href", f"/traces/{trace_id}/")


def test_viewer_sees_no_cancel_button(as_viewer, server, runs):
    run_id = runs.run(name="viewer cannot cancel", start=False)
    page = open_run(as_viewer, server, run_id)
    expect(page.locator('[data-f="state"] .badge')).to_have_text("queued")
    expect(page.locator(".cancel-box")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("cancel", re.I))).to_have_count(0)


def test_engineer_cancels_a_run(as_engineer, server, runs):
    queued = runs.run(name="to cancel", start=False)
    page = open_run(as_engineer, server, queued)
    page.click(".cancel-box .cancel")
    page.fill(".cancel-confirm input[name=reason]", "not needed")
    page.click(".cancel-box .cancel-go")
    expect(page.locator('[data-f="state"] .badge')).to_have_text("canceled")
    expect(page.locator(".cancel-box")).to_be_hidden()
    expect(rows(page, type="run.canceled")).to_have_count(1)

    running = runs.run(name="asked to stop")  # a running run is asked to stop first
    page = open_run(page, server, running)
    page.click(".cancel-box .cancel")
    page.click(".cancel-box .cancel-go")
    expect(page.locator(".cancel-note")).to_contain_text("cancel requested")
    page.click(".cancel-box .force")
    expect(page.locator('[data-f="state"] .badge')).to_have_text("canceled")


def test_catch_up_keeps_the_dom_bounded_and_loads_earlier(as_viewer, server, runs):
    run_id = runs.run(name="many events")
    runs.notes(run_id, 2300)
    acks, sockets = [], []

    def relay(ws):  # pass frames through, noting the client's acks
        sockets.append(ws.url)
        upstream = ws.connect_to_server()
        ws.on_message(lambda message: (acks.append(json.loads(message)), upstream.send(message)))

    as_viewer.route_web_socket(re.compile(r"/ws/runs/"), relay)
    page = open_run(as_viewer, server, run_id)
    # More than the server's window of 1,000 unacknowledged events: only acks get them all.
    expect(page.locator(".shown-count")).to_contain_text("2,302 received", timeout=30_000)
    assert acks and all(a["type"] == "ack" and isinstance(a["last_id"], int) for a in acks)
    assert len(sockets) == 1  # acknowledged in time: never told to resync
    expect(rows(page)).to_have_count(2000)
    earlier = page.locator(".load-earlier")
    expect(earlier).to_have_text("Load earlier events (302 not shown)")
    earlier.click()
    expect(rows(page)).to_have_count(2302)
    expect(rows(page).first).to_have_attribute("data-type", "run.created")
    expect(earlier).to_be_hidden()


@pytest.mark.parametrize("transport", [
    "poll",
    pytest.param("sse", marks=pytest.mark.skipif(not SSE_SERVED, reason="SSE view not served")),
])
def test_fallback_transports_stream_events(as_viewer, server, runs, transport):
    run_id = runs.run(name=f"over {transport}")
    step_id = runs.step(run_id, "work")
    as_viewer.goto(f"{server.url}/runs/{run_id}/?transport={transport}")
    page = as_viewer
    expect(page.locator(".conn")).to_have_attribute(
        "data-state", "polling" if transport == "poll" else "sse")
    event = runs.log(run_id, f"via {transport}", step_id=step_id)
    expect(rows(page, id=event["id"])).to_contain_text(f"via {transport}")
    runs.step_action(run_id, step_id, "fail", {"error": "exit 1"})
    badge = page.locator(f'.step[data-step-id="{step_id}"] .step-state .badge')
    expect(badge).to_have_text("failed")
    expect(rows(page, id=event["id"])).to_have_count(1)  # never twice


@pytest.mark.skipif(not WEBSOCKETS_SERVED, reason="needs the WebSocket server")
def test_reconnects_after_the_last_event_seen(as_viewer, server, runs):
    run_id = runs.run(name="dropped socket")
    first = runs.log(run_id, "before the drop")
    urls, sockets = [], []

    def relay(ws):
        urls.append(ws.url)
        sockets.append((ws, ws.connect_to_server()))

    as_viewer.route_web_socket(re.compile(r"/ws/runs/"), relay)
    page = open_run(as_viewer, server, run_id)
    expect(rows(page, id=first["id"])).to_have_count(1)
    ws, upstream = sockets[0]
    ws.close(code=1011)  # the network drops the socket
    upstream.close()
    second = runs.log(run_id, "after the drop")
    expect(rows(page, id=second["id"])).to_contain_text("after the drop")
    expect(page.locator(".conn")).to_have_attribute("data-state", "live")
    assert len(urls) == 2 and urls[1].endswith(f"after_id={first['id']}"), urls
    expect(rows(page, id=first["id"])).to_have_count(1)


def test_events_appended_through_another_process_arrive(as_viewer, server, live_stack, runs):
    """Through Redis when it is configured, else through the database (runs/follow.py)."""
    other = RunApi(stack=live_stack, base=live_stack.server("web2").url, key=runs.key)
    run_id = runs.run(name="two processes")
    page = open_run(as_viewer, server, run_id)
    event = other.log(run_id, "appended through web2")
    expect(rows(page, id=event["id"])).to_contain_text("appended through web2")


def test_falls_back_to_sse_when_websockets_fail(as_viewer, server, runs):
    run_id = runs.run(name="no websockets")
    attempts = []
    # A proxy that accepts the WebSocket and drops it at once, every time.
    as_viewer.route_web_socket(re.compile(r"/ws/runs/"),
                               lambda ws: (attempts.append(ws.url), ws.close(code=1011)))
    page = as_viewer
    page.goto(f"{server.url}/runs/{run_id}/")
    fallback = "sse" if SSE_SERVED else "polling"
    expect(page.locator(".conn")).to_have_attribute("data-state", fallback)
    event = runs.log(run_id, "over the fallback")
    expect(rows(page, id=event["id"])).to_contain_text("over the fallback")
    assert len(attempts) == 2


# --- projects and the project stream -----------------------------------------------------------

def test_projects_page_links_to_runs_and_stream(as_viewer, server):
    page = as_viewer
    page.goto(f"{server.url}/projects/")
    row = page.locator('tr[data-slug="default"]')
    expect(row).to_be_visible()
    row.locator("a.stream-link").click()
    expect(page).to_have_url(f"{server.url}/projects/default/stream/")
    expect(page.locator("h1")).to_contain_text("live stream")


@pytest.mark.skipif(not WEBSOCKETS_SERVED, reason="the project stream is WebSocket-only")
def test_project_stream_shows_events_of_two_runs_live(as_viewer, server, runs):
    page = as_viewer
    page.goto(f"{server.url}/projects/default/stream/")
    expect(page.locator(".conn")).to_have_attribute("data-state", "live")
    first, second = runs.run(name="stream a"), runs.run(name="stream b")
    a = runs.log(first, "from run a")
    b = runs.event(second, "error", level="error", payload={"message": "from run b"})
    expect(rows(page, id=a["id"])).to_contain_text("from run a")
    expect(rows(page, id=b["id"])).to_contain_text("from run b")
    link = rows(page, id=b["id"]).locator("a.run-link")
    expect(link).to_have_attribute("href", f"/runs/{second}/")
    expect(page.locator(f'.stream-run[data-run-id="{first}"]')).to_be_visible()

    page.select_option("#project-stream select[name=level]", "error")
    expect(rows(page, id=a["id"])).to_be_hidden()
    expect(rows(page, id=b["id"])).to_be_visible()
    page.click("#project-stream .pause")
    runs.event(first, "error", level="error", payload={"message": "while paused"})
    expect(page.locator(".new-events")).to_have_text("1 new event ↓")


# --- admin -------------------------------------------------------------------------------------

def test_admin_links_to_the_live_page(browser_page, server, runs, users):
    run_id = runs.run(name="from admin", start=False)
    login(browser_page, server, *users["admin"])
    page = browser_page
    page.goto(f"{server.url}/admin/runs/run/?q={run_id}")
    expect(page.locator("td.field-live_link a")).to_have_attribute("href", f"/runs/{run_id}/")
    page.goto(f"{server.url}/admin/runs/run/{run_id}/change/")
    page.get_by_role("link", name="View live →").click()
    expect(page).to_have_url(f"{server.url}/runs/{run_id}/")
    expect(page.locator('[data-f="state"] .badge')).to_have_text("queued")
