"""Join storms through the runtime: 20,000 concurrent joins on a healthy Redis, no failure.

Each join subscribes (the group's first local member), reads the group's position in
history and adds a presence entry; the layer pipelines concurrent commands, so a storm is
slow at worst — never reported as "Redis unreachable". Sockets here are real
``WebSocket`` objects on an in-memory ASGI channel: the storm is the runtime's.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.connection import WebSocket
from nexios.websockets import Channel, ChannelBox

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOINS = 20_000 if os.environ.get("NEXIOS_HEAVY_TESTS") == "1" else 5_000


async def connected_socket() -> WebSocket:
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    messages.put_nowait({"type": "websocket.connect"})

    async def send(message: dict[str, Any]) -> None:
        pass

    ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, messages.get, send)
    await ws.accept()
    return ws


@pytest.mark.parametrize("shape", ["distinct groups", "one group"])
async def test_concurrent_joins_all_succeed(redis_url: str, shape: str) -> None:
    app = NexiosApp(channels_url=redis_url)
    channels = [Channel(await connected_socket()) for _ in range(JOINS)]
    async with app.channels.activated():
        began = time.monotonic()
        outcomes = await asyncio.gather(
            *(
                ChannelBox.add_channel_to_group(
                    channel, f"storm-{i}" if shape == "distinct groups" else "storm"
                )
                for i, channel in enumerate(channels)
            ),
            return_exceptions=True,
        )
        took = time.monotonic() - began
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        stats = app.channels.stats()
        await app.channels.stop()
    print(f"\n{JOINS} concurrent joins ({shape}) on Redis: {took:.2f}s, {len(failures)} failed")
    assert failures == []
    assert stats.memberships == JOINS
