"""The import page in headless Chromium, against a real deployment: an engineer dry-replays a
bundle, imports it, follows the report's links, imports it again; a refused bundle shows the
reason; viewers have no Import link and get a 403."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.bundles.builders import agent_bundle
from tests.livestack import login

TRACE = "b1" * 16  # nothing else in the shared deployment uses it


@pytest.fixture(scope="module")
def site(live_stack):
    server = live_stack.server()
    users = {role: (f"bi-{role}", live_stack.create_user(f"bi-{role}", role))
             for role in ("viewer", "engineer")}
    return server, users


def _choose(page, data: bytes, name: str = "bundle.zip") -> None:
    page.set_input_files("#bi-file", files=[{"name": name, "mimeType": "application/zip",
                                             "buffer": data}])


def test_an_engineer_dry_replays_then_imports(site, browser_page):
    server, users = site
    page = browser_page
    login(page, server, *users["engineer"])
    page.click("nav.mainnav >> text=Import")
    expect(page).to_have_url(f"{server.url}/bundles/import/")
    data = agent_bundle(TRACE).zip()

    _choose(page, data)
    page.click("#bi-dry-replay")
    report = page.locator("#bi-replay-report")
    expect(report).to_be_visible()
    expect(page.locator("#bi-verdict")).to_have_text("No problems found")
    calls = page.locator("tr.bi-call")
    expect(calls).to_have_count(3)
    expect(calls.nth(0)).to_contain_text("gpt-4o")
    expect(calls.nth(1)).to_contain_text("sql_query")
    expect(calls.nth(2)).to_contain_text("error")
    expect(report).to_contain_text("3 in the bundle, 3 referred to, 0 missing, 0 corrupt")

    page.click("#bi-import")
    imported = page.locator("#bi-import-report")
    expect(imported).to_contain_text("Imported")
    expect(imported).to_have_attribute("data-already-imported", "false")
    run_id = page.locator("#bi-run-link").inner_text()
    assert run_id.startswith("run_") and "ORIGINAL" not in run_id
    page.click("#bi-trace-link")
    expect(page).to_have_url(f"{server.url}/traces/{TRACE}/")
    expect(page.locator("#trace-summary")).to_contain_text("offline")
    expect(page.locator(".td-run")).to_have_text(f"Run {run_id} →")

    page.goto(f"{server.url}/bundles/import/")
    _choose(page, data)
    page.click("#bi-import")
    expect(page.locator("#bi-import-report")).to_contain_text(
        "Already imported: nothing new was stored")


def test_a_refused_bundle_says_why(site, browser_page):
    server, users = site
    page = browser_page
    login(page, server, *users["engineer"])
    page.goto(f"{server.url}/bundles/import/")
    _choose(page, b"this is not a zip", "notes.zip")
    page.click("#bi-import")
    error = page.locator("#bi-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Bundle refused: the upload is not a zip archive")
    expect(page.locator("#bi-import-report")).to_have_count(0)


def test_viewers_cannot_import(site, browser_page):
    server, users = site
    page = browser_page
    login(page, server, *users["viewer"])
    expect(page.locator("nav.mainnav")).to_be_visible()
    expect(page.locator("nav.mainnav >> text=Import")).to_have_count(0)
    response = page.goto(f"{server.url}/bundles/import/")
    assert response.status == 403
