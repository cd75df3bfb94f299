"""Redis down: throttles fail open, so ingest, enqueue and cancel answer as if no Redis were
configured (never a 500), and count again once Redis is back. Uses a redis-server of its own."""

from __future__ import annotations

import pytest

from runs.models import Run
from tests.conftest import client_for
from tests.traces.otlp_builders import json_request, json_span
from tracefoundry import throttling
from traces.models import Span

pytestmark = pytest.mark.django_db

RATES = {"enqueue": "2/min", "cancel": "2/min", "ingest": "2/min"}


@pytest.fixture
def redis_cache(settings, redis_server, monkeypatch):
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_server.url,
        "KEY_PREFIX": "faults",
        "OPTIONS": {"pool_class": "tracefoundry.cache.SharedConnectionPool",
                    "socket_connect_timeout": 0.5, "socket_timeout": 1.0},
    }}
    settings.TRACEFOUNDRY_THROTTLE_RATES = RATES
    monkeypatch.setattr(throttling, "BREAKER_SECONDS", 0.0)
    monkeypatch.setattr(throttling, "breaker", throttling._Breaker())
    return redis_server


def enqueue(client, n: int):
    return client.post("/api/v1/runs", {"kind": "system.noop", "input": {"n": n}}, format="json")


def ingest(client, n: int):
    body = json_request([json_span(f"{n + 1:032x}", f"{n + 1:016x}")])
    return client.generic("POST", "/otlp/v1/traces", body, content_type="application/json")


def test_throttles_fail_open_while_redis_is_down(redis_cache, engineer, make_key):
    api = client_for(engineer)
    otlp = client_for(raw_key=make_key("ingest")[1])
    # Redis up: the throttle counts there.
    assert [enqueue(api, n).status_code for n in range(3)] == [201, 201, 429]
    assert [ingest(otlp, n).status_code for n in range(3)] == [200, 200, 429]

    redis_cache.stop()
    assert [enqueue(api, n).status_code for n in range(3, 8)] == [201] * 5
    assert [ingest(otlp, n).status_code for n in range(3, 8)] == [200] * 5
    run = Run.objects.order_by("-created_at").first()
    cancels = [api.post(f"/api/v1/runs/{run.id}/cancel", {}, format="json").status_code
               for _ in range(3)]
    assert 500 not in cancels and 429 not in cancels
    assert throttling.breaker.failures >= 3
    assert Run.objects.count() == 7 and Span.objects.count() == 7

    redis_cache.start()  # same port: the pooled connections reconnect
    assert [enqueue(api, n).status_code for n in range(8, 11)] == [201, 201, 429]


def test_fail_open_is_logged(redis_cache, engineer, caplog):
    api = client_for(engineer)
    redis_cache.stop()
    with caplog.at_level("WARNING", logger="tracefoundry.throttling"):
        assert enqueue(api, 1).status_code == 201
    assert "event=throttle.fail_open scope=enqueue" in caplog.text
