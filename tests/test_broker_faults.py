"""Redis goes away during a stream of saved broadcasts: nothing hangs, no silent gap.

Two server processes share a Redis that keeps an append-only file (as a production
Redis would, so history outlives the crash). A publisher POSTs a saved broadcast to
process A every 20 ms; a member on process B records what arrives. Mid-stream, Redis is
killed for 5 s and restarted (or frozen with SIGSTOP for 10 s). Every broadcast is
accounted for: refused with 503 (BackendUnavailableError: signalled) or delivered to the
member — live, or filled in by process B from history when its link came back — so the
member's sequence is contiguous without any recovery by the client (or a resync notice
says what was skipped). No request hangs and the member stays connected throughout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INTERVAL = 0.02


async def _stream(
    a_url: str,
    b_url: str,
    ws_url: str,
    fault: Callable[[], Any],
    heal: Callable[[], Any],
    outage: float,
) -> dict[str, Any]:
    received: dict[int, int] = {}  # n -> seq
    order: list[int] = []  # seqs in the order they arrived
    notices: list[dict[str, Any]] = []
    statuses: dict[int, int] = {}
    slowest = 0.0
    stop = asyncio.Event()
    async with websockets.connect(ws_url) as member, httpx.AsyncClient(timeout=10) as http:
        assert json.loads(await member.recv()) == {"joined": "f"}

        async def listen() -> None:
            while not stop.is_set() or len(received) < sum(s == 200 for s in statuses.values()):
                try:
                    message = json.loads(await asyncio.wait_for(member.recv(), 1.0))
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                if message.get("type") == "nexios.resync":
                    notices.append(message)
                    continue
                received[message["n"]] = message["seq"]
                order.append(message["seq"])

        async def publish(count: int, start: int) -> None:
            nonlocal slowest
            for n in range(start, start + count):
                began = time.monotonic()
                reply = await http.post(f"{a_url}/broadcast/f", json={"n": n})
                slowest = max(slowest, time.monotonic() - began)
                statuses[n] = reply.status_code
                if reply.status_code == 503:
                    assert (
                        "unreachable" in reply.json()["error"] or "Redis" in reply.json()["error"]
                    )
                await asyncio.sleep(INTERVAL)

        listener = asyncio.create_task(listen())
        await publish(50, 0)
        fault()
        fault_started = time.monotonic()
        outage_task = asyncio.create_task(publish(10_000, 50))
        await asyncio.sleep(outage)
        outage_task.cancel()
        await asyncio.gather(outage_task, return_exceptions=True)
        heal()
        healed = time.monotonic()

        async def both_connected() -> bool:
            for url in (a_url, b_url):
                state = (await http.get(f"{url}/health")).json()
                if not (state["connected"] and state["reconnects"] >= 1):
                    return False
            return True

        while not await both_connected():
            assert time.monotonic() - healed < 15, "layers did not reconnect within 15 s"
            await asyncio.sleep(0.05)
        reconnect_seconds = time.monotonic() - healed
        after = max(statuses) + 1
        await publish(50, after)
        stop.set()
        await asyncio.wait_for(listener, 10)
        # Recovery: ask process B for everything after the last contiguous seq seen.
        seqs = sorted(received.values())
        contiguous = 0
        for seq in seqs:
            if seq != contiguous + 1:
                break
            contiguous = seq
        page = (await http.get(f"{b_url}/history/f?since={contiguous}")).json()
        assert member.state.name == "OPEN"
    published = {n for n, status in statuses.items() if status == 200}
    refused = {n for n, status in statuses.items() if status == 503}
    live = published & set(received)
    return {
        "published": len(published),
        "refused_503": len(refused),
        "other_status": len(statuses) - len(published) - len(refused),
        "delivered_live": len(live),
        "missed_live": len(published - live),
        "history_after_gap": len(page["seqs"]),
        "history_complete": page["complete"],
        "reconnect_seconds": round(reconnect_seconds, 2),
        "slowest_request_seconds": round(slowest, 2),
        "outage_seconds": round(healed - fault_started, 2),
        "received_seqs": seqs,
        "recovered_seqs": page["seqs"],
        "arrival_order": order,
        "resync_notices": notices,
    }


def _check(report: dict[str, Any]) -> None:
    printable = {k: v for k, v in report.items() if not k.endswith("seqs")}
    print(f"\nbroker fault report: {printable}")
    assert report["other_status"] == 0
    assert report["refused_503"] > 0, "the outage was not signalled to the publisher"
    assert report["slowest_request_seconds"] < 3.5, "a broadcast hung during the outage"
    # Nothing published with success is lost: the member got every seq, once, in order
    # (process B filled what its link missed from history), with no notice needed.
    order = report["arrival_order"]
    assert order == list(range(1, len(order) + 1)), "duplicates, gaps or inversions"
    assert report["resync_notices"] == []
    assert report["missed_live"] == 0
    assert report["history_complete"]


@pytest.mark.parametrize("mode", ["kill-5s", "sigstop-10s"])
async def test_redis_outage_during_broadcasts(mode: str) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(durable=True))
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_PRESENCE_TTL": "3"}
        a = stack.enter_context(serve("tests.support.cluster_app:app", env=env))
        b = stack.enter_context(serve("tests.support.cluster_app:app", env=env))
        if mode == "kill-5s":
            fault, heal, outage = redis.kill, redis.restart, 5.0
        else:
            fault, heal, outage = redis.freeze, redis.thaw, 10.0
        report = await _stream(a.http_url, b.http_url, b.ws_url("/room/f"), fault, heal, outage)
        _check(report)
        assert "Redis" in a.log() or "redis" in a.log()
