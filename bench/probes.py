"""Adversarial probes against a real ``nexios run``: frame floods and slowloris.

    .venv/bin/python -m bench.probes floods   [--seconds 10] [--healthy 20]
    .venv/bin/python -m bench.probes slowloris [--sockets 1050] [--fd-limit 1024]

Each probe runs once per server configuration, in one process per configuration, and
prints one JSON line per configuration plus a table:

- ``before``: ``--ws websockets-sansio --http httptools`` (uvicorn's own protocols, what
  ``nexios run`` ran before the wire limits);
- ``sansio``: ``--ws nexios.server:NexiosWebSocketProtocol`` (the hardened fallback);
- ``picows``: the defaults (``nexios.server:PicowsWebSocketProtocol`` over the guarded
  httptools protocol).

**floods**: ``--healthy`` clients echo 20 messages a second each and time every round
trip, while one attacker floods for ``--seconds``: ``continuation`` sends a text frame
without FIN followed by empty continuation frames as fast as the socket takes them
(reconnecting whenever the server closes it); ``pings`` sends pings and never reads the
pongs. Reported: healthy round-trip p50/p99/max, healthy messages lost, the server's
RSS before and at its peak, and how the attacker's connections ended.

**slowloris**: with the server's open-file limit at ``--fd-limit``, ``--sockets``
connections each send one header byte per second; then 30 healthy clients try to
connect (5 s timeout each). Reported: healthy connects that worked, how many slow
sockets the server closed within 15 s, and the RSS growth when one connection sends an
endless header for 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.run import PAGE, free_port, wait_port
from tests.support.raw_socket import CONTINUATION, PING, TEXT, client_frame, handshake_request

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "before": ["--ws", "websockets-sansio", "--http", "httptools"],
    "sansio": ["--ws", "nexios.server:NexiosWebSocketProtocol"],
    "picows": [],
}


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class Server:
    def __init__(self, args: list[str], fd_limit: int | None = None) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "nexios", "run", "bench.app_nexios:app"]
        command += ["--port", str(self.port), "--log-level", "warning", *args]

        def limit() -> None:
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=limit,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_port(self.port, self.process, "nexios run")
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------- floods


async def healthy_client(url: str, stop: asyncio.Event, rtts: list[float], lost: list[int]) -> None:
    try:
        async with connect(url + "/echo", ping_interval=None) as ws:
            n = 0
            while not stop.is_set():
                sent = time.perf_counter()
                await ws.send(f"healthy {n}")
                try:
                    reply = await asyncio.wait_for(ws.recv(), 10)
                except TimeoutError:
                    lost[0] += 1
                    continue
                rtts.append(time.perf_counter() - sent)
                assert reply == f"healthy {n}", reply
                n += 1
                await asyncio.sleep(0.05)
    except Exception:
        lost[0] += 1_000_000  # a healthy client was disconnected: report it loudly


async def _close_code(reader: asyncio.StreamReader) -> str:
    """How the server ended the attacker's connection: its close code, or how else."""
    try:
        head = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return "reset/eof"
    return str(int.from_bytes(head[2:4], "big")) if head[0] == 0x88 else "data"


async def continuation_flood(port: int, stop: asyncio.Event, ends: dict[str, int]) -> int:
    """A text frame without FIN, then empty continuation frames, reconnecting when closed."""
    empty = client_frame(CONTINUATION, b"", fin=False) * 4096
    sent = 0
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake_request(port, "/echo"))
        await reader.readuntil(b"\r\n\r\n")
        ended = asyncio.create_task(_close_code(reader))
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
            how = "probe ended"
        else:
            how = await ended
        writer.transport.abort()
        ends[how] = ends.get(how, 0) + 1
    return sent


async def ping_flood(port: int, stop: asyncio.Event, ends: dict[str, int]) -> int:
    burst = client_frame(PING, b"p" * 125) * 1000
    sent = 0
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake_request(port, "/echo"))
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.pause_reading()  # never read the pongs
        writer.transport.set_write_buffer_limits(high=8 * 1024 * 1024)
        closed = False
        try:
            while not stop.is_set():
                writer.write(burst)
                sent += 1000
                await asyncio.wait_for(writer.drain(), 0.5)
        except TimeoutError:
            ends["stalled (server stopped reading)"] = ends.get("stalled", 0) + 1
            await stop.wait()
        except (ConnectionError, OSError):
            closed = True
        if closed:
            ends["closed"] = ends.get("closed", 0) + 1
        writer.transport.abort()
    return sent


async def flood_probe(config: str, kind: str, seconds: float, healthy: int) -> dict[str, Any]:
    server = Server(CONFIGS[config])
    try:
        stop = asyncio.Event()
        rtts: list[float] = []
        lost = [0]
        clients = [
            asyncio.create_task(healthy_client(server.url, stop, rtts, lost))
            for _ in range(healthy)
        ]
        await asyncio.sleep(1.0)
        base_rss = rss(server.process.pid)
        rtts.clear()
        ends: dict[str, int] = {}
        attack = continuation_flood if kind == "continuation" else ping_flood
        attacker = asyncio.create_task(attack(server.port, stop, ends))
        peak = base_rss
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            peak = max(peak, rss(server.process.pid))
        stop.set()
        frames = await attacker
        await asyncio.gather(*clients)
        rtts.sort()
        return {
            "config": config,
            "flood": kind,
            "seconds": seconds,
            "attack_frames": frames,
            "attacker_connections": ends,
            "healthy_round_trips": len(rtts),
            "healthy_lost": lost[0],
            "p50_ms": round(statistics.median(rtts) * 1e3, 2) if rtts else None,
            "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1e3, 2) if rtts else None,
            "max_ms": round(rtts[-1] * 1e3, 2) if rtts else None,
            "rss_before_mib": round(base_rss / 2**20, 1),
            "rss_peak_mib": round(peak / 2**20, 1),
        }
    finally:
        server.stop()


# ---------------------------------------------------------------------- slowloris


async def slow_socket(port: int, stop: asyncio.Event, closed: list[float], began: float) -> None:
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


async def healthy_connect(url: str) -> bool:
    try:
        async with asyncio.timeout(5):
            async with connect(url + "/echo") as ws:
                await ws.send("hi")
                return await ws.recv() == "hi"
    except Exception:
        return False


async def endless_header(port: int, seconds: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not reader.at_eof():
            writer.write(b"v" * 65536)
            sent += 65536
            await asyncio.wait_for(writer.drain(), 1)
    except (TimeoutError, ConnectionError, OSError):
        pass
    writer.transport.abort()
    return sent


async def slowloris_probe(config: str, sockets: int, fd_limit: int) -> dict[str, Any]:
    server = Server(CONFIGS[config], fd_limit=fd_limit)
    try:
        stop = asyncio.Event()
        closed: list[float] = []
        began = time.monotonic()
        slow = []
        for _ in range(sockets):
            slow.append(asyncio.create_task(slow_socket(server.port, stop, closed, began)))
            await asyncio.sleep(0.002)
        await asyncio.sleep(2)
        results = await asyncio.gather(*(healthy_connect(server.url) for _ in range(30)))
        await asyncio.sleep(max(0.0, 15 - (time.monotonic() - began)))
        closed_in_15 = len(closed)
        stop.set()
        await asyncio.gather(*slow)
        base = rss(server.process.pid)
        endless = asyncio.create_task(endless_header(server.port, 15))
        peak = base
        while not endless.done():
            await asyncio.sleep(0.1)
            peak = max(peak, rss(server.process.pid))
        sent = await endless
        return {
            "config": config,
            "fd_limit": fd_limit,
            "slow_sockets": sockets,
            "healthy_connects_ok": sum(results),
            "healthy_connects": len(results),
            "slow_closed_by_server_within_15s": closed_in_15,
            "endless_header_sent_mib": round(sent / 2**20, 1),
            "endless_header_rss_growth_mib": round((peak - base) / 2**20, 1),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("probe", choices=["floods", "slowloris"])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--healthy", type=int, default=20)
    parser.add_argument("--sockets", type=int, default=1050)
    parser.add_argument("--fd-limit", type=int, default=1024)
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for config in args.configs.split(","):
        if args.probe == "floods":
            for kind in ("continuation", "pings"):
                result = asyncio.run(flood_probe(config, kind, args.seconds, args.healthy))
                print(json.dumps(result), flush=True)
        else:
            result = asyncio.run(slowloris_probe(config, args.sockets, args.fd_limit))
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
