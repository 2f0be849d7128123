"""The presence heartbeat refreshes every member once per heartbeat, a slice per tick.

Refreshing every member in one go held the event loop for a time that grows with the
members (at 5,000 members per process it put a 300 ms stall into every broadcast in
flight, every 5 s). Each maintenance tick now refreshes the share of the entries the
time since the last tick is of a heartbeat, those refreshed longest ago first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.layers.base import PresenceRecord
from nexios.limits import Limits
from nexios.runtime.presence import HeartbeatRotation
from nexios.testing import AsyncTestClient
from nexios.websockets import Channel, ChannelBox, WebSocket

pytestmark = pytest.mark.anyio


def keys(count: int, group: str = "g") -> list[tuple[str, str]]:
    return [(group, f"c{i}") for i in range(count)]


def test_a_tenth_at_a_time_covers_every_entry_once_in_ten_slices() -> None:
    rotation = HeartbeatRotation()
    entries = dict.fromkeys(keys(100), b"{}")
    for key in entries:
        rotation.add(key)
    slices = [rotation.next_slice(entries, 0.1) for _ in range(10)]
    assert [len(part) for part in slices] == [10] * 10
    refreshed = [(group, cid) for part in slices for group, cid, _ in part]
    assert sorted(refreshed) == sorted(entries)  # each once, none twice
    # The next round starts again with the first refreshed.
    assert rotation.next_slice(entries, 0.1) == slices[0]


def test_entries_that_left_are_skipped_and_do_not_count_toward_the_share() -> None:
    rotation = HeartbeatRotation()
    entries = dict.fromkeys(keys(10), b"{}")
    for key in entries:
        rotation.add(key)
    for key in keys(5):
        del entries[key]
    part = rotation.next_slice(entries, 1.0)
    assert sorted((g, c) for g, c, _ in part) == sorted(entries)
    assert len(rotation.next_slice(entries, 1.0)) == 5  # the gone ones are dropped for good


def test_leaving_and_joining_again_does_not_lengthen_the_rotation() -> None:
    rotation = HeartbeatRotation()
    entries = dict.fromkeys(keys(20), b"{}")
    for key in entries:
        rotation.add(key)
    churner = ("g", "c0")
    for _ in range(100):  # leave and join again, before the rotation comes round
        del entries[churner]
        entries[churner] = b"{}"
        rotation.add(churner)
    refreshed = [
        (group, cid) for _ in range(4) for group, cid, _ in rotation.next_slice(entries, 0.25)
    ]
    assert sorted(refreshed) == sorted(entries)


def test_the_info_refreshed_is_the_entry_current_info() -> None:
    rotation = HeartbeatRotation()
    entries = {("g", "a"): b"old"}
    rotation.add(("g", "a"))
    entries[("g", "a")] = b"new"
    assert rotation.next_slice(entries, 1.0) == [("g", "a", b"new")]


def presence_app() -> NexiosApp:
    # ttl 6 s: a heartbeat every 2 s, eight maintenance ticks (0.25 s) in each.
    # The test client opens every socket from one address: no per-client cap.
    app = NexiosApp(presence_ttl=6.0, limits=Limits(max_connections_per_client=None))

    @app.ws_route("/m")
    async def member(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, payload_type="text"), "room")
        await ws.send_text("in")
        async for _ in ws.iter_text():
            pass

    return app


async def test_no_tick_refreshes_every_member_and_every_member_stays_present() -> None:
    members = 200
    app = presence_app()
    calls: list[tuple[float, int]] = []
    async with AsyncTestClient(app) as client, contextlib.AsyncExitStack() as stack:
        layer = app.channels.layer
        real = layer.presence_heartbeat

        async def recording(entries: Any, ttl: float) -> list[PresenceRecord]:
            calls.append((asyncio.get_running_loop().time(), len(entries)))
            return await real(entries, ttl)

        layer.presence_heartbeat = recording  # type: ignore[method-assign]
        for _ in range(members):
            socket = await stack.enter_async_context(client.websocket_connect("/m"))
            assert await socket.receive_text() == "in"
        calls.clear()
        began = asyncio.get_running_loop().time()
        # Past a ttl: every entry would have expired without its refreshes.
        while asyncio.get_running_loop().time() - began < 7.0:
            await asyncio.sleep(0.1)
        assert len(await ChannelBox.presence("room")) == members
        # Slices, not the whole: about an eighth per tick. A tick the machine delayed
        # takes a larger share, all of them only if it came a whole heartbeat late.
        assert calls and max(count for _, count in calls) < members, calls
        # Each heartbeat's worth of ticks refreshes about every member once.
        refreshed = sum(count for _, count in calls)
        heartbeats = (calls[-1][0] - calls[0][0]) / 2.0
        assert refreshed >= members * heartbeats * 0.9, (refreshed, heartbeats, calls)
