"""Presence under faults: a member that is connected is in presence again within one
refresh interval — after Redis restarted empty, and after its process stalled longer
than the TTL (its entry was reaped meanwhile) — with a ``join`` event (reason
``restored``), while it stays connected and keeps receiving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import Server, serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TTL = 3.0
APP = "tests.support.cluster_app:app"


async def presence(http: httpx.AsyncClient, server: Server) -> list[str]:
    reply = await http.get(f"{server.http_url}/presence/room")
    return reply.json() if reply.status_code == 200 else []


async def wait_for_presence(
    http: httpx.AsyncClient, server: Server, wanted: list[str], within: float
) -> float:
    """Seconds until presence (asked from ``server``) lists exactly ``wanted``."""
    began = time.monotonic()
    while await presence(http, server) != wanted:
        assert time.monotonic() - began < within, f"presence not {wanted} within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def still_receiving(
    ws: websockets.ClientConnection, http: httpx.AsyncClient, url: str
) -> None:
    reply = await http.post(f"{url}/broadcast/room", json={"check": True})
    assert reply.status_code == 200
    async with asyncio.timeout(10):
        while "check" not in json.loads(await ws.recv()):
            pass


async def test_members_reappear_after_redis_restarts_empty() -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_PRESENCE_TTL": str(TTL)}
        a, b = (stack.enter_context(serve(APP, env=env)) for _ in range(2))
        async with (
            httpx.AsyncClient(timeout=10) as http,
            websockets.connect(a.ws_url("/room/room?user=ada")) as ada,
            websockets.connect(b.ws_url("/room/room?user=bob")) as bob,
        ):
            await ada.recv(), await bob.recv()
            await wait_for_presence(http, a, ["ada", "bob"], 10)
            redis.restart()  # no persistence: every presence entry is gone
            took = await wait_for_presence(http, a, ["ada", "bob"], TTL / 3 + 5)
            for member, server in ((ada, a), (bob, b)):
                await still_receiving(member, http, server.http_url)
        print(
            f"\npresence back {took:.2f}s after Redis restarted empty (refresh every {TTL / 3:g}s)"
        )
        assert "join ada" in a.wait_for_log("restored", 5)
        assert "join bob" in b.wait_for_log("restored", 5)


async def test_a_stalled_process_gets_its_members_back() -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_PRESENCE_TTL": str(TTL)}
        a, b = (stack.enter_context(serve(APP, env=env)) for _ in range(2))
        async with (
            httpx.AsyncClient(timeout=10) as http,
            websockets.connect(a.ws_url("/room/room?user=ada")) as ada,
            websockets.connect(b.ws_url("/room/room?user=bob")) as bob,
        ):
            await ada.recv(), await bob.recv()
            await wait_for_presence(http, b, ["ada", "bob"], 10)
            os.kill(a.process.pid, signal.SIGSTOP)  # longer than the TTL: ada expires
            try:
                await wait_for_presence(http, b, ["bob"], 3 * TTL)
                # ...and the other process reaps her entry (a "leave", reason "expired").
                await asyncio.to_thread(b.wait_for_log, "expired", 3 * TTL)
            finally:
                os.kill(a.process.pid, signal.SIGCONT)
            took = await wait_for_presence(http, b, ["ada", "bob"], TTL / 3 + 5)
            await still_receiving(ada, http, a.http_url)
        print(f"\nada back in presence {took:.2f}s after her process resumed")
        assert "leave ada" in b.log() and "expired" in b.log()
        a.wait_for_log("restored", 5)  # the join event follows the entry's return
