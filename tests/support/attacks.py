"""Clients that attack a server on purpose, and healthy ones that measure the damage.

Shared by the bounded tests (``tests/test_wire_floods.py``) and the full-size probes
(``python -m bench.probes``). Attackers run until ``stop`` is set and record how the
server ended each of their connections in ``ends`` (close code, ``reset/eof``, ...).
:func:`run_flood` runs the attacker in its own process (``python -m
tests.support.attacks KIND PORT SECONDS``), so that it cannot starve the healthy
clients of the measuring process.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from tests.support.raw_socket import CONTINUATION, PING, TEXT, client_frame, handshake_request

__all__ = [
    "FLOODS",
    "Healthy",
    "continuation_flood",
    "endless_header",
    "healthy_client",
    "healthy_connect",
    "ping_flood",
    "run_flood",
    "slow_socket",
]


@dataclass
class Healthy:
    """What the healthy clients saw: round-trip times, replies that never came, drops."""

    rtts: list[float] = field(default_factory=list)
    lost: int = 0
    dropped: int = 0


async def healthy_client(url: str, stop: asyncio.Event, seen: Healthy, rate: float = 20) -> None:
    """Echo ``rate`` messages a second on ``url + "/echo"``, timing each round trip."""
    try:
        async with connect(url + "/echo", ping_interval=None) as ws:
            n = 0
            while not stop.is_set():
                sent = time.perf_counter()
                await ws.send(f"healthy {n}")
                try:
                    reply = await asyncio.wait_for(ws.recv(), 10)
                except TimeoutError:
                    seen.lost += 1
                    continue
                seen.rtts.append(time.perf_counter() - sent)
                if reply != f"healthy {n}":
                    seen.lost += 1
                n += 1
                await asyncio.sleep(1 / rate)
    except Exception:
        seen.dropped += 1


async def _ended(reader: asyncio.StreamReader) -> str:
    """How the server ended an attacker's connection: its close code, or how else."""
    try:
        head = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return "reset/eof"
    return str(int.from_bytes(head[2:4], "big")) if head[0] == 0x88 else "data"


async def _upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake_request(port, "/echo"))
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


def _count(ends: dict[str, int], how: str) -> None:
    ends[how] = ends.get(how, 0) + 1


async def continuation_flood(port: int, stop: asyncio.Event, ends: dict[str, int]) -> int:
    """A text frame without FIN, then empty continuation frames as fast as the socket
    takes them, reconnecting whenever the server closes. Returns the frames sent."""
    empty = client_frame(CONTINUATION, b"", fin=False) * 4096
    sent = 0
    while not stop.is_set():
        reader, writer = await _upgraded(port)
        ended = asyncio.create_task(_ended(reader))
        writer.write(client_frame(TEXT, b"", fin=False))
        try:
            while not stop.is_set() and not ended.done():
                writer.write(empty)
                sent += 4096
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        if stop.is_set() and not ended.done():
            ended.cancel()
            how = "still open at the end"
        else:
            how = await ended
        writer.transport.abort()
        _count(ends, how)
    return sent


async def ping_flood(port: int, stop: asyncio.Event, ends: dict[str, int]) -> int:
    """Pings as fast as the socket takes them, never reading the pongs, reconnecting
    when the server closes. Returns the pings sent."""
    burst = client_frame(PING, b"p" * 125) * 1000
    sent = 0
    while not stop.is_set():
        _reader, writer = await _upgraded(port)
        writer.transport.pause_reading()  # never read the pongs
        writer.transport.set_write_buffer_limits(high=8 * 1024 * 1024)
        try:
            while not stop.is_set():
                writer.write(burst)
                sent += 1000
                await asyncio.wait_for(writer.drain(), 0.5)
            _count(ends, "still open at the end")
        except TimeoutError:
            _count(ends, "server stopped reading")
            await stop.wait()
        except (ConnectionError, OSError):
            _count(ends, "closed by the server")
        writer.transport.abort()
    return sent


async def slow_socket(port: int, stop: asyncio.Event, closed: list[float], began: float) -> None:
    """Slowloris: one header byte a second; records when the server answered or closed."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    head = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 10_000
    try:
        for byte in head:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            try:
                await asyncio.wait_for(reader.read(1), 1.0)
                closed.append(time.monotonic() - began)  # answered or closed by the server
                break
            except TimeoutError:
                continue
    except (ConnectionError, OSError):
        closed.append(time.monotonic() - began)
    writer.transport.abort()


async def healthy_connect(url: str, timeout: float = 5) -> bool:
    """Connect, echo one message, close; False on any failure within ``timeout``."""
    try:
        async with asyncio.timeout(timeout), connect(url + "/echo") as ws:
            await ws.send("hi")
            return await ws.recv() == "hi"
    except Exception:
        return False


async def endless_header(port: int, seconds: float) -> tuple[int, int | None]:
    """A header value that never ends, sent as fast as the server takes it, until it
    answers or ``seconds`` pass: ``(bytes sent, the answer's status or None)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.readline())
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not answer.done():
            writer.write(b"v" * 65536)
            sent += 65536
            await asyncio.wait_for(writer.drain(), 1)
    except (TimeoutError, ConnectionError, OSError):
        pass
    status = None
    try:
        line = await asyncio.wait_for(answer, 1)
        status = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
    except (TimeoutError, ConnectionError, OSError, ValueError, IndexError):
        pass
    writer.transport.abort()
    return sent, status


FLOODS = {"continuation": continuation_flood, "pings": ping_flood}


async def run_flood(
    port: int, kind: str, seconds: float, healthy: int, rss: Callable[[], int]
) -> dict[str, Any]:
    """``healthy`` echo clients, then one ``kind`` attacker for ``seconds``: the figures.

    ``rss()`` reads the server's resident memory (sampled every 0.1 s).
    """
    url = f"ws://127.0.0.1:{port}"
    stop = asyncio.Event()
    seen = Healthy()
    clients = [asyncio.create_task(healthy_client(url, stop, seen)) for _ in range(healthy)]
    await asyncio.sleep(1.0)
    before = peak = rss()
    seen.rtts.clear()
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.support.attacks", kind, str(port), str(seconds)),
        stdout=asyncio.subprocess.PIPE,
    )
    report = asyncio.create_task(attacker.communicate())
    while not report.done():
        await asyncio.sleep(0.1)
        peak = max(peak, rss())
    stop.set()
    await asyncio.gather(*clients)
    attack = json.loads((await report)[0])
    rtts = sorted(seen.rtts)
    return {
        "flood": kind,
        "seconds": seconds,
        "attack_frames": attack["sent"],
        "attacker_connections": attack["ends"],
        "healthy_clients": healthy,
        "healthy_round_trips": len(rtts),
        "healthy_lost": seen.lost,
        "healthy_dropped": seen.dropped,
        "p50_ms": round(statistics.median(rtts) * 1e3, 2) if rtts else None,
        "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1e3, 2) if rtts else None,
        "max_ms": round(rtts[-1] * 1e3, 2) if rtts else None,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
    }


async def _attack(kind: str, port: int, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    ends: dict[str, int] = {}
    asyncio.get_running_loop().call_later(seconds, stop.set)
    sent = await FLOODS[kind](port, stop, ends)
    return {"sent": sent, "ends": ends}


if __name__ == "__main__":
    kind, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(_attack(kind, port, seconds))))
