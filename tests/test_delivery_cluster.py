"""Delivery guarantees across processes: several ``nexios run`` servers on one Redis.

Every member's stream is checked whole (:class:`Stream`): each saved message once, in
seq order, no gap — unless a resync notice says exactly what was skipped. Members of a
group on different processes must see the same message at each seq.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import httpx
import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import Server, serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HEAVY = os.environ.get("NEXIOS_HEAVY_TESTS") == "1"
APP = "tests.support.delivery_app:app"
TIMEOUT = 30.0


class Stream:
    """What one member received, across its connections, checked as it arrives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seqs: list[int] = []
        self.payloads: dict[int, tuple[str, int]] = {}
        self.epoch: str | None = None
        self.expected: int | None = None
        self.notices: list[dict[str, Any]] = []
        self.joins: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.log: list[Any] = []

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else (self.expected or 1) - 1

    def take(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        self.log.append(message.get("seq", message))
        if "joined" in message:
            joined = message["joined"]
            self.joins.append(joined)
            if self.expected is None or not joined["complete"]:
                self.expected = joined["last_seq"] + 1
            self.epoch = joined["epoch"]
        elif message.get("type") == "nexios.resync":
            self.notices.append(message)
            self.expected = message["last_seq"] + 1
            self.epoch = message["epoch"] or self.epoch
        else:
            seq = message["seq"]
            if self.expected is not None and seq != self.expected:
                self.violations.append(f"expected seq {self.expected}, got {seq}")
            self.seqs.append(seq)
            self.expected = seq + 1
            self.payloads[seq] = (message["p"], message["i"])

    def url(self, server: Server, group: str) -> str:
        if self.epoch is None:
            return server.ws_url(f"/member/{group}")
        return server.ws_url(f"/member/{group}?since={self.last}&epoch={self.epoch}")


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, list[Server]]]:
    size, env = request.param
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        servers = [
            stack.enter_context(serve(APP, env={"NEXIOS_CHANNELS_URL": redis.url(), **env}))
            for _ in range(size)
        ]
        yield redis, servers


async def read_until(ws: Any, stream: Stream, seq: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while stream.last < seq or not stream.joins:
            stream.take(await ws.recv())


JITTER = {"NEXIOS_TEST_DELIVERY_JITTER": "0.003", "NEXIOS_PRESENCE_TTL": "5"}


@pytest.mark.parametrize("cluster", [(3, JITTER)], indirect=True)
async def test_every_process_delivers_one_order_per_group(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    """3 processes, 4 publishers each, 5 groups, 2 members per group per process; every
    saved message reaches a feed after a random delay (the jitter flag)."""
    _, servers = cluster
    groups = [f"g{g}" for g in range(5)]
    rounds = 10  # each publisher sends `rounds` messages to every group
    publishers = [(server, f"s{s}p{p}") for s, server in enumerate(servers) for p in range(4)]
    total = len(publishers) * rounds
    streams: dict[tuple[int, str, int], Stream] = {}
    async with AsyncExitStack() as stack:
        members: dict[tuple[int, str, int], Any] = {}
        for s, server in enumerate(servers):
            for group in groups:
                for m in range(2):
                    key = (s, group, m)
                    streams[key] = Stream(str(key))
                    members[key] = await stack.enter_async_context(
                        websockets.connect(server.ws_url(f"/member/{group}"))
                    )
                    streams[key].take(await members[key].recv())
        senders = {
            (name, group): await stack.enter_async_context(
                websockets.connect(server.ws_url(f"/publish/{group}?p={name}"))
            )
            for server, name in publishers
            for group in groups
        }

        async def publish(ws: Any) -> None:
            for i in range(rounds):
                await ws.send(str(i))
            for _ in range(rounds):
                await asyncio.wait_for(ws.recv(), TIMEOUT)  # acknowledged: saved, published

        await asyncio.gather(*(publish(ws) for ws in senders.values()))
        await asyncio.gather(*(read_until(members[key], streams[key], total) for key in streams))
    for (_, group, _), stream in streams.items():
        assert stream.violations == [] and stream.notices == [], stream.name
        assert stream.seqs == list(range(1, total + 1)), stream.name
        assert stream.payloads == streams[(0, group, 0)].payloads, f"{stream.name}: other order"
        assert sorted(stream.payloads.values()) == sorted(
            (name, i) for _, name in publishers for i in range(rounds)
        )


async def publish_paced(
    http: httpx.AsyncClient, url: str, stop: asyncio.Event, out: list[int]
) -> None:
    """POST saved messages as fast as the server answers, pausing 2 ms between them."""
    i = 0
    while not stop.is_set():
        reply = await http.post(url, json={"p": url[-6:], "i": i})
        if reply.status_code == 200:
            out.append(reply.json()["seq"])
        i += 1
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("cluster", [(2, {})], indirect=True)
async def test_members_rejoining_with_since_on_any_process_miss_nothing(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    _, servers = cluster
    count, rejoins = (100, 20) if HEAVY else (16, 5)
    streams = [Stream(f"m{i}") for i in range(count)]
    stop = asyncio.Event()
    published: list[int] = []

    async def churn(stream: Stream) -> None:
        for _ in range(rejoins):
            server = random.choice(servers)
            async with websockets.connect(stream.url(server, "load")) as ws:
                target = stream.last + random.randint(3, 15)
                await read_until(ws, stream, target)

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        load = [
            asyncio.create_task(publish_paced(http, s.http_url + "/publish/load", stop, published))
            for s in servers
        ]
        while len(published) < 5:
            await asyncio.sleep(0.01)
        await asyncio.gather(*(churn(stream) for stream in streams))
        stop.set()
        await asyncio.gather(*load)
        final = max(published)
        for stream in streams:
            async with websockets.connect(stream.url(servers[0], "load")) as ws:
                await read_until(ws, stream, final)
    for stream in streams:
        if stream.violations:
            with open("/tmp/fail-stream.json", "w") as f:
                json.dump({"name": stream.name, "log": stream.log, "v": stream.violations}, f)
        assert stream.violations == [] and stream.notices == [], (stream.name, stream.log)
        first = stream.joins[0]["last_seq"] + 1
        assert stream.seqs == list(range(first, final + 1)), stream.name
        assert all(join["complete"] for join in stream.joins), stream.joins


@pytest.mark.parametrize("cluster", [(2, {"NEXIOS_PRESENCE_TTL": "3"})], indirect=True)
async def test_lost_history_changes_the_epoch_and_connected_members_are_told(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    redis, servers = cluster
    streams = [Stream(f"on{s}") for s in range(len(servers))]
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=TIMEOUT) as http:
        members = [
            await stack.enter_async_context(websockets.connect(server.ws_url("/member/e")))
            for server in servers
        ]
        for ws, stream in zip(members, streams, strict=True):
            stream.take(await ws.recv())

        async def publish(count: int) -> list[dict[str, Any]]:
            return [
                (
                    await http.post(servers[0].http_url + "/publish/e", json={"p": "x", "i": i})
                ).json()
                for i in range(count)
            ]

        first = await publish(3)
        old_epoch = first[0]["epoch"]
        for ws, stream in zip(members, streams, strict=True):
            await read_until(ws, stream, 3)

        redis.flush()  # FLUSHALL while members are connected
        second = await publish(2)
        assert second[0]["epoch"] != old_epoch and [r["seq"] for r in second] == [1, 2]
        for ws, stream in zip(members, streams, strict=True):
            async with asyncio.timeout(TIMEOUT):
                while len(stream.seqs) < 5:
                    stream.take(await ws.recv())

        recovered = (
            await http.get(servers[1].http_url + f"/recover/e?since=3&epoch={old_epoch}")
        ).json()
        assert recovered["complete"] is False and recovered["seqs"] == []

        redis.restart()  # a Redis without persistence comes back empty
        for ws, stream in zip(members, streams, strict=True):
            async with asyncio.timeout(TIMEOUT):
                while len(stream.notices) < 2:
                    stream.take(await ws.recv())
        third = await publish(1)
        for ws, stream in zip(members, streams, strict=True):
            async with asyncio.timeout(TIMEOUT):
                while len(stream.seqs) < 6:
                    stream.take(await ws.recv())
    for stream in streams:
        assert stream.violations == [], stream.name
        assert stream.seqs == [1, 2, 3, 1, 2, 1], stream.name
        reasons = [(n["reason"], n["epoch"]) for n in stream.notices]
        assert reasons == [("epoch_changed", second[0]["epoch"]), ("epoch_changed", "")]
        assert third[0]["epoch"] not in (old_epoch, second[0]["epoch"])
