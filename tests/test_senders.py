"""Each member's sender: order, overflow policies, byte bounds, deadlines, dead peers.

Every test runs on both senders — the portable one (ASGI messages drained by a task)
and the frame sender (pre-built frames written to the server's sink) — through the
same peer interface: a peer that reads, stops reading, resumes or vanishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nexios.connection import WebSocket
from nexios.exceptions import ConfigurationError
from nexios.framing import Frame
from nexios.runtime.senders import (
    EVICTION_CLOSE_CODE,
    HIGH_WATER,
    AsgiSender,
    FlushScheduler,
    FrameSender,
    OutboxLimits,
    OverflowPolicy,
    Sender,
)

pytestmark = pytest.mark.anyio


class Peer:
    """The client side of one member, seen through whichever sender is under test."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.gone = False
        self.changed = asyncio.Event()

    def texts(self) -> list[str]:
        return list(self.received)

    async def until(self, count: int) -> list[str]:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.texts()

    def stop_reading(self) -> None:
        self.reading.clear()

    def resume(self) -> None:
        self.reading.set()


class AsgiPeer(Peer):
    """An ASGI server whose ``send`` blocks while the peer is not reading."""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.send":
            return
        await self.reading.wait()
        if self.gone:
            raise OSError("peer gone")
        self.received.append(message["text"])
        self.changed.set()


class SinkPeer(Peer):
    """A frame sink whose backlog grows while the peer is not reading."""

    def __init__(self) -> None:
        super().__init__()
        self.backlog = 0
        self.aborted = False
        self._writable: Callable[[], None] | None = None
        self._pending: list[bytes] = []

    def write(self, frame: bytes) -> bool:
        if self.gone or self.aborted:
            return False
        if self.reading.is_set():
            self._deliver(frame)
        else:
            self._pending.append(frame)
            self.backlog += len(frame)
        return True

    def buffered(self) -> int:
        return self.backlog

    def abort(self) -> None:
        self.aborted = True

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        self._writable = callback

    def resume(self) -> None:
        super().resume()
        pending, self._pending, self.backlog = self._pending, [], 0
        for frame in pending:
            self._deliver(frame)
        if self._writable is not None:
            callback, self._writable = self._writable, None
            callback()

    def _deliver(self, data: bytes) -> None:
        while data:
            length = data[1]
            start = 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(data[2:10], "big"), 10
            # rstrip: stall() pads its frame to fill the transport
            self.received.append(data[start : start + length].decode().rstrip(" "))
            data = data[start + length :]
        self.changed.set()


Harness = tuple[Sender, Peer, list[tuple[int, str]]]


async def connected_socket(peer: Peer, sink: SinkPeer | None) -> WebSocket:
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    scope: dict[str, Any] = {"type": "websocket", "path": "/", "headers": [], "extensions": {}}
    if sink is not None:
        scope["extensions"]["nexios.frames"] = sink

    async def send(message: dict[str, Any]) -> None:
        if isinstance(peer, AsgiPeer):
            await peer.send(message)

    ws = WebSocket(scope, incoming.get, send)
    await ws.accept()
    return ws


@pytest.fixture(params=["asgi", "frames"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    made: list[Sender] = []

    async def build(**limits: Any) -> Harness:
        failures: list[tuple[int, str]] = []

        def on_failure(_sender: Sender, code: int, reason: str) -> None:
            failures.append((code, reason))

        drops = build.drops = []  # type: ignore[attr-defined]
        if request.param == "asgi":
            peer: Peer = AsgiPeer()
            ws = await connected_socket(peer, None)
            sender: Sender = AsgiSender(
                ws, OutboxLimits(**limits), on_failure, on_drop=drops.append
            )
        else:
            sink = SinkPeer()
            peer = sink
            ws = await connected_socket(peer, sink)
            scheduler = FlushScheduler(asyncio.get_running_loop())
            sender = FrameSender(
                ws, sink, OutboxLimits(**limits), on_failure, scheduler, on_drop=drops.append
            )
        ws.sender = sender
        made.append(sender)
        return sender, peer, failures

    build.kind = request.param  # type: ignore[attr-defined]
    yield build
    for sender in made:
        sender.close()


def frame(i: int | str) -> Frame:
    return Frame(str(i).encode(), is_text=True)


async def stall(sender: Sender, peer: Peer) -> None:
    """Leave a message "first" on its way and the peer no longer reading."""
    if isinstance(sender, FrameSender):
        assert isinstance(peer, SinkPeer)
        peer.stop_reading()
        # Padded to a frame of HIGH_WATER bytes (10 bytes of header): once it is written,
        # the transport holds as much as the sender lets it, and frames wait in its queue.
        sender.put(frame("first".ljust(HIGH_WATER - 10)))
        async with asyncio.timeout(5):
            while peer.backlog < HIGH_WATER:
                await asyncio.sleep(0)
    else:
        peer.stop_reading()
        sender.put(frame("first"))
        await asyncio.sleep(0)  # the sender task has it: in flight, blocked in send()


async def test_messages_arrive_in_order(make: Callable[..., Any]) -> None:
    sender, peer, failures = await make()
    for i in range(100):
        assert sender.put(frame(i))
    assert await peer.until(100) == [str(i) for i in range(100)]
    assert failures == [] and sender.depth == 0


async def test_evict_policy_reports_the_member_when_full(make: Callable[..., Any]) -> None:
    sender, peer, failures = await make(max_messages=3)
    await stall(sender, peer)
    assert [sender.put(frame(i)) for i in range(4)] == [True, True, True, False]
    assert failures == [(EVICTION_CLOSE_CODE, "outbox full: client too slow")]


async def test_drop_newest_counts_what_it_drops(make: Callable[..., Any]) -> None:
    sender, peer, failures = await make(max_messages=2, policy=OverflowPolicy.DROP_NEWEST)
    await stall(sender, peer)
    results = [sender.put(frame(i)) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert sender.dropped == 3 and failures == []
    assert sum(make.drops) == 3  # type: ignore[attr-defined]  # the runtime's count too
    peer.resume()
    assert await peer.until(3) == ["first", "0", "1"]


async def test_drop_oldest_keeps_the_newest(make: Callable[..., Any]) -> None:
    sender, peer, failures = await make(max_messages=2, policy=OverflowPolicy.DROP_OLDEST)
    await stall(sender, peer)
    assert all(sender.put(frame(i)) for i in range(5))
    assert sender.dropped == 3 and failures == []
    assert sum(make.drops) == 3  # type: ignore[attr-defined]  # the runtime's count too
    peer.resume()
    assert await peer.until(3) == ["first", "3", "4"]


async def test_byte_bound_counts_bytes_not_messages(make: Callable[..., Any]) -> None:
    # The frame sender counts what the (stalled) transport buffers too.
    stalled_backlog = HIGH_WATER if make.kind == "frames" else 0  # type: ignore[attr-defined]
    sender, peer, failures = await make(
        max_bytes=stalled_backlog + 140, policy=OverflowPolicy.DROP_NEWEST
    )
    await stall(sender, peer)
    assert sender.put(frame("a" * 60))
    assert not sender.put(frame("b" * 90))
    assert sender.put(frame("c" * 20))
    assert sender.dropped == 1 and failures == []


async def test_a_dead_peer_is_reported_once_and_never_raises(make: Callable[..., Any]) -> None:
    sender, peer, failures = await make()
    peer.gone = True
    sender.put(frame(0))
    async with asyncio.timeout(2):
        while not failures:
            await asyncio.sleep(0.01)
    assert len(failures) == 1 and failures[0][0] == 1006


async def test_no_progress_for_send_timeout_is_overdue(make: Callable[..., Any]) -> None:
    sender, peer, _ = await make(send_timeout=0.5)
    now = asyncio.get_running_loop().time()
    assert not sender.overdue(now)
    await stall(sender, peer)
    sender.put(frame(1))
    assert not sender.overdue(now)
    assert not sender.overdue(now + 0.2)
    assert sender.overdue(now + 1.0)
    peer.resume()
    await peer.until(2)
    assert not sender.overdue(now + 2.0)


async def test_drain_waits_for_what_was_queued(make: Callable[..., Any]) -> None:
    sender, peer, _ = await make()
    await sender.drain()  # nothing queued: returns at once
    await stall(sender, peer)
    sender.put(frame(0))
    sender.put(frame(1))
    assert sender.pending
    waiter = asyncio.create_task(sender.drain())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    peer.resume()
    async with asyncio.timeout(2):
        await waiter
    assert await peer.until(3) == ["first", "0", "1"]


async def test_a_closed_sender_refuses(make: Callable[..., Any]) -> None:
    sender, peer, _ = await make()
    peer.stop_reading()
    sender.put(frame(0))
    sender.close()
    assert not sender.put(frame(1)) and sender.depth == 0 and sender.closed
    assert sender.ws.sender is None


def test_limits_are_validated() -> None:
    for bad in ({"max_messages": 0}, {"max_bytes": -1}, {"send_timeout": 0}, {"policy": "x"}):
        with pytest.raises(ConfigurationError, match="OutboxLimits"):
            OutboxLimits(**bad)
