"""The Starlette app: the same routes as ``app_raw`` through ``starlette.websockets``.

Fan-out loops over a set of ``WebSocket`` objects awaiting ``send_text`` in turn. With
``BENCH_BROADCAST_URL`` set (``redis://...``), ``/member`` and ``/pub`` go through the
``broadcaster`` library instead: one subscriber queue per member, as its docs show.
Two workarounds for broadcaster 0.3.1 (with redis-py 8), both in the lifespan: one
extra subscription holds the room for the app's whole life, because subscribers that
join while the channel's first ``SUBSCRIBE`` is in flight are lost (and raise
``KeyError`` when they leave); and its Redis listener is woken once more after that
subscription, because it checks ``pubsub.subscribed`` before redis-py has recorded the
channel, stops listening, and would otherwise never deliver anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

BROADCAST_URL = os.environ.get("BENCH_BROADCAST_URL")
members: set[WebSocket] = set()
broadcast: Any = None
if BROADCAST_URL:
    from broadcaster import Broadcast

    broadcast = Broadcast(BROADCAST_URL)


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_json(await ws.receive_json())
    except WebSocketDisconnect:
        pass


async def _drain(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


async def member(ws: WebSocket) -> None:
    await ws.accept()
    if broadcast is None:
        members.add(ws)
        try:
            await _drain(ws)
        finally:
            members.discard(ws)
        return
    async with broadcast.subscribe(channel="room") as subscriber:

        async def pump() -> None:
            async for event in subscriber:
                await ws.send_text(event.message)

        task = asyncio.create_task(pump())
        try:
            await _drain(ws)
        finally:
            task.cancel()


async def pub(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            text = await ws.receive_text()
            if broadcast is not None:
                await broadcast.publish(channel="room", message=text)
                continue
            for other in list(members):
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await other.send_text(text)
    except WebSocketDisconnect:
        pass


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    if broadcast is None:
        yield
        return
    await broadcast.connect()
    async with broadcast.subscribe(channel="room") as anchor:
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


app = Starlette(
    routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/json", json_echo),
        WebSocketRoute("/member", member),
        WebSocketRoute("/pub", pub),
    ],
    lifespan=lifespan,
)
