"""Periodic work that grows with the connections is spread out, and full garbage
collections with ``NEXIOS_GC_FREEZE=1`` walk only what is new.

At 5,000 members per process, three things each held the event loop for 100-400 ms at a
time, and every message in flight waited (the rooms benchmark's p99 at 100 msg/s was
184 ms): the keepalive sweep pinged every connection at once, the presence heartbeat
refreshed every entry at once (``tests/test_presence_heartbeat.py``), and each full
garbage collection walked every connection's objects.
"""

from __future__ import annotations

import asyncio
import gc
import types
import weakref
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.runtime.collector import COLLECTOR, MIN_TURNOVER, CollectorPolicy
from nexios.testing import AsyncTestClient
from nexios.wire.guards import PING_SLICES, ServerGuard
from nexios.wire.settings import WireSettings

pytestmark = pytest.mark.anyio


class Pinged:
    """A connection that records when it was pinged, and which pings timed out."""

    def __init__(self) -> None:
        self.pings: list[float] = []
        self.expired: list[int] = []

    def keepalive_ping(self) -> int:
        self.pings.append(asyncio.get_running_loop().time())
        return len(self.pings)

    def keepalive_expired(self, ping: int) -> None:
        self.expired.append(ping)


async def test_the_keepalive_pings_every_connection_once_a_round_a_slice_at_a_time() -> None:
    interval, count = 0.4, 200
    targets = [Pinged() for _ in range(count)]
    connections: set[Any] = set(targets)
    config = types.SimpleNamespace(ws_ping_interval=interval, ws_ping_timeout=None, ws_max_size=1)
    guard = ServerGuard(config, types.SimpleNamespace(connections=connections), WireSettings())
    guard.keepalive_started()
    loop = asyncio.get_running_loop()
    while min(len(target.pings) for target in targets) < 3:  # three rounds
        await asyncio.sleep(interval / 10)
    connections.clear()  # the sweep stops with the last connection
    # One round per interval: a connection's pings are about an interval apart.
    for target in targets:
        gaps = [b - a for a, b in zip(target.pings, target.pings[1:], strict=False)]
        assert min(gaps) > interval / 2, gaps
    # A slice per tick, never everybody at once: pings of one tick share its time.
    ticks: dict[float, int] = {}
    for target in targets:
        for at in target.pings:
            ticks[round(at, 3)] = ticks.get(round(at, 3), 0) + 1
    assert max(ticks.values()) <= -(-count // PING_SLICES) + 1, ticks
    assert loop.time() > 0


async def test_each_ping_times_out_by_its_own_number() -> None:
    # A connection's slot can move to earlier in the next round (the round is a new
    # snapshot): pinged again before the last ping's timeout, it must be judged on the
    # ping each timeout belongs to, or an answered ping would close it.
    interval = 0.2
    target = Pinged()
    connections: set[Any] = {target}
    config = types.SimpleNamespace(
        ws_ping_interval=interval, ws_ping_timeout=interval * 1.5, ws_max_size=1
    )
    guard = ServerGuard(config, types.SimpleNamespace(connections=connections), WireSettings())
    guard.keepalive_started()
    while len(target.expired) < 3:
        await asyncio.sleep(interval / 4)
    connections.clear()
    assert target.expired[:3] == [1, 2, 3]


async def test_survivors_of_a_full_collection_are_frozen_until_a_quarter_turned_over() -> None:
    policy = CollectorPolicy()
    members = 4 * MIN_TURNOVER

    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the cyclic collector frees it

    gc.collect()
    callbacks = len(gc.callbacks)
    policy.attach()
    try:
        for _ in range(members):
            policy.joined()
        left_behind = [Node() for _ in range(members)]
        watch = weakref.ref(left_behind[0])
        gc.collect()  # a full collection: its survivors are frozen
        assert policy.freezes == 1 and gc.get_freeze_count() >= members
        # Later full collections do not walk them.
        assert all(obj is not left_behind[0] for obj in gc.get_objects(generation=2))

        # Members leave, their cycles with them: frozen, they are not collected yet...
        del left_behind
        for _ in range(MIN_TURNOVER):
            policy.left()
        gc.collect()  # frozen again: what the leavers left stays counted
        assert watch() is not None and policy.unfreezes == 0 and policy.freezes == 2
        # ...until the leavers pass a quarter: then the next full collection takes them.
        policy.left()
        assert policy.unfreezes == 1
        gc.collect()
        assert watch() is None
    finally:
        policy.detach()
    assert gc.get_freeze_count() == 0
    assert len(gc.callbacks) == callbacks


def plain_app() -> NexiosApp:
    return NexiosApp()


async def test_nexios_gc_freeze_attaches_the_policy_while_the_app_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_GC_FREEZE", "1")
    app = plain_app()
    assert not COLLECTOR.active
    async with AsyncTestClient(app):
        assert COLLECTOR.active
    assert not COLLECTOR.active and gc.get_freeze_count() == 0


async def test_a_bad_nexios_gc_freeze_fails_the_startup_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_GC_FREEZE", "maybe")
    with pytest.raises(RuntimeError, match="startup failed") as failed:
        async with AsyncTestClient(plain_app()):
            pass
    assert isinstance(failed.value.__cause__, ConfigurationError)
    assert "NEXIOS_GC_FREEZE must be 1 or 0" in str(failed.value.__cause__)
