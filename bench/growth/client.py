"""The growth client: one picows process grows one nexios process to N members.

``python -m bench.growth.client '<json spec>'`` runs the phases below against
``bench.growth.app`` and talks to ``bench.growth.run`` in JSON lines. At each *mark*
(``baseline``, ``connected``, ``joined``, ``idle``) it waits for a line on stdin, so
the runner can read the server's RSS, CPU and Redis counters at rest.

1. 20 warm-up members join and leave (imports, first allocations); mark ``baseline``.
2. connect N sockets, ``connect_batch`` handshakes in flight: connects per second;
   mark ``connected``.
3. every member sends ``j``, ``join_batch`` in flight; the server replies with the time
   ``add_channel_to_group`` took; mark ``joined``, then ``idle`` (the runner watches
   the idle process for a while: presence heartbeats, sweeps).
4. ``presence(group)`` timed in the server, ``presence_calls`` times.
5. one broadcast at a time to the group ``all`` (``group`` mode ``one``): the time until
   the last member has it, ``broadcasts`` times (after 3 warm-up broadcasts).
6. every member sends ``l``: leave times; the server's GC pauses; all sockets close.

``groups`` mode ``one``: every member joins ``all``; ``each``: member *i* joins its own
group ``g<i>`` (N groups of one member; no broadcast phase).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

_TEXT = WSMsgType.TEXT


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def mark(name: str, **fields: Any) -> None:
    """Tell the runner where we are and wait until it has taken its readings."""
    emit(name, **fields)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


class Member(WSListener):  # type: ignore[misc]
    """A member: replies ``j``/``l`` land in ``replies``; broadcasts are counted."""

    replies: asyncio.Queue[tuple[str, int]]
    broadcast_copies: dict[int, int]
    broadcast_done: asyncio.Queue[tuple[int, int]]
    group_size = 0

    def __init__(self) -> None:
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if data[:2] in (b"j ", b"l "):
            self.replies.put_nowait((data[:1].decode(), int(data[2:])))
            return
        seq, sent, _ = data.split(b" ", 2)
        number = int(seq)
        copies = self.broadcast_copies[number] = self.broadcast_copies.get(number, 0) + 1
        if copies == self.group_size:
            self.broadcast_done.put_nowait((number, time.monotonic_ns() - int(sent)))


class Control(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            self.answers.put_nowait(frame.get_payload_as_bytes())


def summary(values: list[int], scale: float = 1e-3) -> dict[str, float]:
    """p50/p99/max/mean of ``values`` (ns), in ``scale`` units (µs by default)."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * scale

    return {
        "p50": at(0.5),
        "p99": at(0.99),
        "max": ordered[-1] * scale,
        "mean": sum(ordered) / len(ordered) * scale,
    }


async def connect(url: str, count: int, batch: int) -> list[WSTransport]:
    transports: list[WSTransport] = []
    for start in range(0, count, batch):
        pairs = await asyncio.gather(
            *(ws_connect(Member, url.format(i=i)) for i in range(start, min(count, start + batch)))
        )
        transports.extend(transport for transport, _ in pairs)
    return transports


async def request_all(transports: list[WSTransport], command: bytes, batch: int) -> list[int]:
    """Send ``command`` on every socket, ``batch`` in flight; the server's timings."""
    replies = Member.replies
    timings: list[int] = []
    for start in range(0, len(transports), batch):
        chunk = transports[start : start + batch]
        for transport in chunk:
            transport.send(_TEXT, command)
        for _ in chunk:
            _kind, ns = await asyncio.wait_for(replies.get(), 60)
            timings.append(ns)
    return timings


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    base, count = spec["url"], spec["members"]
    one_group = spec["groups"] == "one"
    Member.replies = asyncio.Queue()
    Member.broadcast_copies = {}
    Member.broadcast_done = asyncio.Queue()
    Member.group_size = count
    result: dict[str, Any] = {"members": count, "groups": spec["groups"]}

    warm = await connect(base + "/m/warm", 20, 20)
    await request_all(warm, b"j", 20)
    await request_all(warm, b"l", 20)
    for transport in warm:
        transport.disconnect()
    await asyncio.sleep(0.2)
    await mark("baseline")

    path = "/m/all" if one_group else "/m/g{i}"
    began = time.perf_counter()
    members = await connect(base + path, count, spec["connect_batch"])
    result["connect_seconds"] = time.perf_counter() - began
    result["connects_per_s"] = count / result["connect_seconds"]
    await mark("connected")

    began = time.perf_counter()
    joins = await request_all(members, b"j", spec["join_batch"])
    result["join_seconds"] = time.perf_counter() - began
    result["joins_per_s"] = count / result["join_seconds"]
    result["join_us"] = summary(joins)
    await mark("joined")
    await mark("idle")

    control, listener = await ws_connect(Control, base + "/ctl")
    group = "all" if one_group else "g0"
    control.send(_TEXT, f"presence {group} {spec['presence_calls']}".encode())
    answer = json.loads(await asyncio.wait_for(listener.answers.get(), 120))
    result["presence_ms"] = summary(answer["ns"], 1e-6)
    result["presence_members"] = answer["members"]

    if one_group:
        result["broadcast_ms"] = await broadcasts(base, spec)

    began = time.perf_counter()
    leaves = await request_all(members, b"l", spec["join_batch"])
    result["leave_seconds"] = time.perf_counter() - began
    result["leave_us"] = summary(leaves)
    control.send(_TEXT, b"gc")
    pauses = json.loads(await asyncio.wait_for(listener.answers.get(), 30))
    result["gc"] = {
        gen: {"count": count, "total_ms": total / 1e6, "max_ms": longest / 1e6}
        for gen, (count, total, longest) in pauses.items()
    }
    control.disconnect()
    for transport in members:
        transport.disconnect()
    await asyncio.sleep(0.2)
    return result


async def broadcasts(base: str, spec: dict[str, Any]) -> dict[str, float]:
    publisher, _ = await ws_connect(Control, base + "/pub")
    latencies: list[int] = []
    padding = b"x" * spec["payload"]
    for number in range(1, spec["broadcasts"] + 4):
        publisher.send(_TEXT, b"%d %d %s" % (number, time.monotonic_ns(), padding))
        while True:
            done, latency = await asyncio.wait_for(Member.broadcast_done.get(), 60)
            if done == number:
                break
        Member.broadcast_copies.pop(number, None)
        if number > 3:
            latencies.append(latency)
    publisher.disconnect()
    return summary(latencies, 1e-6)


async def main(spec: dict[str, Any]) -> None:
    emit("result", **(await run(spec)))


if __name__ == "__main__":
    uvloop.run(main(json.loads(sys.argv[1])))
