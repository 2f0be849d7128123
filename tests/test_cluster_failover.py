"""A primary of the Redis Cluster dies while two ``nexios run`` servers broadcast saved
messages: how long until it works again, and does any member miss a message unawares?

Six groups, two on each primary; four members per group (two on each server); two
publishers per group (one per server) POST saved messages all along; then the primary of
two of the groups is killed (SIGKILL) and its replica takes over — a replica cut off for
the last 0.3 s, so that messages acknowledged and delivered then are lost with the
primary (asynchronous replication at its worst). Every member's stream
is checked whole (:class:`Member`): within an epoch every seq once, in order, no gap —
unless a resync notice said so — and every message at the seq its publisher was told.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
import websockets

from nexios._redis import KeySpace
from tests.support.redis import LocalCluster
from tests.support.server import Server, serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

APP = "tests.support.delivery_app:app"
TIMEOUT = 30.0
PACE = 0.04
"""Seconds each publisher waits between two messages (about 25 per second each)."""


@dataclass
class Member:
    """What one member received, as it arrived (see the module docstring)."""

    name: str
    group: str
    epoch: str | None = None
    expected: int = 0
    received: dict[tuple[str | None, int], tuple[str, int]] = field(default_factory=dict)
    notices: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def take(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        if "joined" in message:
            self.epoch = message["joined"]["epoch"]
            self.expected = message["joined"]["last_seq"] + 1
        elif message.get("type") == "nexios.resync":
            self.notices.append(message)
            self.epoch = message["epoch"] or None  # "": the next one is a new numbering
            self.expected = message["last_seq"] + 1
        else:
            seq = message["seq"]
            if seq != self.expected:
                self.violations.append(f"expected seq {self.expected}, got {seq} (silent gap)")
            self.expected = seq + 1
            self.received[(self.epoch, seq)] = (message["p"], message["i"])
            self.arrivals.append(time.monotonic())

    def reached(self, epoch: str, seq: int) -> bool:
        return self.epoch == epoch and self.expected > seq


@dataclass
class Publishers:
    """Paced publishers; what each was told (acked) and when requests failed."""

    acked: dict[str, list[tuple[float, str, int, tuple[str, int]]]] = field(default_factory=dict)
    failed: dict[str, list[float]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: httpx.AsyncClient, server: Server, group: str, name: str) -> None:
        i = 0
        while not self.stop.is_set():
            payload = {"p": name, "i": i}
            try:
                reply = await http.post(f"{server.http_url}/publish/{group}", json=payload)
            except httpx.HTTPError:
                reply = None
            now = time.monotonic()
            if reply is not None and reply.status_code == 200:
                body = reply.json()
                entry = (now, body["epoch"], body["seq"], (name, i))
                self.acked.setdefault(group, []).append(entry)
            else:
                self.failed.setdefault(group, []).append(now)
            i += 1
            await asyncio.sleep(PACE)


@pytest.fixture
def servers(own_cluster: LocalCluster) -> Iterator[list[Server]]:
    env = {"NEXIOS_CHANNELS_URL": own_cluster.url(nodes=6), "NEXIOS_PRESENCE_TTL": "3"}
    with ExitStack() as stack:
        yield [stack.enter_context(serve(APP, env=env)) for _ in range(2)]


def groups_by_primary(cluster: LocalCluster, per_primary: int) -> dict[int, list[str]]:
    keys = KeySpace("", "nexios", sharded=True)
    found: dict[int, list[str]] = {node.port: [] for node in cluster.primaries()}
    i = 0
    while any(len(groups) < per_primary for groups in found.values()):
        group = f"room-{i}"
        owner = found[cluster.primary_of(keys.channel(group)).port]
        if len(owner) < per_primary:
            owner.append(group)
        i += 1
    return found


async def post_until_ok(http: httpx.AsyncClient, url: str, payload: Any) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            reply = await http.post(url, json=payload)
            if reply.status_code == 200:
                body: dict[str, Any] = reply.json()
                return body
            await asyncio.sleep(0.05)


async def test_killing_a_primary_while_broadcasting_loses_nothing_silently(
    own_cluster: LocalCluster, servers: list[Server]
) -> None:
    by_primary = groups_by_primary(own_cluster, per_primary=2)
    victim = own_cluster.primaries()[0]
    lost_groups = by_primary[victim.port]
    groups = [group for found in by_primary.values() for group in found]
    publishers = Publishers()
    members: list[Member] = []
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=TIMEOUT))
        for group in groups:  # a numbering (epoch) before anyone joins
            await post_until_ok(http, f"{servers[0].http_url}/publish/{group}", {"p": "-", "i": 0})
        sockets = []
        for group in groups:
            for s, server in enumerate(servers):
                for m in range(2):
                    ws = await stack.enter_async_context(
                        websockets.connect(server.ws_url(f"/member/{group}"))
                    )
                    member = Member(f"{group}/s{s}m{m}", group)
                    member.take(await ws.recv())
                    members.append(member)
                    sockets.append(ws)

        async def read(ws: Any, member: Member) -> None:
            async for raw in ws:
                member.take(raw)

        readers = [
            asyncio.create_task(read(ws, member))
            for ws, member in zip(sockets, members, strict=True)
        ]
        load = [
            asyncio.create_task(publishers.run(http, server, group, f"{group}/s{s}"))
            for group in groups
            for s, server in enumerate(servers)
        ]
        await asyncio.sleep(1.5)
        # The replica lags: what is acknowledged (and delivered) from now on is lost
        # with the primary, the worst case of asynchronous replication.
        replica = own_cluster.replica_of(victim)
        replica.freeze()
        with redis.Redis(port=victim.port) as client:
            assert client.client_kill_filter(_type="replica") == 1
        await asyncio.sleep(0.3)

        killed_at = time.monotonic()
        victim.kill()
        replica.thaw()
        # broadcasting goes on; wait until every group's publishes succeed again
        async with asyncio.timeout(TIMEOUT):
            while not all(publishers.acked[group][-1][0] > killed_at + 1.0 for group in groups):
                await asyncio.sleep(0.05)
        publishers.stop.set()
        await asyncio.gather(*load)
        markers = {
            group: await post_until_ok(
                http, f"{servers[1].http_url}/publish/{group}", {"p": "end", "i": 0}
            )
            for group in groups
        }
        try:
            async with asyncio.timeout(TIMEOUT):
                while not all(
                    m.reached(markers[m.group]["epoch"], markers[m.group]["seq"]) for m in members
                ):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            stuck = [
                (m.name, m.epoch, m.expected, markers[m.group], m.notices[-3:])
                for m in members
                if not m.reached(markers[m.group]["epoch"], markers[m.group]["seq"])
            ]
            logs = "\n".join(server.log()[-4000:] for server in servers)
            raise AssertionError(f"members short of the end marker: {stuck}\n{logs}") from None
        for reader in readers:
            reader.cancel()

    # -- no silent gap: each member's stream is whole, or a notice says where it is not
    for member in members:
        assert member.violations == [], (member.name, member.violations)
    # -- every member got each message at the seq its publisher was told, and members
    #    of a group agree on what each (epoch, seq) is
    told = {
        (group, epoch, seq): payload
        for group in groups
        for _, epoch, seq, payload in publishers.acked[group]
    }
    seen: dict[tuple[str, str | None, int], tuple[str, int]] = {}
    for member in members:
        for (epoch, seq), payload in member.received.items():
            if epoch is not None and (member.group, epoch, seq) in told:
                assert told[(member.group, epoch, seq)] == payload, member.name
            first = seen.setdefault((member.group, epoch, seq), payload)
            assert first == payload, f"{member.name}: two messages at {epoch}/{seq}"
    # -- groups on the other primaries went on without a notice; those of the killed
    #    one got one (their numbering moved to the promoted replica: a new epoch)
    for member in members:
        if member.group in lost_groups:
            assert member.notices, member.name
            assert {n["reason"] for n in member.notices} <= {"epoch_changed", "gap"}
        else:
            assert member.notices == [], member.name

    # -- figures
    def first_ack_after(group: str) -> float:
        return min(t for t, *_ in publishers.acked[group] if t > killed_at) - killed_at

    def first_arrival_after(group: str) -> float:
        return min(
            t - killed_at for m in members if m.group == group for t in m.arrivals if t > killed_at
        )

    figures = {
        "publish_resumed_s (killed primary's groups)": max(map(first_ack_after, lost_groups)),
        "members_received_again_s (killed primary's groups)": max(
            map(first_arrival_after, lost_groups)
        ),
        "publish_resumed_s (other groups)": max(
            first_ack_after(g) for g in groups if g not in lost_groups
        ),
        "failed_publishes (killed primary's groups)": sum(
            len(publishers.failed.get(g, [])) for g in lost_groups
        ),
        "failed_publishes (other groups)": sum(
            len(publishers.failed.get(g, [])) for g in groups if g not in lost_groups
        ),
        "acked_publishes": sum(len(v) for v in publishers.acked.values()),
        "resync_notices": sum(len(m.notices) for m in members),
    }
    print("failover figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
