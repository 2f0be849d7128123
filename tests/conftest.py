"""Shared fixtures. Async tests use anyio's pytest plugin on asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


from tests.support.redis import redis_server, redis_url  # noqa: E402, F401
from tests.support.server import pytest_pycollect_makemodule, server_wire  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _fresh_channelbox() -> object:
    """Each test starts with default ChannelBox settings and no hub."""
    from nexios.websockets.channels import ChannelBox
    from nexios.websockets.hub import HubSettings

    ChannelBox._settings = HubSettings()
    ChannelBox._hub = None
    ChannelBox._group_policy = None
    yield
    ChannelBox._settings = HubSettings()
    ChannelBox._hub = None
    ChannelBox._group_policy = None
