"""Starlette with ``broadcaster`` (Redis backend): one subscriber per member, as its docs show.

Each member subscribes to its room's channel and pumps events to its socket; each
message it sends is published to the room. Two workarounds for broadcaster 0.3.1, which
would otherwise lose members (not a cost: they only make it deliver):

- ``Broadcast.subscribe`` loses a subscriber that joins while the room's first
  ``SUBSCRIBE`` is in flight (both find no subscriber set, the second overwrites the
  first), so the first entry into each room is serialised with a lock;
- its Redis listener stops for good when it wakes before redis-py has recorded a
  subscription, so the lifespan holds one subscription for the app's life and wakes
  the listener once after it (as ``bench/app_starlette.py`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator

from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

broadcast = Broadcast(os.environ["BENCH_REDIS_URL"])
first_entry: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


async def room(ws: WebSocket) -> None:
    name = ws.path_params["room"]
    await ws.accept()
    async with contextlib.AsyncExitStack() as stack:
        async with first_entry[name]:
            subscriber = await stack.enter_async_context(broadcast.subscribe(channel=name))

        async def pump() -> None:
            async for event in subscriber:
                await ws.send_text(event.message)

        await ws.send_text("joined")
        task = asyncio.create_task(pump())
        try:
            while True:
                await broadcast.publish(channel=name, message=await ws.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            task.cancel()


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    async with broadcast.subscribe(channel="bench:anchor") as anchor:
        broadcast._backend._ready.set()  # see the module docstring

        async def discard() -> None:
            async for _ in anchor:
                pass

        task = asyncio.create_task(discard())
        try:
            yield
        finally:
            task.cancel()
    await broadcast.disconnect()


app = Starlette(routes=[WebSocketRoute("/room/{room}", room)], lifespan=lifespan)
