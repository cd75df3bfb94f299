import pytest


@pytest.mark.django_db
def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert {k for k, v in body["checks"].items() if v["ok"]} == {
        "database", "channel_layer", "storage"
    }


@pytest.mark.django_db
def test_readyz_reports_a_broken_channel_layer(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},  # nothing listens on port 1
        }
    }
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["channel_layer"]["ok"] is False
    assert resp.json()["checks"]["database"]["ok"] is True
