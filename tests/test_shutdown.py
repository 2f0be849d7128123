"""Graceful shutdown: every open socket gets 1001, members leave presence, the process exits.

Under ``nexios run`` uvicorn closes WebSockets itself before the lifespan shutdown; our
protocol makes that close 1001 (stock uvicorn sends 1012). The app then closes anything
still open (1001) and waits a bounded time for handlers. Checked with SIGTERM on a real
server with Redis presence, and in process with the test client.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from nexios import NexiosApp
from nexios.layers import layer_from_url
from nexios.testing import TestClient
from nexios.websockets import Channel, ChannelBox, WebSocket
from tests.support.redis import RedisServer
from tests.support.server import Server, serve

EXIT_WITHIN = 10.0


async def _close_code(ws: ClientConnection) -> tuple[int | None, str | None]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), EXIT_WITHIN)
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is None:
            return None, None
        return closed.rcvd.code, closed.rcvd.reason


def _terminate(server: Server) -> float:
    """SIGTERM the server; seconds until it exited (fails past EXIT_WITHIN)."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=EXIT_WITHIN)
    return time.monotonic() - started


async def _presence(url: str, group: str) -> list[Any]:
    layer = layer_from_url(url)
    try:
        return await layer.presence_list(group)
    finally:
        await layer.stop()


@pytest.mark.anyio
async def test_sigterm_closes_1001_clears_presence_and_exits() -> None:
    with RedisServer() as redis:
        env = {"NEXIOS_CHANNELS_URL": redis.url()}
        with serve("tests.support.security_app:room_app", env=env) as server:
            members = [
                await connect(server.ws_url(f"/room/lobby?n={i}")).__aenter__() for i in range(5)
            ]
            loner = await connect(server.ws_url("/echo")).__aenter__()  # in no group
            for member in members:
                assert await member.recv() == "joined"
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                assert (await http.get("/debug/presence/lobby")).json() == {"members": 5}
            assert len(await _presence(redis.url(), "lobby")) == 5

            closes = asyncio.gather(*(_close_code(ws) for ws in [*members, loner]))
            took = await asyncio.to_thread(_terminate, server)
            codes = await asyncio.wait_for(closes, EXIT_WITHIN)

            assert codes == [(1001, "server shutdown")] * 6
            assert took < EXIT_WITHIN
            assert await _presence(redis.url(), "lobby") == []
            # uvicorn re-raises SIGTERM once shut down: -15 after a clean shutdown.
            assert server.process.returncode == -signal.SIGTERM
            assert "Application shutdown complete" in server.log()


@pytest.mark.anyio
async def test_stock_uvicorn_protocol_would_send_1012() -> None:
    # Why the override exists: uvicorn's own protocol closes with 1012 (service restart).
    with serve("tests.support.security_app:room_app", args=["--ws", "websockets-sansio"]) as server:
        async with connect(server.ws_url("/echo")) as ws:
            closing = asyncio.create_task(_close_code(ws))
            await asyncio.to_thread(_terminate, server)
            assert (await closing)[0] == 1012


@pytest.mark.anyio
async def test_a_handler_that_never_returns_cannot_hold_the_process() -> None:
    args = ["--timeout-graceful-shutdown", "1"]
    with serve("tests.support.security_app:room_app", args=args) as server:
        async with connect(server.ws_url("/stubborn")) as ws:
            assert await ws.recv() == "ready"
            closing = asyncio.create_task(_close_code(ws))
            took = await asyncio.to_thread(_terminate, server)
            assert (await closing)[0] == 1001
        assert took < 1 + 5  # the graceful timeout, then lifespan shutdown and exit
        assert "timeout graceful shutdown exceeded" in server.log()


# --------------------------------------------------------------------------- in process


def _app(shutdown_timeout: float = 5.0) -> NexiosApp:
    app = NexiosApp(shutdown_timeout=shutdown_timeout)

    @app.ws_route("/member/{name}")
    async def member(ws: WebSocket, name: str) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, metadata={"name": name}), "room")
        await ws.send_text("joined")
        async for _ in ws.iter_text():
            pass

    @app.ws_route("/plain")
    async def plain(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("ready")
        async for _ in ws.iter_text():
            pass

    @app.ws_route("/stubborn")
    async def stubborn(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("ready")
        await asyncio.Event().wait()

    return app


def test_lifespan_shutdown_closes_members_and_plain_sockets_with_1001() -> None:
    app = _app()
    client = TestClient(app).__enter__()
    try:
        member = client.websocket_connect("/member/ada").__enter__()
        assert member.receive_text() == "joined"
        plain = client.websocket_connect("/plain").__enter__()
        assert plain.receive_text() == "ready"
        assert len(client.run(ChannelBox.presence("room"))) == 1
        assert app.websocket_stats()["open"] == 2
        client._call(client._lifespan.shutdown())  # type: ignore[union-attr]
        assert member.wait_closed() == 1001
        assert plain.wait_closed() == 1001
        assert plain._session.close_reason == "server shutdown"
        assert app.websocket_stats() == {"open": 0, "clients": 0, "closing": 0}
        assert not app.channels.started
    finally:
        client._lifespan = None
        client.__exit__()


def test_shutdown_waits_a_bounded_time_for_stubborn_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(shutdown_timeout=0.3)
    client = TestClient(app).__enter__()
    try:
        stubborn = client.websocket_connect("/stubborn").__enter__()
        assert stubborn.receive_text() == "ready"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="nexios"):
            client._call(client._lifespan.shutdown())  # type: ignore[union-attr]
        assert time.monotonic() - started < 3
        assert stubborn.wait_closed() == 1001
        assert "1 WebSocket handler(s) still running 0.3s after shutdown" in caplog.text
    finally:
        client._lifespan = None
        client.__exit__()
