"""The load generator: picows (Cython WebSocket client) on uvloop, one process.

``python -m bench.client '<json spec>'`` runs one measurement against running servers
and talks to ``bench.run`` over stdout, one JSON object per line:

- ``{"event": "start"}`` / ``{"event": "stop"}`` bracket the measured window (the
  runner samples both processes' CPU time there); after ``start`` the client waits for
  a line on stdin, so the window cannot begin before the runner's first sample, however
  late a busy machine lets the runner read;
- ``{"event": "baseline"}`` / ``{"event": "connected"}`` (memory): the client then
  waits for a line on stdin, so the runner can read the server's RSS at rest;
- ``{"event": "result", ...}`` last, with ``client_cpu``: this process's CPU time over
  the window, from ``time.process_time()`` (``/proc`` counts in 10 ms ticks, too coarse
  for a 0.2 s window in which the client does little).

Callbacks are synchronous picows listeners, so the client spends little per frame;
the runner reports its CPU so that a saturated client would be visible.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

_CONNECT_BATCH = 100
_TEXT = WSMsgType.TEXT
ECHO_PAYLOAD = b"nexios bench echo payload 0123456789abcdef"
JSON_PAYLOAD = json.dumps(
    {"type": "chat", "id": 12345, "room": "lobby", "text": "hello there", "tags": ["a", "b"]}
).encode()


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def wait_for_runner() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def start_window() -> None:
    """Open the measured window once the runner has taken its first CPU sample."""
    emit("start")
    await wait_for_runner()


class EchoClient(WSListener):  # type: ignore[misc]
    """Closed loop: each reply is answered with the next request at once."""

    counter = [0]
    payload = ECHO_PAYLOAD

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            self.counter[0] += 1
            transport.send(_TEXT, self.payload)


class Idle(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport


class FanOut:
    """Counts copies per broadcast; a broadcast is done when all members have it."""

    def __init__(self, members: int, max_seq: int = 1 << 20) -> None:
        self.members = members
        self.reached = [0] * max_seq  # copies received, by sequence number
        self.done: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self.listeners: list[Member] = []

    def delivered(self) -> int:
        return sum(member.received for member in self.listeners)


class Member(WSListener):  # type: ignore[misc]
    """A group member. Frames on one connection arrive in broadcast order, so only the
    first one is parsed for its sequence number; later ones just count."""

    fanout: FanOut
    seq = 0
    received = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.fanout.listeners.append(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != _TEXT:
            return
        seq = self.seq
        if seq:
            seq += 1
        else:
            data = frame.get_payload_as_bytes()
            seq = int(data[: data.index(b" ")])
        self.seq = seq
        self.received += 1
        fanout = self.fanout
        reached = fanout.reached
        count = reached[seq] = reached[seq] + 1
        if count == fanout.members:
            # The send time travels in the payload; read it from the last copy.
            sent = int(frame.get_payload_as_bytes().split(b" ", 2)[1])
            fanout.done.put_nowait((seq, time.monotonic_ns() - sent))


def broadcast_payload(seq: int, size: int) -> bytes:
    head = b"%d %d " % (seq, time.monotonic_ns())
    return head + b"x" * max(0, size - len(head))


async def connect_many(url: str, count: int, factory: Any) -> list[WSTransport]:
    transports: list[WSTransport] = []
    for start in range(0, count, _CONNECT_BATCH):
        batch = min(_CONNECT_BATCH, count - start)
        pairs = await asyncio.gather(*(ws_connect(factory, url) for _ in range(batch)))
        transports.extend(transport for transport, _ in pairs)
    return transports


async def close_all(transports: list[WSTransport]) -> None:
    for transport in transports:
        transport.disconnect()
    await asyncio.sleep(0.05)


async def run_echo(spec: dict[str, Any]) -> dict[str, Any]:
    path = "/json" if spec["kind"] == "json" else "/echo"
    EchoClient.payload = JSON_PAYLOAD if spec["kind"] == "json" else ECHO_PAYLOAD
    transports = await connect_many(spec["urls"][0] + path, spec["conns"], EchoClient)
    for transport in transports:
        transport.send(_TEXT, EchoClient.payload)
    await asyncio.sleep(spec["warmup"])
    count = EchoClient.counter
    await start_window()
    begin, cpu, first = time.perf_counter(), time.process_time(), count[0]
    await asyncio.sleep(spec["duration"])
    elapsed, done = time.perf_counter() - begin, count[0] - first
    cpu = time.process_time() - cpu
    emit("stop")
    await close_all(transports)
    return {"rate": done / elapsed, "client_cpu": cpu / elapsed}


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    urls, members = spec["urls"], spec["members"]
    fanout = Member.fanout = FanOut(members)
    transports: list[WSTransport] = []
    for index, url in enumerate(urls):  # members split evenly across the servers
        share = members // len(urls) + (1 if index < members % len(urls) else 0)
        transports += await connect_many(url + "/member", share, Member)
    publisher, _ = await ws_connect(Idle, urls[0] + "/pub")
    result = await drive_fanout(publisher, fanout, spec)
    publisher.disconnect()
    await close_all(transports)
    return result


async def drive_fanout(
    publisher: WSTransport, fanout: FanOut, spec: dict[str, Any]
) -> dict[str, Any]:
    """Broadcast through ``publisher`` until every member is reached, then measure:
    latency (one at a time, or paced) and throughput (``window`` in flight)."""
    members = fanout.members
    size, seq = spec["payload"], 0

    async def one(timeout: float) -> int:
        nonlocal seq
        seq += 1
        publisher.send(_TEXT, broadcast_payload(seq, size))
        while True:
            done_seq, latency = await asyncio.wait_for(fanout.done.get(), timeout)
            if done_seq == seq:
                return latency

    # Members join after their handshake: broadcast until one reaches everybody.
    deadline = time.monotonic() + 60  # 5,000 joins take a while on a slow machine
    while True:
        try:
            await one(0.2)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"a broadcast never reached all {members} members") from None
    for _ in range(3):
        await one(10)

    latencies: list[int] = []
    paced = spec.get("paced_rate")
    if paced:
        # Latency at a steady rate: one broadcast every 1/rate s, whatever is in flight.
        first_paced = seq + 1
        interval = 1.0 / paced
        next_at = time.monotonic()
        for _ in range(spec["latency_count"]):
            seq += 1
            publisher.send(_TEXT, broadcast_payload(seq, size))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        while len(latencies) < spec["latency_count"]:
            done_seq, latency = await asyncio.wait_for(fanout.done.get(), 10)
            if done_seq >= first_paced:
                latencies.append(latency)
    else:
        # Latency: one broadcast at a time, until count or time runs out.
        stop_at = time.monotonic() + spec["latency_time"]
        while len(latencies) < spec["latency_count"] and time.monotonic() < stop_at:
            latencies.append(await one(10))

    # Throughput: keep `window` broadcasts in flight for `duration`.
    window = spec["window"]
    await start_window()
    begin, cpu, first = time.perf_counter(), time.process_time(), fanout.delivered()
    for _ in range(window):
        seq += 1
        publisher.send(_TEXT, broadcast_payload(seq, size))
    end_at = begin + spec["duration"]
    while time.perf_counter() < end_at:
        await asyncio.wait_for(fanout.done.get(), 10)
        seq += 1
        publisher.send(_TEXT, broadcast_payload(seq, size))
    elapsed, delivered = time.perf_counter() - begin, fanout.delivered() - first
    cpu = time.process_time() - cpu
    emit("stop")
    latencies.sort()
    return {
        "rate": delivered / elapsed,
        "p50_ms": _percentile(latencies, 0.50) / 1e6,
        "p99_ms": _percentile(latencies, 0.99) / 1e6,
        "broadcasts": len(latencies),
        "client_cpu": cpu / elapsed,
    }


def _percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return float(ordered[index])


async def run_memory(spec: dict[str, Any]) -> dict[str, Any]:
    url = spec["urls"][0] + "/echo"
    warm = await connect_many(url, 20, Idle)  # imports and first allocations
    await close_all(warm)
    emit("baseline")
    await wait_for_runner()
    transports = await connect_many(url, spec["conns"], Idle)
    emit("connected", conns=len(transports))
    await wait_for_runner()
    await close_all(transports)
    return {"conns": len(transports)}


async def main(spec: dict[str, Any]) -> None:
    runners = {"echo": run_echo, "json": run_echo, "fanout": run_fanout, "memory": run_memory}
    result = await runners[spec["kind"]](spec)
    emit("result", **result)


if __name__ == "__main__":
    uvloop.run(main(json.loads(sys.argv[1])))
