"""Server-Sent Events members against WebSocket members: what a delivery costs the server.

One ``nexios run`` (pinned to core 0) serves one group to N members of one kind; this
process (pinned to core 1) holds the N connections on bare asyncio sockets and counts
what arrives. It then asks the server to broadcast K messages (``POST /pub``) and
measures the server's CPU time and the wall time until every member has all K.

Rows (``--kinds``):

- ``sse``: ``app.sse_group`` members (an ``EventSource`` each): ASGI ``http.response.body``
  sends, one per event and member;
- ``ws``: WebSocket members under ``nexios run`` (frames written straight to the
  transport, the frame-once sink);
- ``ws-asgi``: WebSocket members through ASGI sends (``--ws websockets-sansio``): the
  same kind of write path as SSE.

    .venv/bin/python -m bench.sse --members 200 --messages 500 --rounds 3

Prints one JSON line per sample and a summary: server CPU microseconds per delivery and
deliveries per second (median over rounds; rounds alternate the kinds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.run import cpu_seconds, free_port, stop, wait_port
from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
GROUP = "room"

# --------------------------------------------------------------------------- the server app

app = NexiosApp(
    limits=Limits(messages_per_second=1e9, burst=10**9, max_connections_per_client=None)
)
app.sse_group("/sse", group=GROUP)


@app.ws_route("/ws")
async def member(ws: WebSocket) -> None:
    await ws.accept()
    await ChannelBox.add_channel_to_group(Channel(ws, payload_type="json"), GROUP)
    async for _ in ws.iter_text():
        pass


@app.post("/pub")
async def publish(count: int = 1, size: int = 100, saved: bool = False) -> Any:
    pad = "x" * size
    for i in range(count):
        await ChannelBox.group_send(GROUP, {"i": i, "pad": pad}, save_history=saved)
    return {"sent": count}


@app.get("/members")
async def members() -> Any:
    return {"members": len((await ChannelBox.show_groups()).get(GROUP, {}))}


# --------------------------------------------------------------------------- the members


class Counter:
    """Messages a member received (events or frames), and a future for ``target``."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, n: int) -> None:
        self.count += n
        if self.target and self.count >= self.target and not self.done.done():
            self.done.set_result(None)

    def expect(self, total: int) -> None:
        self.target = total
        self.done = asyncio.get_running_loop().create_future()
        if self.count >= total:
            self.done.set_result(None)


async def sse_member(port: int, counter: Counter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    tail = b""
    while data := await reader.read(65536):
        chunk = tail + data
        counter.add(chunk.count(b"\ndata: "))  # every event has one data line
        tail = chunk[-6:]


async def ws_member(port: int, counter: Counter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buffer = await reader.readuntil(b"\r\n\r\n")
    buffer = b""
    while data := await reader.read(65536):
        buffer += data
        frames, used = 0, 0
        while len(buffer) - used >= 2:
            length, head = buffer[used + 1] & 0x7F, 2
            if length == 126:
                if len(buffer) - used < 4:
                    break
                length, head = int.from_bytes(buffer[used + 2 : used + 4], "big"), 4
            elif length == 127:
                if len(buffer) - used < 10:
                    break
                length, head = int.from_bytes(buffer[used + 2 : used + 10], "big"), 10
            if len(buffer) - used < head + length:
                break
            used += head + length
            frames += 1
        buffer = buffer[used:]
        counter.add(frames)


# --------------------------------------------------------------------------- a sample


@contextlib.contextmanager
def server(kind: str, logs: Path) -> Iterator[tuple[int, int]]:
    """``(pid, port)`` of a server for ``kind`` members, pinned to core 0."""
    port = free_port()
    command = ["taskset", "-c", "0", sys.executable, "-m"]
    if kind == "ws-asgi":
        command += ["uvicorn", "bench.sse:app", "--loop", "uvloop", "--http", "httptools"]
        command += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        command += ["--log-level", "warning", "--no-access-log"]
    else:
        command += ["nexios", "run", "bench.sse:app", "--log-level", "warning"]
        command += ["--no-access-log"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = logs / f"sse-{kind}-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}
        )
    try:
        wait_port(port, process, kind)
        yield process.pid, port
    finally:
        stop(process)


async def sample(
    kind: str, pid: int, port: int, members: int, messages: int, saved: bool
) -> dict[str, Any]:
    counters = [Counter() for _ in range(members)]
    member_of = sse_member if kind == "sse" else ws_member
    tasks = [asyncio.create_task(member_of(port, counter)) for counter in counters]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        while (await http.get("/members")).json()["members"] < members:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        base = [counter.count for counter in counters]
        for counter, before in zip(counters, base, strict=True):
            counter.expect(before + messages)
        cpu, started = cpu_seconds(pid), time.perf_counter()
        await http.post("/pub", params={"count": messages, "saved": saved})
        await asyncio.wait_for(asyncio.gather(*(counter.done for counter in counters)), 120)
        wall, used = time.perf_counter() - started, cpu_seconds(pid) - cpu
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    deliveries = members * messages
    return {
        "kind": kind,
        "members": members,
        "messages": messages,
        "saved": saved,
        "cpu_us_per_delivery": round(used / deliveries * 1e6, 3),
        "deliveries_per_s": round(deliveries / wall),
        "server_cpu_share": round(used / wall, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--saved", action="store_true", help="save_history=True")
    parser.add_argument("--kinds", default="sse,ws,ws-asgi")
    parser.add_argument("--logs", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    kinds = args.kinds.split(",")
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for round_index in range(args.rounds):
        for kind in kinds[round_index % len(kinds) :] + kinds[: round_index % len(kinds)]:
            with server(kind, args.logs) as (pid, port):
                result = asyncio.run(
                    sample(kind, pid, port, args.members, args.messages, args.saved)
                )
            print(json.dumps(result), flush=True)
            results[kind].append(result)
    for kind, samples in results.items():
        cpu = statistics.median(s["cpu_us_per_delivery"] for s in samples)
        rate = statistics.median(s["deliveries_per_s"] for s in samples)
        print(f"{kind:8} {cpu:7.2f} us CPU per delivery  {rate:>9,.0f} deliveries/s (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
