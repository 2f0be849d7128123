"""Two real server processes on one Redis: broadcasts, presence and history are shared.

Each test starts its own ``redis-server`` on a free port and two ``nexios run``
processes pointing at it, then talks to them over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import Server, serve

pytestmark = pytest.mark.anyio

PRESENCE_TTL = 2.0


@pytest.fixture
def cluster() -> Iterator[tuple[RedisServer, Server, Server]]:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_PRESENCE_TTL": str(PRESENCE_TTL)}
        a = stack.enter_context(serve("tests.support.cluster_app:app", env=env))
        b = stack.enter_context(serve("tests.support.cluster_app:app", env=env))
        yield redis, a, b


async def _poll(check, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_broadcast_presence_and_history_span_both_processes(
    cluster: tuple[RedisServer, Server, Server],
) -> None:
    _, a, b = cluster
    async with (
        websockets.connect(a.ws_url("/room/r?user=ann")) as ann,
        websockets.connect(b.ws_url("/room/r?user=bob")) as bob,
        httpx.AsyncClient() as http,
    ):
        assert json.loads(await ann.recv()) == {"joined": "r"}
        assert json.loads(await bob.recv()) == {"joined": "r"}
        for server in (a, b):
            presence = (await http.get(f"{server.http_url}/presence/r")).json()
            assert presence == ["ann", "bob"]
        await ann.send("from a")
        await bob.send("from b")
        for member in (ann, bob):
            got = [json.loads(await asyncio.wait_for(member.recv(), 5)) for _ in range(2)]
            assert sorted((m["from"], m["text"]) for m in got) == [
                ("ann", "from a"),
                ("bob", "from b"),
            ]
            assert sorted(m["seq"] for m in got) == [1, 2]
        reply = await http.post(f"{b.http_url}/broadcast/r", json={"note": "http"})
        assert reply.json() == {"ok": True}
        for member in (ann, bob):
            assert json.loads(await asyncio.wait_for(member.recv(), 5)) == {
                "seq": 3,
                "note": "http",
            }
        for server in (a, b):
            history = (await http.get(f"{server.http_url}/history/r")).json()
            assert history == {"seqs": [1, 2, 3], "complete": True}
        missed = (await http.get(f"{a.http_url}/history/r?since=1")).json()
        assert missed == {"seqs": [2, 3], "complete": True}


async def test_members_of_a_killed_process_leave_presence_within_the_ttl(
    cluster: tuple[RedisServer, Server, Server],
) -> None:
    _, a, b = cluster
    async with (
        websockets.connect(a.ws_url("/room/k?user=ann")) as ann,
        websockets.connect(b.ws_url("/room/k?user=bob")) as bob,
        httpx.AsyncClient() as http,
    ):
        await ann.recv()
        await bob.recv()
        assert (await http.get(f"{a.http_url}/presence/k")).json() == ["ann", "bob"]
        b.process.kill()  # SIGKILL: no shutdown, no leave
        b.process.wait(5)

        async def only_ann() -> bool:
            return (await http.get(f"{a.http_url}/presence/k")).json() == ["ann"]

        # Bound: the TTL, plus one heartbeat (TTL / 3), plus polling slack.
        waited = await _poll(only_ann, timeout=PRESENCE_TTL * 2 + 2)
        print(f"\nkilled process's member left presence after {waited:.2f}s (ttl {PRESENCE_TTL}s)")

        def reaped() -> bool:
            return "leave bob" in a.log() and "expired" in a.log()

        await _poll(_async(reaped), timeout=PRESENCE_TTL + 2)


def _async(check):  # type: ignore[no-untyped-def]
    async def wrapper() -> bool:
        return bool(check())

    return wrapper
