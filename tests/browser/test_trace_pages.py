"""The trace list and the trace page in headless Chromium, against a real deployment.

Traces arrive through ``POST /otlp/v1/traces`` with an ingest key; users are made by
``live_stack.create_user``. The deployment is shared with other browser tests, so every list
query here is narrowed to this module's own service names.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.trace_helpers import MS, agent_trace, ingest, large_trace, sid
from tests.livestack import login
from tests.traces.otlp_builders import json_span

# Trace ids of this module (nothing else in the shared deployment uses the 7e/7f prefixes).
T_GPT = "7e" + "0" * 29 + "1"
T_CLAUDE = "7e" + "0" * 29 + "2"
T_SLOW = "7e" + "0" * 29 + "3"
T_RETRY = "7e" + "0" * 29 + "4"
T_EVENTS = "7e" + "0" * 29 + "5"
T_LARGE = "7f" + "0" * 29 + "1"
LIST_SERVICE = "tp-list"
LARGE_SPANS = 4_000


@pytest.fixture(scope="module")
def site(live_stack):
    """Traces and users of this module, made once: (server, {role: (username, password)})."""
    server = live_stack.server()
    key = live_stack.api_key("ingest")
    now = time.time_ns()
    ingest(live_stack, server, key, agent_trace(T_GPT, model="gpt-4o", start=now - 90_000 * MS),
           service=LIST_SERVICE)
    ingest(live_stack, server, key, agent_trace(T_CLAUDE, model="claude-3-5-sonnet",
                                                status_error=True, start=now - 80_000 * MS),
           service=LIST_SERVICE, environment="prod")
    slow = agent_trace(T_SLOW, model="gpt-4o-mini", start=now - 70_000 * MS, tool="sql_query")
    slow[0]["endTimeUnixNano"] = str(int(slow[0]["startTimeUnixNano"]) + 5_000 * MS)
    ingest(live_stack, server, key, slow, service=LIST_SERVICE)
    ingest(live_stack, server, key, agent_trace(T_RETRY, big_input=True, retry_and_timeout=True),
           service="tp-detail")
    ingest(live_stack, server, key, large_trace(T_LARGE, LARGE_SPANS), service="tp-large")
    ingest(live_stack, server, key, [json_span(T_EVENTS, sid(1), "call tool", start=now, events=[
        {"name": "tool.retry", "timeUnixNano": str(now + MS)},
        {"name": "request.timeout", "timeUnixNano": str(now + 2 * MS)},
        {"name": "note", "timeUnixNano": str(now + 3 * MS)},
    ])], service="tp-events")
    users = {}
    for role in ("viewer", "engineer"):
        users[role] = (f"tp-{role}", live_stack.create_user(f"tp-{role}", role))
    return server, users


def log_in(page, site, role: str):
    server, users = site
    login(page, server, *users[role])
    return server


def trace_ids_in_list(page) -> list[str]:
    return page.locator("tr.tl-row").evaluate_all("rows => rows.map(r => r.dataset.traceId)")


# --- access -----------------------------------------------------------------------------------

def test_anonymous_users_are_sent_to_the_login_page(site, browser_page):
    server, _ = site
    for path in ("/traces/", f"/traces/{T_GPT}/"):
        browser_page.goto(f"{server.url}{path}")
        expect(browser_page).to_have_url(re.compile(r"/accounts/login/\?next="))
        expect(browser_page.locator("input[name=username]")).to_be_visible()


def test_unknown_trace_is_a_404(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    response = browser_page.goto(f"{server.url}/traces/{'0' * 31}9/")
    assert response.status == 404


# --- the trace list ---------------------------------------------------------------------------

def test_list_shows_traces_with_badges_copy_buttons_and_links(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}")
    rows = browser_page.locator("tr.tl-row")
    expect(rows).to_have_count(3)
    assert trace_ids_in_list(browser_page) == [T_SLOW, T_CLAUDE, T_GPT]  # newest first
    claude = browser_page.locator(f"tr.tl-row[data-trace-id='{T_CLAUDE}']")
    expect(claude.locator(".badge.status-error")).to_have_text("error")
    expect(claude).to_contain_text("claude-3-5-sonnet")
    expect(claude).to_contain_text("prod")
    expect(claude.locator("button.copy")).to_have_attribute("data-copy", T_CLAUDE)
    expect(claude.locator("a.tl-open")).to_have_attribute("href", f"/traces/{T_CLAUDE}/")
    claude.locator("a.tl-open").click()
    expect(browser_page).to_have_url(f"{server.url}/traces/{T_CLAUDE}/")
    expect(browser_page.locator("#trace-summary")).to_contain_text("invoke_agent research")


def test_list_filters_live_in_the_query_string(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}")
    expect(browser_page.locator("tr.tl-row")).to_have_count(3)

    browser_page.fill("#trace-filters input[name=model]", "claude-3-5-sonnet")
    browser_page.click("#trace-filters button[type=submit]")
    expect(browser_page).to_have_url(re.compile(r"model=claude-3-5-sonnet"))
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)
    assert trace_ids_in_list(browser_page) == [T_CLAUDE]
    browser_page.reload()  # a shared or reloaded URL shows the same view, form filled in
    expect(browser_page.locator("#trace-filters input[name=model]")).to_have_value(
        "claude-3-5-sonnet")
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)

    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}")
    browser_page.select_option("#trace-filters select[name=status]", "error")  # applies at once
    expect(browser_page).to_have_url(re.compile(r"status=error"))
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)
    assert trace_ids_in_list(browser_page) == [T_CLAUDE]

    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}&tool=SQL")
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)
    assert trace_ids_in_list(browser_page) == [T_SLOW]
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}&min_latency_ms=2000")
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}&q=no-such-span-name")
    expect(browser_page.locator("tr.tl-empty")).to_contain_text("No traces match")


def test_list_sorts_and_pages_with_cursors(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}&sort=slowest")
    expect(browser_page.locator("tr.tl-row")).to_have_count(3)
    assert trace_ids_in_list(browser_page)[0] == T_SLOW
    expect(browser_page.locator("#trace-filters select[name=sort]")).to_have_value("slowest")
    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}")
    browser_page.click("th a:has-text('Started')")  # newest -> oldest
    expect(browser_page).to_have_url(re.compile(r"sort=oldest"))
    expect(browser_page.locator("tr.tl-row").first).to_have_attribute("data-trace-id", T_GPT)

    browser_page.goto(f"{server.url}/traces/?service={LIST_SERVICE}&limit=2")
    expect(browser_page.locator("tr.tl-row")).to_have_count(2)
    first_page = trace_ids_in_list(browser_page)
    browser_page.click("#tl-pager a[rel=next]")
    expect(browser_page).to_have_url(re.compile(r"cursor="))
    expect(browser_page.locator("tr.tl-row")).to_have_count(1)
    assert trace_ids_in_list(browser_page) == [T_GPT] and T_GPT not in first_page
    browser_page.click("#tl-pager a[rel=prev]")
    expect(browser_page.locator("tr.tl-row")).to_have_count(2)
    assert trace_ids_in_list(browser_page) == first_page


# --- the trace page ---------------------------------------------------------------------------

def test_trace_page_summary_tree_and_inspector(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/{T_GPT}/")
    summary = browser_page.locator("#trace-summary")
    expect(summary).to_contain_text("900 ms")
    expect(summary).to_contain_text("gpt-4o")
    expect(summary).to_contain_text("2,550")  # tokens
    expect(summary).to_contain_text(LIST_SERVICE)
    rows = browser_page.locator(".tv-row")
    expect(rows).to_have_count(4)

    root = browser_page.locator(f".tv-row[data-span-id='{sid(1)}']")
    root.locator(".tv-toggle").click()  # collapse the root's subtree
    expect(rows).to_have_count(1)
    expect(root.locator(".tv-hidden")).to_have_text("+3")
    root.locator(".tv-toggle").click()
    expect(rows).to_have_count(4)

    browser_page.locator(f".tv-row[data-span-id='{sid(2)}']").click()
    inspector = browser_page.locator("#td-inspector")
    expect(inspector.locator(".in-title")).to_have_text("chat gpt-4o")
    expect(inspector.locator("table.attrs tr[data-key='gen_ai.request.model']")).to_contain_text(
        "gpt-4o")
    expect(inspector.locator(".in-event")).to_contain_text("gen_ai.content.prompt")
    expect(browser_page).to_have_url(re.compile(rf"\?span={sid(2)}$"))
    # The waterfall bar of a later span starts further right.
    first = browser_page.locator(f".tv-row[data-span-id='{sid(2)}'] .tv-bar").bounding_box()
    last = browser_page.locator(f".tv-row[data-span-id='{sid(5)}'] .tv-bar").bounding_box()
    assert last["x"] > first["x"]


def test_retry_and_timeout_markers(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/{T_RETRY}/?span={sid(3)}")  # preselected span
    expect(browser_page.locator("#trace-summary .flag-retry")).to_be_visible()
    expect(browser_page.locator("#trace-summary .flag-timeout")).to_be_visible()
    timed_out = browser_page.locator(f".tv-row[data-span-id='{sid(3)}']")
    expect(timed_out.locator(".mk-timeout")).to_be_visible()
    expect(timed_out.locator(".tv-bar.timeout")).to_have_count(1)
    retried = browser_page.locator(f".tv-row[data-span-id='{sid(4)}']")
    expect(retried.locator(".mk-retry")).to_be_visible()
    expect(retried.locator(".tv-bar .bar-mk.retry")).to_have_count(1)
    inspector = browser_page.locator("#td-inspector")
    expect(inspector.locator(".badge.flag-timeout")).to_be_visible()
    expect(inspector.locator(".in-event.timeout")).to_contain_text("httpx.ReadTimeout")
    retried.click()
    expect(inspector.locator(".badge.flag-retry")).to_be_visible()


def test_span_events_are_marked_by_the_flags_the_api_sends(site, browser_page):
    """Each event's retry/timeout marker comes from the span's `event_flags` (the server's
    rules), not from rules of the page's own."""
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/{T_EVENTS}/?span={sid(1)}")
    events = browser_page.locator("#td-inspector .in-event")
    expect(events).to_have_count(3)
    expect(events.nth(0)).to_have_class(re.compile(r"\bretry\b"))
    expect(events.nth(0).locator(".mk-retry")).to_have_text("↻ retry")
    expect(events.nth(1)).to_have_class(re.compile(r"\btimeout\b"))
    expect(events.nth(1).locator(".mk-timeout")).to_have_text("◔ timeout")
    expect(events.nth(2)).to_contain_text("note")
    expect(events.nth(2).locator(".mk")).to_have_count(0)
    expect(events.locator(".mk-retry")).to_have_count(1)
    expect(events.locator(".mk-timeout")).to_have_count(1)


def test_engineer_gets_a_payload_link_for_a_large_input(site, browser_page):
    server = log_in(browser_page, site, "engineer")
    browser_page.goto(f"{server.url}/traces/{T_RETRY}/?span={sid(2)}")
    payloads = browser_page.locator("#td-inspector .in-payloads")
    expect(payloads.locator(".payload-preview")).to_contain_text("Plan the research.")
    link = payloads.locator("a.payload-link")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    assert re.fullmatch(r"/api/v1/payloads/[0-9a-f]{64}", href)
    response = browser_page.request.get(f"{server.url}{href}")  # with the page's session
    assert response.status == 200
    assert response.text().count("Plan the research.") == 1200


def test_viewer_sees_previews_but_no_payload_link(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/{T_RETRY}/?span={sid(2)}")
    inspector = browser_page.locator("#td-inspector")
    expect(inspector.locator(".payload-preview")).to_contain_text("Plan the research.")
    expect(inspector).to_contain_text("payload contents are for engineers and admins")
    expect(inspector.locator("a[href*='/api/v1/payloads/']")).to_have_count(0)
    span = browser_page.request.get(f"{server.url}/api/v1/spans/{sid(2)}?trace_id={T_RETRY}")
    sha = span.json()["attributes"]["tracefoundry.payload.input_ref"].removeprefix("sha256:")
    assert browser_page.request.get(f"{server.url}/api/v1/payloads/{sha}").status == 403


def test_large_trace_renders_a_window_of_rows_and_scrolls(site, browser_page):
    server = log_in(browser_page, site, "viewer")
    browser_page.goto(f"{server.url}/traces/{T_LARGE}/")
    rows = browser_page.locator(".tv-row")
    expect(rows.first).to_be_visible()
    expect(browser_page.locator("#td-rowcount")).to_have_text(f"({LARGE_SPANS:,})")
    assert rows.count() < 200
    last = browser_page.locator(".tv-row", has_text="final answer span")
    expect(last).to_have_count(0)

    browser_page.locator("#td-scroll").evaluate("s => { s.scrollTop = s.scrollHeight; }")
    expect(last).to_be_visible()
    assert rows.count() < 200
    expect(browser_page.locator(f".tv-row[data-span-id='{sid(1)}']")).to_have_count(0)

    browser_page.locator("#td-scroll").evaluate(  # scroll, then let the next frame draw
        "s => new Promise(done => { s.scrollTop = s.scrollHeight / 2; "
        "requestAnimationFrame(() => requestAnimationFrame(done)); })")
    middle = int(rows.nth(rows.count() // 2).get_attribute("data-idx"))
    assert LARGE_SPANS // 4 < middle < LARGE_SPANS * 3 // 4

    browser_page.click("#td-collapse")  # the root's children stay, their subtrees fold
    expect(browser_page.locator("#td-rowcount")).to_contain_text("shown")
    browser_page.fill("#td-find", "final answer")
    expect(browser_page.locator("#td-find-count")).to_contain_text("1 match")
    browser_page.press("#td-find", "Enter")  # expands the way to the match and selects it
    expect(last).to_have_class(re.compile(r"\bselected\b"))
    expect(browser_page.locator("#td-inspector .in-title")).to_have_text("final answer span")
