"""Run the rooms benchmark: nexios and three Python peers, two processes each, one Redis.

    .venv/bin/python -m bench.rooms.run --out bench/results/rooms.json         # full size
    .venv/bin/python -m bench.rooms.run --smoke --out /tmp/rooms-smoke.json    # ~20 s

For each server, in an order rotated every round: a fresh ``redis-server`` (client
core), two server processes (server core), one client process (client core) that
connects ``rooms x members`` sockets and runs the steps — first the steady load (every
member sends one message per ``interval`` s, for ``seconds``), then rising rates until
p99 passes ``--p99-limit`` ms (the knee). CPU of the servers, redis-server and the
client is read from ``/proc`` around each step. See ``bench/README.md`` (*Rooms*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.rooms.procs import (
    ROOT,
    Client,
    CpuMark,
    ServerSpec,
    cpu_window,
    raise_fd_limit,
    redis_server,
    rss_bytes,
    start_servers,
    uvicorn_server,
    versions,
)
from bench.run import wait_quiet

ROOM_PATH = "/room/{room}"
SERVERS = ("nexios", "python-socketio", "django-channels", "starlette-broadcaster")


def server_spec(name: str, redis_url: str) -> tuple[ServerSpec, str, str]:
    """(how to start it, client protocol, path template) for one server row."""
    env = {"BENCH_REDIS_URL": redis_url}
    if name == "nexios":
        argv = ("nexios", "run", "bench.rooms.app_nexios:app", "--port", "{port}")
        argv += ("--log-level", "warning")
        return ServerSpec(name, argv, {"NEXIOS_CHANNELS_URL": redis_url}), "ws", ROOM_PATH
    if name == "python-socketio":
        spec = uvicorn_server(name, "bench.rooms.app_socketio:app", env)
        return spec, "socketio", "/socket.io/?EIO=4&transport=websocket"
    if name == "django-channels":
        return uvicorn_server(name, "bench.rooms.app_channels:application", env), "ws", ROOM_PATH
    if name == "starlette-broadcaster":
        return uvicorn_server(name, "bench.rooms.app_starlette:app", env), "ws", ROOM_PATH
    raise ValueError(f"unknown server {name!r}; choose from {SERVERS}")


@dataclass(frozen=True)
class Plan:
    rooms: int
    members: int
    interval: float  # seconds between two messages of one member, steady load
    seconds: float  # steady-load duration
    knee_rates: tuple[float, ...]  # messages/s in, tried in order after the steady load
    knee_seconds: float
    p99_limit_ms: float = 100.0
    payload: int = 64
    drain: float = 3.0
    settle: float = 1.0
    connect_batch: int = 100
    servers_per_app: int = 2
    rounds: int = 1
    steady: bool = True  # False: the knee ramp alone, from its first (lowest) rate
    warmup: float = 0.0  # knee ramp alone: seconds at its first rate first, not counted

    @property
    def sockets(self) -> int:
        return self.rooms * self.members

    @property
    def base_rate(self) -> float:
        return self.sockets / self.interval


FULL = Plan(
    rooms=1000,
    members=10,
    interval=10.0,
    seconds=60.0,
    knee_rates=(2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 15000, 20000),
    knee_seconds=15.0,
)
SMALL = Plan(  # a harness check on a busy machine: smoke numbers, not results
    rooms=40,
    members=10,
    interval=2.0,
    seconds=6.0,
    knee_rates=(400, 800, 1600),
    knee_seconds=3.0,
)
SMOKE = Plan(
    rooms=6,
    members=4,
    interval=0.5,
    seconds=1.0,
    knee_rates=(96,),
    knee_seconds=0.5,
    drain=1.0,
    settle=0.2,
)


def client_spec(plan: Plan, urls: list[str], protocol: str, path: str) -> dict[str, Any]:
    if plan.steady:
        steps: list[dict[str, Any]] = [{"rate": plan.base_rate, "seconds": plan.seconds}]
    elif plan.warmup:
        # Right after 10,000 connects a server still settles (a collection walks all it
        # just allocated): a one-off pause there is not the knee of the rate.
        steps = [{"rate": plan.knee_rates[0], "seconds": plan.warmup, "warmup": True}]
    else:
        steps = []
    steps += [{"rate": rate, "seconds": plan.knee_seconds} for rate in plan.knee_rates]
    return {
        "urls": urls,
        "protocol": protocol,
        "path": path,
        "rooms": plan.rooms,
        "members": plan.members,
        "payload": plan.payload,
        "steps": steps,
        "drain": plan.drain,
        "settle": plan.settle,
        "connect_batch": plan.connect_batch,
        "connect_timeout": 60 + plan.sockets / 50,
        "stop_above_p99_ms": plan.p99_limit_ms,
        "stop_below_fraction": 0.5,
    }


def run_one(plan: Plan, name: str, logs: Path, quiet_wait: float) -> dict[str, Any]:
    """One server row: fresh Redis, two processes, one client session; its steps."""
    with redis_server() as redis:
        spec, protocol, path = server_spec(name, redis.url)
        with start_servers(spec, plan.servers_per_app, logs) as group:
            if quiet_wait:
                wait_quiet(quiet_wait)
            client = Client(
                "bench.rooms.client",
                client_spec(plan, [server.url for server in group], protocol, path),
                timeout=600 + plan.sockets / 20,
            )
            pids = [server.pid for server in group]
            watched = {"redis": redis.pid, "client": client.pid}
            out: dict[str, Any] = {"steps": []}
            start: CpuMark | None = None
            window: dict[str, Any] = {}
            try:
                for event in client.events():
                    kind = event.pop("event")
                    if kind == "ready":
                        out.update(event)
                    elif kind == "start":
                        start = CpuMark.take(pids, watched)
                    elif kind == "stop":
                        assert start is not None
                        window = cpu_window(start, CpuMark.take(pids, watched))
                    elif kind == "step":
                        step = {**event, **window}
                        delivered = max(1, step["delivered"])
                        step["server_us_per_delivery"] = sum(step["server_cpu_s"]) / delivered * 1e6
                        step["redis_us_per_delivery"] = step["redis_cpu_s"] / delivered * 1e6
                        if step.get("warmup"):  # not a step of the ramp
                            out["warmup"] = step
                            print(f"  {name:<22} warm-up: {_brief(step)}", flush=True)
                            continue
                        out["steps"].append(step)
                        print(f"  {name:<22} {_brief(step)}", flush=True)
                    elif kind == "done":
                        out["duplicates_overflow"] = event["overflow"]
            finally:
                client.close()
            out["server_rss"] = [rss_bytes(pid) for pid in pids]
            out["server_log_tail"] = [log_tail(server.log) for server in group]
    return out


def log_tail(path: Path, size: int = 1500) -> str:
    """The end of a server's log: errors a peer printed while losing messages."""
    return path.read_text(errors="replace")[-size:]


def _brief(step: dict[str, Any]) -> str:
    return (
        f"rate {step['rate']:>7,.0f}/s sent {step['send_rate']:>7,.0f}/s "
        f"delivered {step['delivered_fraction']:.4f} p50 {step['p50_ms']:7.1f} ms "
        f"p99 {step['p99_ms']:7.1f} ms max {step['max_ms']:7.1f} ms "
        f"server {sum(step['server_cpu_s']) / step['wall']:.0%} "
        f"({step['server_us_per_delivery']:.1f} µs/delivery) "
        f"redis {step['redis_cpu_s'] / step['wall']:.0%} "
        f"client {step['client_cpu_s'] / step['wall']:.0%}"
    )


def knee(steps: list[dict[str, Any]], limit_ms: float) -> dict[str, Any]:
    """The highest rate whose p99 stayed within the limit with nothing lost, and the
    first rate past it (None when every step passed: the knee is above the last)."""
    best: dict[str, Any] | None = None
    for step in sorted(steps, key=lambda item: item["rate"]):
        if step["p99_ms"] <= limit_ms and step["delivered_fraction"] == 1.0:
            best = step
        else:
            return {"rate": best["rate"] if best else 0.0, "failed_at": step["rate"]}
    return {"rate": best["rate"] if best else 0.0, "failed_at": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny: the test suite's check")
    size.add_argument("--small", action="store_true", help="400 sockets: a harness check")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rooms.json")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list of rows")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="steady-load duration")
    parser.add_argument("--knee-rates", default=None, help="comma list of messages/s")
    parser.add_argument("--knee-seconds", type=float, default=None)
    parser.add_argument(
        "--warmup",
        type=float,
        default=15.0,
        help="with --knee-only: seconds at the first rate before the ramp, not counted",
    )
    parser.add_argument(
        "--knee-only",
        action="store_true",
        help="no steady load: ramp through --knee-rates from the lowest, to find knees "
        "below the steady rate",
    )
    parser.add_argument("--quiet-wait", type=float, default=None)
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else SMALL if args.small else FULL
    overrides: dict[str, Any] = {}
    if args.rounds:
        overrides["rounds"] = args.rounds
    if args.seconds:
        overrides["seconds"] = args.seconds
    if args.knee_rates is not None:
        overrides["knee_rates"] = tuple(float(r) for r in args.knee_rates.split(",") if r)
    if args.knee_seconds:
        overrides["knee_seconds"] = args.knee_seconds
    if args.knee_only:
        overrides["steady"] = False
        overrides["warmup"] = args.warmup
    plan = Plan(**{**asdict(plan), **overrides})
    names = [name for name in args.servers.split(",") if name]
    for name in names:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {SERVERS}")
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0 if args.smoke else 5)
    fd_limit = raise_fd_limit()
    if plan.sockets + 200 > fd_limit:
        parser.error(f"{plan.sockets} sockets need a higher fd limit than {fd_limit}")
    data: dict[str, Any] = {
        "meta": {
            "kind": "smoke" if args.smoke else "small" if args.small else "full",
            "plan": asdict(plan),
            "python": platform.python_version(),
            "cpu_model": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "fd_limit": fd_limit,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(
                "nexios",
                "uvicorn",
                "uvloop",
                "websockets",
                "picows",
                "redis",
                "starlette",
                "broadcaster",
                "python-socketio",
                "python-engineio",
                "channels",
                "channels-redis",
                "django",
            ),
            "command": " ".join([".venv/bin/python -m bench.rooms.run", *sys.argv[1:]]),
        },
        "runs": [],
        "failed": [],
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nexios-rooms-") as tmp:
        for round_index in range(plan.rounds):
            print(f"round {round_index + 1}/{plan.rounds}", flush=True)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                try:
                    result = run_one(plan, name, Path(tmp), quiet_wait)
                except RuntimeError as error:  # a row that cannot run is reported, not fatal
                    print(f"  {name}: FAILED: {error}", flush=True)
                    data["failed"].append(
                        {"server": name, "round": round_index, "error": str(error)}
                    )
                    continue
                result["knee"] = knee(result["steps"], plan.p99_limit_ms)
                data["runs"].append({"server": name, "round": round_index, **result})
    data["meta"]["seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {data['meta']['seconds']}s", flush=True)
    return 1 if data["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
