"""Fixtures of the run pages' browser tests: the deployment's web server and a client of its API
(a ``runs:read,runs:write`` key), one per module."""

import pytest

from tests.browser.run_helpers import RunApi


@pytest.fixture(scope="module")
def server(live_stack):
    return live_stack.server()


@pytest.fixture(scope="module")
def runs(live_stack, server) -> RunApi:
    return RunApi(stack=live_stack, base=server.url, key=live_stack.api_key("runs:read,runs:write"))
