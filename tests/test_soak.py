"""Soak: thousands of connect/join/leave cycles, every exit kind, nothing left behind.

Each cycle joins a group on a real ``nexios run`` server and leaves it one way: a normal
close, an abrupt TCP reset, a stalled reader evicted by its bound, a handler crash, or a
limit violation. Afterwards the server's open sockets, groups, members, presence and
task count are back at their baseline, and its RSS grew little.

``NEXIOS_SOAK_CYCLES`` sets the count (default 2,000, about 20 s here).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.support.raw_socket import open_raw_websocket, reset
from tests.support.server import Server, serve

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

CYCLES = int(os.environ.get("NEXIOS_SOAK_CYCLES", "2000"))
WORKERS = 8
GROUPS = 4
KINDS = ("normal", "reset", "evicted", "crash", "limit")
OUTBOX_MAX_BYTES = 256 * 1024


def _raw_join(port: int, path: str) -> socket.socket:
    """Join with a bare socket (nothing reads unless we do); return after ``joined``."""
    sock, rest = open_raw_websocket(port, path)
    while len(rest) < 8:
        rest += sock.recv(8 - len(rest))
    assert rest == b"\x81\x06joined", rest
    return sock


async def _cycle(server: Server, http: httpx.AsyncClient, index: int, kind: str) -> None:
    group = f"g{index % GROUPS}"
    if kind in ("reset", "evicted"):
        if kind == "evicted":
            group = f"evict-{index}"  # its own group: the flood reaches no one else
        sock = await asyncio.to_thread(_raw_join, server.port, f"/room/{group}?n={index}")
        if kind == "evicted":
            reply = (await http.post(f"/debug/flood/{group}?count=200&size=32768")).json()
            assert reply["members"] == 0, reply  # evicted before the flood ended
        reset(sock)
        return
    async with connect(server.ws_url(f"/room/{group}?n={index}"), max_queue=None) as ws:
        assert await ws.recv() == "joined"
        if kind == "normal":
            return
        await ws.send("crash" if kind == "crash" else "x" * (70 * 1024))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            expected = 1011 if kind == "crash" else 1009
            assert closed.rcvd is not None and closed.rcvd.code == expected, kind


async def _run_cycles(server: Server, http: httpx.AsyncClient, start: int, count: int) -> None:
    queue = iter(range(start, start + count))

    async def worker() -> None:
        for index in queue:
            await _cycle(server, http, index, KINDS[index % len(KINDS)])

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def _counts(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get("/debug/counts")).json()  # type: ignore[no-any-return]


async def _settled(http: httpx.AsyncClient, baseline_tasks: int) -> dict[str, Any]:
    """Poll until nothing is left open (bounded); the last counts."""
    deadline = time.monotonic() + 15
    while True:
        counts = await _counts(http)
        done = (
            counts["open"] == counts["clients"] == counts["closing"] == 0
            and counts["groups"] == counts["channels"] == counts["members"] == 0
            and counts["tasks"] <= baseline_tasks
        )
        if done or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


async def test_every_exit_kind_returns_to_baseline(record_property: Any) -> None:
    env = {"NEXIOS_OUTBOX_MAX_BYTES": str(OUTBOX_MAX_BYTES), "NEXIOS_SEND_TIMEOUT": "2"}
    with serve(
        "tests.support.security_app:room_app", env=env, args=["--log-level", "warning"]
    ) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            await _run_cycles(server, http, 0, 10 * len(KINDS))  # warm-up: every kind
            baseline = await _settled(http, 10**6)
            started = time.monotonic()
            await _run_cycles(server, http, 10_000, CYCLES)
            elapsed = time.monotonic() - started
            after = await _settled(http, baseline["tasks"])
            presence = [
                (await http.get(f"/debug/presence/g{g}")).json()["members"] for g in range(GROUPS)
            ]
            peak = (await http.get("/debug/peak")).json()
        assert server.process.poll() is None

    growth = after["rss"] - baseline["rss"]
    figures = {
        "cycles": CYCLES,
        "seconds": round(elapsed, 1),
        "cycles_per_second": round(CYCLES / elapsed),
        "tasks_baseline": baseline["tasks"],
        "tasks_after": after["tasks"],
        "rss_baseline_mib": round(baseline["rss"] / 2**20, 1),
        "rss_growth_kib": round(growth / 1024),
        "evictions": peak["evictions"],
    }
    record_property("soak", figures)
    print(f"\nsoak figures: {figures}")
    assert (after["open"], after["clients"], after["closing"]) == (0, 0, 0), after
    assert (after["groups"], after["channels"], after["members"]) == (0, 0, 0), after
    assert after["tasks"] <= baseline["tasks"], (baseline, after)
    assert presence == [0] * GROUPS
    evicted_cycles = sum(1 for i in range(10_000, 10_000 + CYCLES) if KINDS[i % 5] == "evicted")
    assert peak["evictions"] == evicted_cycles + 10  # the warm-up's 10 too
    assert peak["peak_bytes"] <= OUTBOX_MAX_BYTES
    # Small relative to what went through: allocator slack, not per-connection leftovers.
    assert growth < 20 * 2**20 + CYCLES * 1024, figures
