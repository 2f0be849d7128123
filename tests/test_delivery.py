"""Delivery guarantees in one process: saved messages in seq order, gapless rejoin with
``since``, idempotent publish, epochs — on the memory, sqlite and Redis backends.

Every member's messages are checked whole: each seq once, in order, none missing.
Multi-process versions (several ``nexios run`` servers on one Redis, broker faults)
are in ``tests/test_delivery_cluster.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.testing import AsyncTestClient
from nexios.websockets import ChannelBox
from tests.support.delivery_app import make_app

pytestmark = pytest.mark.anyio

HEAVY = os.environ.get("NEXIOS_HEAVY_TESTS") == "1"
"""The issue's full sizes; CI runs smaller ones (the same code)."""


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """App options for each backend: the in-process default, a sqlite file, Redis."""
    if request.param == "memory":
        yield {"channels_url": "memory://"}
    elif request.param == "sqlite":
        yield {"channels_url": "memory://", "history_url": f"sqlite:///{tmp_path}/h.db"}
    else:
        yield {"channels_url": request.getfixturevalue("redis_url")}


class Member:
    """One member across its connections: every saved message it received, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seqs: list[int] = []
        self.payloads: dict[int, tuple[str, int]] = {}
        self.epoch: str | None = None
        self.resyncs: list[dict[str, Any]] = []
        self.joins: list[dict[str, Any]] = []

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def take(self, message: dict[str, Any]) -> None:
        if "joined" in message:
            self.joins.append(message["joined"])
            self.epoch = message["joined"]["epoch"]
        elif message.get("type") == "nexios.resync":
            self.resyncs.append(message)
        else:
            self.seqs.append(message["seq"])
            self.payloads[message["seq"]] = (message["p"], message["i"])

    def url(self, group: str) -> str:
        if self.epoch is None:
            return f"/member/{group}"
        return f"/member/{group}?since={self.last}&epoch={self.epoch}"

    def assert_gapless(self, first: int, last: int) -> None:
        """Each seq from ``first`` to ``last`` exactly once, in order."""
        assert self.seqs == list(range(first, last + 1)), (
            f"{self.name}: duplicates, gaps or inversions in {self.seqs[:20]}..."
            f" ({len(self.seqs)} messages, wanted {first}..{last})"
        )


async def publish(app: NexiosApp, group: str, name: str, count: int, pace: float) -> None:
    async with app.channels.activated():
        for i in range(count):
            await ChannelBox.group_send(
                group, {"p": name, "i": i}, save_history=True, seq_field="seq"
            )
            if pace:
                await asyncio.sleep(pace)


async def test_concurrent_saved_sends_reach_every_member_in_seq_order(
    backend: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrival order is shuffled on purpose: each saved message reaches the group's feed
    # after a random delay. Members must still see 1, 2, 3... with nothing missing.
    monkeypatch.setenv("NEXIOS_TEST_DELIVERY_JITTER", "0.003")
    app = make_app(**backend)
    publishers, each = 8, 40
    total = publishers * each
    members = [Member(f"m{i}") for i in range(6)]
    async with AsyncTestClient(app) as client:
        sessions = [client.websocket_connect("/member/g") for _ in members]
        sockets = [await session.__aenter__() for session in sessions]
        for member, ws in zip(members, sockets, strict=True):
            member.take(await ws.receive_json())
        await asyncio.gather(*(publish(app, "g", f"p{p}", each, 0) for p in range(publishers)))
        for member, ws in zip(members, sockets, strict=True):
            while member.last < total:
                member.take(await ws.receive_json())
        for session in sessions:
            await session.__aexit__(None, None, None)
    for member in members:
        member.assert_gapless(1, total)
        assert member.payloads == members[0].payloads  # one order for all
    sent = sorted(members[0].payloads.values())
    assert sent == sorted((f"p{p}", i) for p in range(publishers) for i in range(each))


async def test_rejoining_with_since_under_load_loses_and_repeats_nothing(
    backend: dict[str, str],
) -> None:
    app = make_app(**backend)
    count, rejoins = (100, 20) if HEAVY else (12, 6)
    members = [Member(f"m{i}") for i in range(count)]
    stop = asyncio.Event()
    published: list[int] = []

    async def publisher(name: str) -> None:
        async with app.channels.activated():
            i = 0
            while not stop.is_set():
                sent = await ChannelBox.group_send(
                    "load", {"p": name, "i": i}, save_history=True, seq_field="seq"
                )
                published.append(sent.seq)
                i += 1
                await asyncio.sleep(0.004)  # ~250 msg/s each, ~500 msg/s for two

    async def churn(client: AsyncTestClient, member: Member) -> None:
        for _ in range(rejoins):
            async with client.websocket_connect(member.url("load")) as ws:
                wanted = random.randint(3, 15)
                got = 0
                while got < wanted:
                    before = len(member.seqs)
                    member.take(await ws.receive_json())
                    got += len(member.seqs) - before

    async with AsyncTestClient(app) as client:
        load = [asyncio.create_task(publisher(f"p{p}")) for p in range(2)]
        while len(published) < 5:
            await asyncio.sleep(0.01)
        await asyncio.gather(*(churn(client, member) for member in members))
        stop.set()
        await asyncio.gather(*load)
        final = max(published)
        for member in members:  # one last rejoin collects the rest
            async with client.websocket_connect(member.url("load")) as ws:
                while member.last < final:
                    member.take(await ws.receive_json())
    for member in members:
        first_join = member.joins[0]
        member.assert_gapless(first_join["last_seq"] + 1, final)
        assert all(join["complete"] for join in member.joins[1:]), member.joins
        assert member.resyncs == []


async def test_a_join_with_since_replays_exactly_what_was_missed(backend: dict[str, str]) -> None:
    app = make_app(**backend)
    async with AsyncTestClient(app) as client:
        await publish(app, "r", "p", 5, 0)
        member = Member("wrong epoch")
        async with client.websocket_connect("/member/r?since=2&epoch=elsewhere") as ws:
            member.take(await ws.receive_json())
        assert member.seqs == []  # nothing replayed: its numbers belong to another history
        assert member.joins[0]["complete"] is False and member.joins[0]["last_seq"] == 5
        member = Member("right epoch")
        page_epoch = (await client.get("/recover/r?since=0")).json()["epoch"]
        async with client.websocket_connect(f"/member/r?since=2&epoch={page_epoch}") as ws:
            for _ in range(4):
                member.take(await ws.receive_json())
        assert member.seqs == [3, 4, 5]
        assert member.joins == [
            {"recovered": 3, "complete": True, "epoch": page_epoch, "last_seq": 5}
        ]


async def test_a_retried_send_with_the_same_key_counts_once(backend: dict[str, str]) -> None:
    app = make_app(**backend)
    async with AsyncTestClient(app) as client:
        member = Member("m")
        async with client.websocket_connect("/member/k") as ws:
            member.take(await ws.receive_json())
            first = (await client.post("/publish/k?key=order-1", json={"p": "x", "i": 1})).json()
            again = (await client.post("/publish/k?key=order-1", json={"p": "x", "i": 1})).json()
            other = (await client.post("/publish/k?key=order-2", json={"p": "x", "i": 2})).json()
            assert again == {**first, "duplicate": True}
            assert first["duplicate"] is False and other["seq"] == first["seq"] + 1
            while member.last < other["seq"]:
                member.take(await ws.receive_json())
        assert member.seqs == [first["seq"], other["seq"]]
        async with app.channels.activated():
            unsaved = [await ChannelBox.group_send("k", "ping", idempotency_key="u1") for _ in "ab"]
        assert [outcome.duplicate for outcome in unsaved] == [False, True]


async def test_a_since_wider_than_64_bits_is_ahead_of_history(backend: dict[str, str]) -> None:
    app = make_app(**backend)
    async with AsyncTestClient(app) as client:
        await publish(app, "w", "p", 2, 0)
        page = (await client.get(f"/recover/w?since={2**70}")).json()
        assert page["complete"] is False and page["seqs"] == [] and page["last_seq"] == 2
        member = Member("wide")
        async with client.websocket_connect(f"/member/w?since={2**70}&epoch=") as ws:
            member.take(await ws.receive_json())
        assert member.joins[0]["complete"] is False and member.joins[0]["last_seq"] == 2
