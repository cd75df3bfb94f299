"""The Export buttons of the trace and run pages: which ones each role sees, and that following
one downloads a bundle in the mode it names (with the page's session, as a browser would)."""

from __future__ import annotations

import re

import pytest

from tests.bundles.conftest import downloaded, manifest_of, read_zip
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db
TRACE = "5e" * 16
LINK = re.compile(r'<a class="button[^"]*(export-(?:full|strict))" href="([^"]+)"[^>]*>([^<]+)</a>')


def export_links(client, path: str) -> dict[str, tuple[str, str]]:
    """{"export-full"|"export-strict": (href, label)} of the page at ``path``."""
    page = client.get(path)
    assert page.status_code == 200
    return {cls: (href, label) for cls, href, label in LINK.findall(page.content.decode())}


# role → the buttons it gets (the cell of PRODUCT.md §12: full exports are for engineers/admins)
BUTTONS = {
    "viewer": {"export-strict"},
    "engineer": {"export-full", "export-strict"},
    "admin_user": {"export-full", "export-strict"},
}


@pytest.mark.parametrize("role", sorted(BUTTONS))
@pytest.mark.parametrize("page", ["trace", "run"])
def test_each_role_gets_its_buttons_and_each_button_downloads_its_mode(
        request, client, ingest_trace, role, page):
    item = ingest_trace(TRACE)
    client.force_login(request.getfixturevalue(role))
    path, api = {
        "trace": (f"/traces/{TRACE}/", f"/api/v1/traces/{TRACE}/export"),
        "run": (f"/runs/{item.run.id}/", f"/api/v1/runs/{item.run.id}/export"),
    }[page]

    links = export_links(client, path)

    assert set(links) == BUTTONS[role]
    assert links["export-strict"] == (f"{api}?mode=strict", "Export (strict, redacted)")
    if "export-full" in links:
        assert links["export-full"] == (f"{api}?mode=full", "Export")
    for cls, (href, _) in links.items():
        mode = cls.removeprefix("export-")
        bundle = downloaded(client.get(href))
        manifest = manifest_of(bundle)
        assert (manifest["trace_id"], manifest["run_id"]) == (TRACE, item.run.id)
        assert manifest["export_mode"] == mode
        archive = read_zip(bundle)
        blobs = [archive.read(n) for n in archive.namelist() if n.startswith("payloads/")]
        # A full export carries the large input as a blob; a strict one no blob at all.
        assert (item.secret.encode() in blobs) == (mode == "full")
        assert bool(blobs) == (mode == "full")


def test_a_viewer_cannot_turn_the_strict_link_into_a_full_export(client, viewer, ingest_trace):
    ingest_trace(TRACE)
    client.force_login(viewer)
    href, _ = export_links(client, f"/traces/{TRACE}/")["export-strict"]
    resp = client.get(href.replace("mode=strict", "mode=full"))
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize("role", ["viewer", "engineer"])
def test_a_run_without_a_trace_has_the_buttons_and_exports_the_run_alone(
        request, client, role):
    run = RunFactory(state="succeeded")
    assert not run.trace_id
    client.force_login(request.getfixturevalue(role))
    links = export_links(client, f"/runs/{run.id}/")
    assert set(links) == BUTTONS[role]
    for href, _ in links.values():
        manifest = manifest_of(downloaded(client.get(href)))
        assert (manifest["run_id"], manifest["trace_id"]) == (run.id, None)
        assert manifest["counts"]["spans"] == 0
