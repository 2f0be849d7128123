"""The HTTP load generator: keep-alive connections on uvloop, one request in flight each.

``python -m bench.http_client '<json spec>'`` (spec: ``port``, ``path``, ``conns``,
``warmup``, ``duration``) prints one JSON object per line for ``bench.run_http``:
``{"event": "start"}`` and ``{"event": "stop"}`` around the measured window, then
``{"event": "result", "requests": n, "rps": ..., "p50_ms": ..., "p99_ms": ...}``.

A response is parsed by its ``content-length`` only (every benchmarked route sends
one); the status must be 200, or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Stats:
    def __init__(self) -> None:
        self.count = 0
        self.recording = False
        self.latencies: list[float] = []


class Connection(asyncio.Protocol):
    """Closed loop: each complete response is answered with the next request at once."""

    def __init__(self, request: bytes, stats: Stats, failed: asyncio.Future[str]) -> None:
        self.request = request
        self.stats = stats
        self.failed = failed
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            if not head.startswith(b"http/1.1 200"):
                self.fail(f"unexpected response: {head[:200]!r}")
                return
            start = head.find(b"content-length:")
            if start < 0:
                self.fail(f"no content-length: {head[:200]!r}")
                return
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop > 0 else None])
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            stats = self.stats
            stats.count += 1
            if stats.recording:
                stats.latencies.append(time.perf_counter() - self.sent_at)
            self.send()

    def fail(self, reason: str) -> None:
        if not self.failed.done():
            self.failed.set_result(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost: {exc!r}")


async def run(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {spec['path']} HTTP/1.1\r\nhost: 127.0.0.1:{spec['port']}\r\n"
        "user-agent: nexios-bench\r\n\r\n"
    ).encode()
    stats = Stats()
    failed: asyncio.Future[str] = loop.create_future()
    transports = []
    for _ in range(spec["conns"]):
        transport, _ = await loop.create_connection(
            lambda: Connection(request, stats, failed), "127.0.0.1", spec["port"]
        )
        transports.append(transport)

    async def phase(seconds: float) -> None:
        done, _ = await asyncio.wait({failed}, timeout=seconds)
        if done:
            raise RuntimeError(failed.result())

    await phase(spec["warmup"])
    emit("start")
    stats.recording = True
    began, first = time.perf_counter(), stats.count
    await phase(spec["duration"])
    count, took = stats.count - first, time.perf_counter() - began
    stats.recording = False
    emit("stop")
    for transport in transports:
        transport.close()
    latencies = sorted(stats.latencies)
    emit(
        "result",
        requests=count,
        rps=count / took,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)],
    )


if __name__ == "__main__":
    uvloop.run(run(json.loads(sys.argv[1])))
