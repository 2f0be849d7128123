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
sockets the server closed within 20 s of the first, and the RSS growth when one connection sends an
endless header for 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.run import PAGE, free_port, wait_port
from tests.support.attacks import endless_header, healthy_connect, run_flood, slow_socket

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


async def flood_probe(config: str, kind: str, seconds: float, healthy: int) -> dict[str, Any]:
    server = Server(CONFIGS[config])
    try:
        pid = server.process.pid
        result = await run_flood(server.port, kind, seconds, healthy, lambda: rss(pid))
        return {"config": config, **result}
    finally:
        server.stop()


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
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - began)))
        closed_in_20 = len(closed)
        stop.set()
        await asyncio.gather(*slow)
        base = rss(server.process.pid)
        endless = asyncio.create_task(endless_header(server.port, 15))
        peak = base
        while not endless.done():
            await asyncio.sleep(0.1)
            peak = max(peak, rss(server.process.pid))
        sent, status = await endless
        return {
            "config": config,
            "fd_limit": fd_limit,
            "slow_sockets": sockets,
            "healthy_connects_ok": sum(results),
            "healthy_connects": len(results),
            "slow_closed_by_server_within_20s": closed_in_20,
            "endless_header_sent_mib": round(sent / 2**20, 1),
            "endless_header_answer": status,
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
