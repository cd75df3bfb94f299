"""Exporting from the pages in headless Chromium, against a real deployment (daphne, ASGI): the
trace page's Export buttons per role, fetched with the page's own session, and the admin's
"Export selected as bundle" action downloading one bundle and a zip of bundles."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from playwright.sync_api import expect

from tests.browser.trace_helpers import agent_trace, ingest
from tests.livestack import login

# Nothing else in the shared deployment uses the e5 prefix.
TRACES = ["e5" + "0" * 29 + str(n) for n in (1, 2)]
SERVICE = "export-buttons"

FETCH = """href => fetch(href).then(async r => [
    r.status, r.headers.get('content-type'), r.headers.get('content-disposition'),
    Array.from(new Uint8Array(await r.arrayBuffer()))])"""


@pytest.fixture(scope="module")
def site(live_stack):
    server = live_stack.server()
    key = live_stack.api_key("ingest")
    for trace_id in TRACES:
        ingest(live_stack, server, key, agent_trace(trace_id, big_input=True), service=SERVICE)
    users = {role: (f"ex-{role}", live_stack.create_user(f"ex-{role}", role))
             for role in ("viewer", "engineer", "admin")}
    return server, users


def manifest(data: bytes) -> dict:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None and archive.namelist()[0] == "manifest.json"
    return json.loads(archive.read("manifest.json"))


def fetch_in_page(page, href: str) -> tuple[int, str, str, bytes]:
    status, content_type, disposition, body = page.evaluate(FETCH, href)
    return status, content_type, disposition, bytes(body)


@pytest.mark.parametrize(("role", "buttons"), [
    ("engineer", {"full": "Export", "strict": "Export (strict, redacted)"}),
    ("viewer", {"strict": "Export (strict, redacted)"}),
])
def test_trace_page_export_buttons_by_role(site, browser_page, role, buttons):
    server, users = site
    page = browser_page
    login(page, server, *users[role])
    page.goto(f"{server.url}/traces/{TRACES[0]}/")
    links = page.locator(".export-links a")
    expect(links).to_have_count(len(buttons))

    for mode, label in buttons.items():
        link = page.locator(f".export-links a.export-{mode}")
        expect(link).to_be_visible()
        expect(link).to_have_text(label)
        href = link.get_attribute("href")
        assert href == f"/api/v1/traces/{TRACES[0]}/export?mode={mode}"

        status, content_type, disposition, body = fetch_in_page(page, href)

        assert (status, content_type) == (200, "application/zip")
        assert disposition.startswith("attachment;")
        found = manifest(body)
        assert (found["trace_id"], found["export_mode"]) == (TRACES[0], mode)
        assert (found["counts"]["payloads"] > 0) == (mode == "full")


def test_clicking_export_downloads_the_bundle(site, browser_page):
    server, users = site
    page = browser_page
    login(page, server, *users["engineer"])
    page.goto(f"{server.url}/traces/{TRACES[0]}/")
    with page.expect_download() as info:
        page.click(".export-links a.export-full")
    download = info.value
    assert download.suggested_filename == f"tracefoundry-{TRACES[0]}.zip"
    assert manifest(download.path().read_bytes())["export_mode"] == "full"


@pytest.mark.parametrize("count", [1, 2])
def test_admin_action_downloads_bundles(site, browser_page, count):
    server, users = site
    page = browser_page
    login(page, server, *users["admin"])
    page.goto(f"{server.url}/admin/traces/trace/?service_name={SERVICE}")
    for trace_id in TRACES[:count]:
        page.locator("#result_list tr", has_text=trace_id).locator("input.action-select").check()
    page.select_option("select[name=action]", "export_traces")
    with page.expect_download() as info:
        page.click("button[name=index]")
    data = info.value.path().read_bytes()

    if count == 1:
        assert info.value.suggested_filename == f"tracefoundry-{TRACES[0]}.zip"
        assert manifest(data)["trace_id"] == TRACES[0]
        return
    assert info.value.suggested_filename == "tracefoundry-2-traces.zip"
    outer = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(outer.namelist()) == [f"{t}.zip" for t in TRACES]
    for trace_id in TRACES:
        found = manifest(outer.read(f"{trace_id}.zip"))
        assert (found["trace_id"], found["export_mode"]) == (trace_id, "full")
