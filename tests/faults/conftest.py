"""Fixtures of the fault tests: dependencies of their own that a test may stop and restart."""

import pytest

from tests.faults.servers import RedisServer


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
