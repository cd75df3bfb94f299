"""Fixtures of the bundle tests: a client that uploads bundles (``nothing_written``, the
check that a refused bundle left nothing behind, is in tests/conftest.py: the CLI tests use it
too)."""

from __future__ import annotations

import pytest

from tests.bundles.builders import upload


@pytest.fixture
def post_bundle(engineer_client):
    """POST a bundle's bytes to an endpoint (``import`` or ``dry-replay``)."""

    def post(data: bytes, endpoint: str = "import", *, client=None, query: str = ""):
        client = client or engineer_client
        return client.post(f"/api/v1/bundles/{endpoint}{query}", {"file": upload(data)},
                           format="multipart")

    return post
