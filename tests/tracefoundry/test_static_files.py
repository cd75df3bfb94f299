"""Static files through WhiteNoise, from the async (ASGI) middleware chain daphne runs and from
the sync one: collected files are served with WhiteNoise's headers, anything else goes on."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, Client

CSS = b"body { color: #123456; }\n"


@pytest.fixture
def collected(tmp_path, settings):
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "probe.css").write_bytes(CSS)
    settings.STATIC_ROOT = str(tmp_path)
    settings.WHITENOISE_AUTOREFRESH = False  # production: the files known at start-up
    settings.WHITENOISE_USE_FINDERS = False
    return tmp_path


async def _body(response) -> bytes:
    if not response.streaming:
        return response.content
    if response.is_async:
        return b"".join([chunk async for chunk in response.streaming_content])
    return b"".join(response.streaming_content)


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_async_chain_serves_a_collected_file(collected):
    client = AsyncClient()
    response = await client.get("/static/tf/probe.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert "max-age" in response["Cache-Control"]
    assert await _body(response) == CSS
    missing = await client.get("/static/tf/nope.css")
    assert missing.status_code == 404
    assert (await client.get("/healthz")).status_code == 200  # not a static file: goes on


@pytest.mark.django_db
def test_sync_chain_serves_a_collected_file(collected):
    client = Client()
    response = client.get("/static/tf/probe.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CSS
    assert client.get("/healthz").status_code == 200


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_development_lookup_finds_app_static_files(settings):
    settings.WHITENOISE_AUTOREFRESH = True  # DEBUG: looked up on the filesystem per request
    settings.WHITENOISE_USE_FINDERS = True
    response = await AsyncClient().get("/static/tf/live.js")
    assert response.status_code == 200
    assert b"WebSocket" in await _body(response)
