"""Adversarial probes against a real ``nexios run``, bounded for CI (issue 11: 3 and 5).

Each runs on every wire (see ``tests/support/server.py``): a frame flood or a slowloris
must cost the attacker its connection and the server a bounded amount of memory, while
healthy clients keep every message. Sizes are small here; ``python -m bench.probes``
runs the full-size versions and prints the figures in ``docs/security.md``.
``NEXIOS_PROBE_SECONDS`` lengthens the floods.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from tests.support.attacks import endless_header, healthy_connect, run_flood, slow_socket
from tests.support.server import Server, serve

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SECONDS = float(os.environ.get("NEXIOS_PROBE_SECONDS", "3"))
HEALTHY = 5
RSS_BOUND_MIB = 32


def _base(server: Server) -> str:
    return f"ws://{server.host}:{server.port}"


def _rss(server: Server) -> int:
    with open(f"/proc/{server.pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("kind", ["continuation", "pings"])
async def test_a_frame_flood_costs_the_attacker_not_the_healthy_clients(kind: str) -> None:
    with serve("tests.support.security_app:room_app") as server:
        result = await run_flood(server.port, kind, SECONDS, HEALTHY, lambda: _rss(server))
        print(json.dumps(result))
        assert server.process.poll() is None
    assert result["healthy_dropped"] == 0 and result["healthy_lost"] == 0, result
    assert result["healthy_round_trips"] >= HEALTHY * SECONDS * 5, result  # they kept going
    assert result["rss_peak_mib"] - result["rss_before_mib"] < RSS_BOUND_MIB, result
    ends = result["attacker_connections"]
    if kind == "continuation":
        assert ends.get("1009", 0) >= 1, result  # too many frames for one message
    else:  # closed 1008 (too many pings a second), or no longer read until it reads
        assert ends.get("closed by the server", 0) + ends.get("server stopped reading", 0), result


async def test_slowloris_is_timed_out_and_cannot_lock_healthy_clients_out() -> None:
    env = {"NEXIOS_HANDSHAKE_TIMEOUT": "2", "NEXIOS_MAX_CONNECTIONS": "100"}
    with serve("tests.support.security_app:room_app", env=env) as server:
        stop = asyncio.Event()
        closed: list[float] = []
        began = time.monotonic()
        slow = [
            asyncio.create_task(slow_socket(server.port, stop, closed, began)) for _ in range(150)
        ]
        await asyncio.sleep(0.5)  # every slot taken by a head that never ends
        healthy = await asyncio.gather(*(healthy_connect(_base(server)) for _ in range(10)))
        await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - began)))
        closed_in_time = len(closed)
        stop.set()
        await asyncio.gather(*slow)
        log = server.log()
    assert healthy == [True] * 10
    assert closed_in_time == 150, closed_in_time  # dropped for room, or timed out (2 s)
    assert "did not send a request head within 2 s" in log or "dropping the oldest" in log


async def test_an_endless_header_is_431_without_growing_the_server() -> None:
    with serve("tests.support.security_app:room_app") as server:
        before = _rss(server)
        _sent, status = await asyncio.wait_for(endless_header(server.port, 2.0), 10)
        growth = (_rss(server) - before) / 2**20
        assert await healthy_connect(_base(server))
    assert status == 431  # refused after 16 KiB, not buffered for 2 s
    assert growth < 8, growth
