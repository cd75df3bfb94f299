"""The end-to-end harness itself: a daphne server on its own database, logged in by a browser."""

from tests.livestack import login


def test_server_serves_api_and_login_page(live_stack, browser_page):
    server = live_stack.server()
    key = live_stack.api_key("runs:read,runs:write")
    status, body = live_stack.request("POST", f"{server.url}/api/v1/runs", key=key,
                                      body={"kind": "smoke.test"})
    assert status == 201, body
    password = live_stack.create_user("smoke-viewer", "viewer")
    login(browser_page, server, "smoke-viewer", password)
    assert browser_page.locator(".who .role").inner_text() == "viewer"
