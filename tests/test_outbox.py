"""The bounded outbox: overflow policies, byte bounds, dead peers never raise."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexios.websockets.outbox import EVICTION_CLOSE_CODE, Outbox, OutboxLimits, OverflowPolicy

pytestmark = pytest.mark.anyio


class FakeSocket:
    """Stands in for a WebSocket: records sends; a gate can hold them (a slow peer)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self._before_send: Any = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def _send(self, message: dict[str, Any]) -> None:
        await self.gate.wait()
        if self.fail:
            raise OSError("peer gone")
        self.sent.append(message)


def text(i: int) -> dict[str, Any]:
    return {"type": "websocket.send", "text": str(i)}


def make(sock: FakeSocket, **limits: Any) -> tuple[Outbox, list[tuple[int, str]]]:
    dead: list[tuple[int, str]] = []
    outbox = Outbox(sock, OutboxLimits(**limits), lambda _o, code, why: dead.append((code, why)))  # type: ignore[arg-type]
    return outbox, dead


async def drained(outbox: Outbox, sock: FakeSocket, count: int) -> None:
    async with asyncio.timeout(2):
        while len(sock.sent) < count:
            await asyncio.sleep(0)


async def test_messages_are_sent_in_order_by_one_task() -> None:
    sock = FakeSocket()
    outbox, dead = make(sock)
    for i in range(100):
        assert outbox.put(text(i), 1)
    await drained(outbox, sock, 100)
    assert [m["text"] for m in sock.sent] == [str(i) for i in range(100)]
    assert dead == [] and len(outbox) == 0 and outbox.queued_bytes == 0
    outbox.close()


async def test_evict_policy_reports_the_member_when_full() -> None:
    sock = FakeSocket()
    sock.gate.clear()  # the peer stops reading
    outbox, dead = make(sock, max_messages=3)
    assert outbox.put(text(0), 1)
    await asyncio.sleep(0)  # "0" is in flight
    assert all(outbox.put(text(i), 1) for i in range(1, 4))
    assert not outbox.put(text(99), 1)
    assert dead == [(EVICTION_CLOSE_CODE, "outbox full: client too slow")]


async def test_byte_bound_counts_bytes_not_messages() -> None:
    sock = FakeSocket()
    sock.gate.clear()
    outbox, dead = make(sock, max_bytes=100, policy=OverflowPolicy.DROP_NEWEST)
    assert outbox.put(text(0), 60)
    await asyncio.sleep(0)  # first message in flight
    assert outbox.put(text(1), 60)
    assert not outbox.put(text(2), 60)
    assert outbox.queued_bytes == 60 and outbox.dropped == 1 and dead == []


async def test_drop_oldest_keeps_the_newest() -> None:
    sock = FakeSocket()
    sock.gate.clear()
    outbox, dead = make(sock, max_messages=2, policy=OverflowPolicy.DROP_OLDEST)
    outbox.put(text(0), 1)
    await asyncio.sleep(0)  # "0" is in flight
    for i in range(1, 6):
        assert outbox.put(text(i), 1)
    assert outbox.dropped == 3
    sock.gate.set()
    await drained(outbox, sock, 3)
    assert [m["text"] for m in sock.sent] == ["0", "4", "5"]
    assert dead == []


async def test_a_dead_peer_is_reported_once_and_never_raises() -> None:
    sock = FakeSocket(fail=True)
    outbox, dead = make(sock)
    outbox.put(text(0), 1)
    async with asyncio.timeout(2):
        while not dead:
            await asyncio.sleep(0)
    assert dead[0][0] == 1006 and "peer gone" in dead[0][1]


async def test_overdue_measures_the_send_in_progress() -> None:
    sock = FakeSocket()
    sock.gate.clear()
    outbox, _ = make(sock, send_timeout=0.5)
    loop = asyncio.get_running_loop()
    assert not outbox.overdue(loop.time())
    outbox.put(text(0), 1)
    await asyncio.sleep(0)
    assert not outbox.overdue(loop.time())
    assert outbox.overdue(loop.time() + 1)


async def test_closed_outbox_refuses_and_cancels_its_sender() -> None:
    sock = FakeSocket()
    sock.gate.clear()
    outbox, _ = make(sock)
    outbox.put(text(0), 1)
    await asyncio.sleep(0)
    outbox.close()
    assert not outbox.put(text(1), 1) and len(outbox) == 0


def test_limits_validate_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        OutboxLimits(max_messages=0)
    with pytest.raises(ValueError):
        OutboxLimits(send_timeout=0)
    monkeypatch.setenv("NEXIOS_OUTBOX_MAX_BYTES", "1234")
    monkeypatch.setenv("NEXIOS_OUTBOX_POLICY", "drop_oldest")
    limits = OutboxLimits.from_env()
    assert limits.max_bytes == 1234 and limits.policy is OverflowPolicy.DROP_OLDEST
    monkeypatch.setenv("NEXIOS_SEND_TIMEOUT", "soon")
    from nexios.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="NEXIOS_"):
        OutboxLimits.from_env()


async def test_drained_waits_for_what_was_queued_and_the_socket_hook_follows_it() -> None:
    sock = FakeSocket()
    sock.gate.clear()
    outbox, _ = make(sock)
    await outbox.drained()  # nothing queued: returns at once
    outbox.put(text(0), 1)
    outbox.put(text(1), 1)
    assert sock._before_send == outbox.drained  # a direct send would wait for these
    waiter = asyncio.create_task(outbox.drained())
    await asyncio.sleep(0)
    assert not waiter.done()
    sock.gate.set()
    async with asyncio.timeout(2):
        await waiter
    assert [m["text"] for m in sock.sent] == ["0", "1"]
    assert sock._before_send is None
