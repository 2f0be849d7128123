"""The rooms load generator: one picows process on uvloop drives every member.

``python -m bench.rooms.client '<json spec>'`` connects ``rooms x members`` sockets
(member *j* of a room to server ``j % len(urls)``, so every room spans the processes),
waits until each has said it is in its room, then runs *steps*: for each step it sends
``rate`` messages a second in total, member after member in a fixed shuffled order
(each member once per ``members_total / rate`` seconds), for ``seconds``; then it waits
until every copy has arrived or none has for ``drain`` seconds.

A message is ``"<seq> <monotonic_ns at send> xxx..."``; a copy's latency is the
receive time minus that stamp (one process, one clock). Every copy is counted by
sequence number, so each step reports sent, expected (sent x room size), delivered,
duplicates, and p50/p99/max latency. Talks to ``bench.rooms.run`` over stdout, one JSON
object a line: ``ready``, then ``start``/``stop`` around each step (the runner reads
CPU times there), ``step`` with its figures, and ``done``.

Protocols: ``ws`` (plain text frames; the server sends ``joined`` once the member is in
the room) and ``socketio`` (Engine.IO v4 over WebSocket only, written here: answer the
open packet ``0{...}`` with a namespace CONNECT ``40{"room": ...}``, whose ``40`` reply
means joined; answer pings ``2`` with ``3``; messages are ``42["msg","<text>"]``).
"""

from __future__ import annotations

import array
import asyncio
import json
import random
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

_TEXT = WSMsgType.TEXT
_SIO_EVENT = b'42["msg","'
_SIO_TAIL = b'"]'


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Tally:
    """Copies received per sequence number, and latencies per step (in microseconds)."""

    def __init__(self, capacity: int) -> None:
        self.copies = bytearray(capacity)
        self.step_first_seq: list[int] = []
        self.latencies: list[array.array[int]] = []
        self.received = 0
        self.overflow = 0  # copies beyond 255 of one message: duplicates, at least

    def begin_step(self, first_seq: int) -> None:
        self.step_first_seq.append(first_seq)
        self.latencies.append(array.array("q"))

    def record(self, seq: int, sent_ns: int, now_ns: int) -> None:
        count = self.copies[seq]
        if count == 255:
            self.overflow += 1
        else:
            self.copies[seq] = count + 1
        self.received += 1
        step = len(self.step_first_seq) - 1
        while seq < self.step_first_seq[step]:
            step -= 1
        self.latencies[step].append((now_ns - sent_ns) // 1000)


class Member(WSListener):  # type: ignore[misc]
    tally: Tally
    joined: list[int]  # shared counter
    protocol = "ws"

    def __init__(self, room: str) -> None:
        self.room = room
        self.transport: WSTransport | None = None
        self.is_joined = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != _TEXT:
            return
        now = time.monotonic_ns()
        data = frame.get_payload_as_bytes()
        if self.protocol == "socketio":
            if data.startswith(_SIO_EVENT):
                data = data[len(_SIO_EVENT) : -len(_SIO_TAIL)]
            elif data[:1] == b"2":
                transport.send(_TEXT, b"3")
                return
            elif data[:1] == b"0":
                transport.send(_TEXT, b'40{"room":"%s"}' % self.room.encode())
                return
            elif data.startswith(b"40"):
                self._mark_joined()
                return
            else:
                return
        elif data == b"joined":
            self._mark_joined()
            return
        seq, sent, _ = data.split(b" ", 2)
        self.tally.record(int(seq), int(sent), now)

    def _mark_joined(self) -> None:
        if not self.is_joined:
            self.is_joined = True
            self.joined[0] += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.is_joined:
            self.is_joined = False
            self.joined[0] -= 1


def message(seq: int, size: int, socketio: bool) -> bytes:
    text = b"%d %d " % (seq, time.monotonic_ns())
    text += b"x" * max(1, size - len(text))
    return _SIO_EVENT + text + _SIO_TAIL if socketio else text


def percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))])


async def connect_all(spec: dict[str, Any], members: list[Member]) -> float:
    """Open every socket (``connect_batch`` handshakes at a time); wait until all joined."""
    urls, batch = spec["urls"], spec["connect_batch"]
    began = time.perf_counter()
    deadline = time.monotonic() + spec["connect_timeout"]

    async def open_one(index: int, member: Member) -> None:
        url = urls[index % len(urls)] + spec["path"].format(room=member.room)
        while True:
            try:
                await ws_connect(lambda: member, url, websocket_handshake_timeout=30)
                return
            except (TimeoutError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not connect {url}: {exc!r}") from exc
                await asyncio.sleep(0.2)

    for start in range(0, len(members), batch):
        await asyncio.gather(
            *(open_one(i, members[i]) for i in range(start, min(len(members), start + batch)))
        )
    while Member.joined[0] < len(members):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {Member.joined[0]} of {len(members)} members joined")
        await asyncio.sleep(0.05)
    return time.perf_counter() - began


async def run_step(
    spec: dict[str, Any], order: list[Member], rate: float, seconds: float, first_seq: int
) -> tuple[dict[str, Any], int]:
    tally, size = Member.tally, spec["payload"]
    socketio = spec["protocol"] == "socketio"
    room_size = spec["members"]
    tally.begin_step(first_seq)
    emit("start")
    began = time.perf_counter()
    sent, max_lag = 0, 0.0
    while True:
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            break
        due = min(int(elapsed * rate) + 1, int(seconds * rate))
        if due - sent > 1:
            max_lag = max(max_lag, (due - sent - 1) / rate)
        while sent < due:
            member = order[(first_seq + sent) % len(order)]
            if member.transport is not None:
                member.transport.send(_TEXT, message(first_seq + sent, size, socketio))
            sent += 1
        await asyncio.sleep(0.001)
    send_seconds = time.perf_counter() - began
    expected = sent * room_size
    first_received = sum(tally.copies[first_seq : first_seq + sent])
    # Drain: until every copy is in, or nothing arrived for `drain` seconds.
    last, last_change = -1, time.monotonic()
    while True:
        got = sum(tally.copies[first_seq : first_seq + sent])
        if got >= expected:
            break
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > spec["drain"]:
            break
        await asyncio.sleep(0.02)
    wall = time.perf_counter() - began
    emit("stop")
    copies = tally.copies[first_seq : first_seq + sent]
    delivered = sum(min(count, room_size) for count in copies)
    duplicates = sum(max(0, count - room_size) for count in copies)
    latencies = sorted(tally.latencies[-1])
    result = {
        "rate": rate,
        "seconds": seconds,
        "sent": sent,
        "send_rate": sent / send_seconds,
        "max_send_lag_ms": max_lag * 1e3,
        "expected": expected,
        "delivered": delivered,
        "delivered_in_window": first_received,
        "duplicates": duplicates,
        "delivered_fraction": delivered / expected if expected else float("nan"),
        "p50_ms": percentile(latencies, 0.50) / 1e3,
        "p99_ms": percentile(latencies, 0.99) / 1e3,
        "max_ms": (latencies[-1] / 1e3) if latencies else float("nan"),
        "wall": wall,
    }
    return result, first_seq + sent


async def main(spec: dict[str, Any]) -> None:
    rooms, room_size = spec["rooms"], spec["members"]
    steps: list[dict[str, Any]] = spec["steps"]
    capacity = sum(int(step["rate"] * step["seconds"]) + 1 for step in steps) + 16
    Member.tally = Tally(capacity)
    Member.joined = [0]
    Member.protocol = spec["protocol"]
    members = [Member(f"r{room}") for room in range(rooms) for _ in range(room_size)]
    connect_seconds = await connect_all(spec, members)
    emit("ready", sockets=len(members), connect_seconds=connect_seconds)
    await asyncio.sleep(spec["settle"])
    order = members[:]
    random.Random(1).shuffle(order)
    seq = 0
    for index, step in enumerate(steps):
        result, seq = await run_step(spec, order, step["rate"], step["seconds"], seq)
        result["joined_after"] = Member.joined[0]
        if step.get("warmup"):
            emit("step", index=index, warmup=True, **result)
            continue
        emit("step", index=index, **result)
        stop_when = spec.get("stop_above_p99_ms")
        if stop_when is not None and not result["p99_ms"] <= stop_when:
            break
        if result["delivered_fraction"] < spec.get("stop_below_fraction", 0.0):
            break
    for member in members:
        if member.transport is not None:
            member.transport.disconnect()
    await asyncio.sleep(0.2)
    emit("done", overflow=Member.tally.overflow)


if __name__ == "__main__":
    uvloop.run(main(json.loads(sys.argv[1])))
