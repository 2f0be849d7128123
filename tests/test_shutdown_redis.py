"""SIGTERM during a busy maintenance loop on Redis: the server always exits in time.

Each round starts ``nexios run`` on Redis with members in many groups and a presence
heartbeat every 0.1 s (so a heartbeat is nearly always in flight), then sends SIGTERM
and measures how long the process takes to exit. A hang (the issue: a cancellation
swallowed inside redis-py's ``wait_for`` on Python 3.11) fails the round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROUNDS = 50 if os.environ.get("NEXIOS_HEAVY_TESTS") == "1" else 6
GRACE = 5.0  # --timeout-graceful-shutdown
BOUND = GRACE + 5.0  # uvicorn's grace, then our own bounded steps


async def test_sigterm_never_hangs_with_a_busy_redis_maintenance_loop() -> None:
    took: list[float] = []
    with RedisServer() as redis:
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_PRESENCE_TTL": "0.3"}
        for _ in range(ROUNDS):
            with serve(
                "tests.support.cluster_app:app",
                env=env,
                args=["--timeout-graceful-shutdown", str(GRACE)],
            ) as server:
                members = [await websockets.connect(server.ws_url("/many/150")) for _ in range(4)]
                for member in members:
                    await asyncio.wait_for(member.recv(), 20)
                server.process.send_signal(signal.SIGTERM)
                began = time.monotonic()
                try:
                    await asyncio.to_thread(server.process.wait, BOUND)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"no exit {BOUND}s after SIGTERM:\n{server.log()[-3000:]}")
                took.append(time.monotonic() - began)
                for member in members:
                    await member.close()
    print(f"\n{ROUNDS} SIGTERMs on Python {sys.version.split()[0]}: exit in max {max(took):.2f}s")
    assert max(took) < BOUND
