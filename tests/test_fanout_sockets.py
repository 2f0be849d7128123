"""Fan-out over real sockets: a stalled and a vanished member cannot hold up a group.

100 members on a real uvicorn: 98 healthy (one of them publishes), one that completed
the handshake and never reads, one that vanished without a close frame (TCP reset).
Every healthy member must receive every one of 400 messages of 16 KB, in order, the
publisher stays connected, and the stalled member's buffered bytes never exceed its
bound. Runs on both fan-out paths: the portable ASGI one and nexios's frame-once protocol.

The publisher keeps at most 4 messages (64 KB) ahead of the slowest healthy reader,
which the readers' socket buffers hold: however slow a busy machine makes this test's
readers, the server never sees them as stalled, so only the stalled member is evicted.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.support.raw_socket import open_raw_websocket, reset
from tests.support.server import serve

MEMBERS = 100
MESSAGES = 400
SIZE = 16 * 1024
MAX_BYTES = 1024 * 1024
WINDOW = 4  # messages the publisher may be ahead of the slowest healthy reader


class Progress:
    """How many healthy members have each message; an event once all of them have it."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.holders = [0] * MESSAGES
        self.everyone = [asyncio.Event() for _ in range(MESSAGES)]

    def got(self, seq: int) -> None:
        self.holders[seq] += 1
        if self.holders[seq] == self.members:
            self.everyone[seq].set()


async def _healthy_member(
    url: str, counts: list[int], index: int, ready: asyncio.Event, progress: Progress
) -> None:
    async with websockets.connect(url, max_size=None, max_queue=None) as ws:
        assert await ws.recv() == "joined"
        ready.set()
        while counts[index] < MESSAGES:
            message = await ws.recv()
            assert len(message) == SIZE and int(message[:8]) == counts[index]
            progress.got(counts[index])
            counts[index] += 1


async def _report_after_eviction(http: httpx.AsyncClient) -> dict[str, Any]:
    """The server's report once it has evicted someone (the stalled member must be)."""
    deadline = time.monotonic() + 30
    while True:
        report: dict[str, Any] = (await http.get("/debug/big")).json()
        if report["evictions"] or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "auto"], ids=["portable", "frame-once"])
@pytest.mark.anyio
async def test_stalled_and_vanished_members_do_not_stall_the_group(ws_impl: str) -> None:
    env = {
        "NEXIOS_OUTBOX_MAX_BYTES": str(MAX_BYTES),
        "NEXIOS_SEND_TIMEOUT": "2",
    }
    with serve("tests.support.fanout_app:app", env=env, args=["--ws", ws_impl]) as server:
        url = server.ws_url("/room/big")
        healthy = MEMBERS - 2
        counts = [0] * healthy
        readies = [asyncio.Event() for _ in range(healthy)]
        progress = Progress(healthy)
        tasks = [
            asyncio.create_task(_healthy_member(url, counts, i, readies[i], progress))
            for i in range(healthy - 1)
        ]
        for ready in readies[: healthy - 1]:
            await asyncio.wait_for(ready.wait(), 20)
        stalled, _ = open_raw_websocket(server.port, "/room/big")
        vanished, _ = open_raw_websocket(server.port, "/room/big")
        reset(vanished)  # RST, no close frame
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            async with websockets.connect(url, max_size=None, max_queue=None) as sender:
                assert await sender.recv() == "joined"

                async def publish() -> None:
                    for i in range(MESSAGES):
                        if i >= WINDOW:
                            await progress.everyone[i - WINDOW].wait()
                        await sender.send(f"{i:08d}".ljust(SIZE, "x"))

                async def own_copies() -> None:
                    while counts[-1] < MESSAGES:
                        assert int((await sender.recv())[:8]) == counts[-1]
                        progress.got(counts[-1])
                        counts[-1] += 1

                await asyncio.wait_for(asyncio.gather(publish(), own_copies(), *tasks), 90)
                assert counts == [MESSAGES] * healthy
                # The publisher is still connected and served.
                await sender.send("still here")
                assert (await asyncio.wait_for(sender.recv(), 10)) == "still here"
                report = await _report_after_eviction(http)
        stalled.close()
        assert report["frame_once"] is (ws_impl == "auto"), report
        assert report["evictions"] >= 1, report
        assert "evicted" in report["leave_reasons"], report
        assert report["peak_queued_bytes"] <= MAX_BYTES, report
        assert "Evicting channel" in server.log()


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "auto"], ids=["portable", "frame-once"])
@pytest.mark.anyio
async def test_broadcasts_and_direct_sends_keep_their_order(ws_impl: str) -> None:
    with serve("tests.support.fanout_app:app", args=["--ws", ws_impl]) as server:
        async with websockets.connect(server.ws_url("/ordered/o")) as ws:
            for round_ in ("a", "b"):
                await ws.send(round_)
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
                assert got == [f"{round_}-0", f"{round_}-1", f"{round_}-2", f"{round_}-direct"]


def _read_frames(sock: socket.socket, buffered: bytes, until: bytes) -> list[bytes]:
    """Payloads of the server's (unmasked, unfragmented) frames, up to ``until``."""
    payloads: list[bytes] = []
    data = buffered
    sock.settimeout(60)
    while True:
        while len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(data[2:10], "big"), 10
            if len(data) < start + length:
                break
            payloads.append(data[start : start + length])
            data = data[start + length :]
            if payloads[-1] == until:
                return payloads
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the slow member's connection"
        data += chunk


DROPS = 900
DROP_SIZE = 32 * 1024  # 29 MB in all: more than the kernel's socket buffers hold


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "auto"], ids=["portable", "frame-once"])
@pytest.mark.anyio
async def test_drop_policies_keep_a_slow_member_and_count_every_drop(
    ws_impl: str, policy: str
) -> None:
    env = {
        "NEXIOS_OUTBOX_POLICY": policy,
        "NEXIOS_OUTBOX_MAX_MESSAGES": "32",
        "NEXIOS_OUTBOX_MAX_BYTES": str(512 * 1024),
        "NEXIOS_SEND_TIMEOUT": "60",  # the slow member pauses; it must not look dead
    }
    with serve("tests.support.fanout_app:app", env=env, args=["--ws", ws_impl]) as server:
        slow, early = open_raw_websocket(server.port, "/room/drops", receive_buffer=None)
        async with (
            httpx.AsyncClient(base_url=server.http_url) as http,
            websockets.connect(server.ws_url("/send/drops"), max_size=None) as publisher,
        ):
            for i in range(DROPS):
                await publisher.send(f"{i:06d}".ljust(DROP_SIZE, "x"))
            await publisher.close()  # the server has handled every frame before it closes
            during = (await http.get("/debug/drops")).json()
            assert during["evictions"] == 0 and during["dropped"] > 0, during
            # The slow member reads again; once its queue is empty, a marker can't be dropped.
            reading = asyncio.create_task(asyncio.to_thread(_read_frames, slow, early, b"end"))
            async with asyncio.timeout(30):
                while (await http.get("/debug/drops")).json()["queued_messages"]:
                    await asyncio.sleep(0.05)
            async with websockets.connect(server.ws_url("/send/drops")) as marker:
                await marker.send("end")
            payloads = await asyncio.wait_for(reading, 30)
            after = (await http.get("/debug/drops")).json()
        slow.close()
    assert payloads[0] == b"joined" and payloads[-1] == b"end"
    numbers = [int(p[:6]) for p in payloads if len(p) == DROP_SIZE]
    assert numbers == sorted(set(numbers)), "duplicates or inversions"
    assert len(numbers) + after["dropped"] == DROPS, (len(numbers), after)
    assert after["evictions"] == 0
    if policy == "drop_newest":
        assert numbers == list(range(len(numbers)))  # the oldest kept, the newest dropped
    else:
        assert numbers[-1] == DROPS - 1  # the newest kept
        assert numbers != list(range(len(numbers)))


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "auto"], ids=["portable", "frame-once"])
@pytest.mark.anyio
async def test_an_evicted_member_that_reads_again_gets_a_1013_close_frame(ws_impl: str) -> None:
    env = {"NEXIOS_OUTBOX_MAX_BYTES": str(1024 * 1024), "NEXIOS_SEND_TIMEOUT": "60"}
    with serve("tests.support.fanout_app:app", env=env, args=["--ws", ws_impl]) as server:
        slow, early = open_raw_websocket(server.port, "/room/evict", receive_buffer=None)
        async with (
            httpx.AsyncClient(base_url=server.http_url) as http,
            websockets.connect(server.ws_url("/send/evict"), max_size=None) as publisher,
        ):
            for i in range(DROPS):
                await publisher.send(f"{i:06d}".ljust(DROP_SIZE, "x"))
                if i % 50 == 49 and (await http.get("/debug/evict")).json()["evictions"]:
                    break
            assert (await http.get("/debug/evict")).json()["evictions"] == 1
            tail = await asyncio.to_thread(_read_until_closed, slow, early)
        slow.close()
    assert tail[:1] == b"\x88" and int.from_bytes(tail[2:4], "big") == 1013, tail[:40]


def _read_until_closed(sock: socket.socket, data: bytes) -> bytes:
    """Read frames until a close frame; return it (its first bytes)."""
    sock.settimeout(30)
    while True:
        while len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(data[2:10], "big"), 10
            if len(data) < start + length:
                break
            if data[0] & 0x0F == 0x8:
                return data[: start + length]
            data = data[start + length :]
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection ended without a close frame"
        data += chunk
