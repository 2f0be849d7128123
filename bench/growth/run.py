"""Growth curves of one nexios process: 1k to 50k members, on Redis.

    .venv/bin/python -m bench.growth.run --out bench/results/growth.json          # full
    .venv/bin/python -m bench.growth.run --small --out /tmp/growth-small.json     # check
    .venv/bin/python -m bench.growth.run --sizes 20000 --profile --out ...        # py-spy

For each size and path — frame-once (``nexios run`` default) and portable (``--ws
websockets-sansio``) — a fresh ``redis-server`` (client core) and one ``nexios run
bench.growth.app:app`` process (server core, ``NEXIOS_CHANNELS_URL`` on that Redis);
one client process (client core) grows it to N members of one group (see
``bench/growth/client.py`` for the phases). Then, once, N groups of one member each.
At each mark the runner reads the server's RSS and CPU time; while the process idles
it counts the Redis commands it causes (``INFO commandstats``, commands inside
presence scripts included). ``--profile`` runs the server under ``py-spy record`` and
keeps where its samples went. See ``bench/README.md`` (*Growth*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.growth.profile import summarize
from bench.rooms.procs import (
    ROOT,
    Client,
    CpuMark,
    ServerSpec,
    cpu_window,
    python_child,
    raise_fd_limit,
    redis_server,
    rss_bytes,
    start_servers,
    versions,
)

PATHS = {"frame-once": (), "portable": ("--ws", "websockets-sansio")}
FD_MARGIN = 300
"""File descriptors a process needs besides its sockets (listeners, Redis, stdio...)."""


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    solo_groups: int  # N groups of one member each (0: skip)
    idle_seconds: float  # how long the idle process is watched
    presence_ttl: float  # NEXIOS_PRESENCE_TTL: the heartbeat runs every ttl / 3
    broadcasts: int
    presence_calls: int
    connect_batch: int = 200
    join_batch: int = 500
    payload: int = 64


FULL = Plan(
    sizes=(1000, 5000, 20000, 50000),
    solo_groups=20000,
    idle_seconds=15.0,
    presence_ttl=15.0,
    broadcasts=30,
    presence_calls=10,
)
SMALL = Plan(  # a harness check on a busy machine: smoke numbers, not results
    sizes=(100, 500),
    solo_groups=500,
    idle_seconds=3.0,
    presence_ttl=3.0,
    broadcasts=20,
    presence_calls=5,
)
SMOKE = Plan(
    sizes=(50,),
    solo_groups=50,
    idle_seconds=2.0,
    presence_ttl=1.5,
    broadcasts=5,
    presence_calls=3,
)


def server_spec(path: str, redis_url: str, plan: Plan) -> ServerSpec:
    argv = ("nexios", "run", "bench.growth.app:app", "--port", "{port}", "--log-level", "warning")
    env = {"NEXIOS_CHANNELS_URL": redis_url, "NEXIOS_PRESENCE_TTL": str(plan.presence_ttl)}
    return ServerSpec(f"nexios-{path}", (*argv, *PATHS[path]), env)


def per(count: int, value: float) -> float:
    return value / count if count else float("nan")


def run_one(
    plan: Plan, size: int, path: str, groups: str, logs: Path, profile: Path | None
) -> dict[str, Any]:
    wrap = None
    if profile is not None:
        wrap = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
        ]
        wrap += ["--output", str(profile), "--"]
    with redis_server() as redis:
        spec = server_spec(path, redis.url, plan)
        with start_servers(spec, 1, logs, wrap=wrap) as (server,):
            pid = python_child(server.pid)
            client = Client(
                "bench.growth.client",
                {
                    "url": server.url,
                    "members": size,
                    "groups": groups,
                    "connect_batch": plan.connect_batch,
                    "join_batch": plan.join_batch,
                    "broadcasts": plan.broadcasts,
                    "presence_calls": plan.presence_calls,
                    "payload": plan.payload,
                },
                timeout=300 + size / 50,
            )
            watched = {"redis": redis.pid, "client": client.pid}
            marks: dict[str, CpuMark] = {}
            rss: dict[str, int] = {}
            out: dict[str, Any] = {"size": size, "path": path}
            try:
                for event in client.events():
                    kind = event.pop("event")
                    if kind == "result":
                        out.update(event)
                        continue
                    time.sleep(0.5)  # let the server settle before reading it
                    marks[kind] = CpuMark.take([pid], watched)
                    rss[kind] = rss_bytes(pid)
                    if kind == "idle":
                        out["idle"] = watch_idle(plan, pid, redis, watched)
                    client.reply()
            finally:
                client.close()
                if wrap is not None:  # py-spy writes its file once its child exits
                    os.kill(pid, signal.SIGINT)
                    server.process.wait(timeout=60)
    connect = cpu_window(marks["baseline"], marks["connected"])
    join = cpu_window(marks["connected"], marks["joined"])
    out.update(
        rss=rss,
        bytes_per_connection=per(size, rss["connected"] - rss["baseline"]),
        bytes_per_member=per(size, rss["joined"] - rss["baseline"]),
        bytes_per_join=per(size, rss["joined"] - rss["connected"]),
        connect_server_us=per(size, connect["server_cpu_s"][0] * 1e6),
        connect_client_cpu=connect["client_cpu_s"] / connect["wall"],
        join_server_us=per(size, join["server_cpu_s"][0] * 1e6),
        join_redis_us=per(size, join["redis_cpu_s"] * 1e6),
    )
    if profile is not None:
        out["profile"] = summarize(profile)
    return out


def watch_idle(plan: Plan, pid: int, redis: Any, watched: dict[str, int]) -> dict[str, Any]:
    """Redis commands per second and CPU of an idle process with all its members."""
    before_calls = redis.command_calls()
    before = CpuMark.take([pid], watched)
    time.sleep(plan.idle_seconds)
    after = CpuMark.take([pid], watched)
    after_calls = redis.command_calls()
    window = cpu_window(before, after)
    wall = window["wall"]
    by_command = {
        name: round((after_calls[name] - before_calls.get(name, 0)) / wall, 2)
        for name in after_calls
        if after_calls[name] != before_calls.get(name, 0) and name != "info"
    }
    return {
        "seconds": wall,
        "heartbeat_s": max(0.05, plan.presence_ttl / 3),
        "redis_commands_per_s": round(sum(by_command.values()), 2),
        "redis_by_command_per_s": by_command,
        "server_cpu": window["server_cpu_s"][0] / wall,
        "redis_cpu": window["redis_cpu_s"] / wall,
        "other_load": window["other_load"],
    }


def fitted(size: int, fd_limit: int) -> int | None:
    """``size``, or the most members one process can hold when that is within 10% of
    it (20,000 becomes 19,700 under a 20,000-descriptor limit); None when neither fits."""
    largest = fd_limit - FD_MARGIN
    if size <= largest:
        return size
    return largest if largest >= 0.9 * size else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--smoke", action="store_true", help="tiny: the test suite's check")
    kind.add_argument("--small", action="store_true", help="≤ 500 members: a harness check")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "growth.json")
    parser.add_argument("--sizes", default=None, help="comma list of member counts")
    parser.add_argument("--solo-groups", type=int, default=None, help="0 skips that run")
    parser.add_argument("--paths", default=",".join(PATHS), help="frame-once,portable")
    parser.add_argument("--profile", action="store_true", help="run servers under py-spy")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else SMALL if args.small else FULL
    overrides: dict[str, Any] = {}
    if args.sizes:
        overrides["sizes"] = tuple(int(size) for size in args.sizes.split(","))
    if args.solo_groups is not None:
        overrides["solo_groups"] = args.solo_groups
    plan = Plan(**{**asdict(plan), **overrides})
    paths = [path for path in args.paths.split(",") if path]
    if unknown := set(paths) - set(PATHS):
        parser.error(f"unknown path(s) {sorted(unknown)}; choose from {sorted(PATHS)}")
    fd_limit = raise_fd_limit()
    data: dict[str, Any] = {
        "meta": {
            "kind": "smoke" if args.smoke else "small" if args.small else "full",
            "plan": asdict(plan),
            "fd_limit": fd_limit,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions("nexios", "uvicorn", "uvloop", "websockets", "picows", "redis"),
            "redis_server": redis_version(),
            "command": " ".join([".venv/bin/python -m bench.growth.run", *sys.argv[1:]]),
            "profiled": args.profile,
        },
        "runs": [],
        "skipped": [],
    }
    began = time.monotonic()
    todo = [(size, path, "one") for size in plan.sizes for path in paths]
    if plan.solo_groups:
        todo.append((plan.solo_groups, paths[0], "each"))
    profiles = args.out.parent / (args.out.stem + "-profiles")
    with tempfile.TemporaryDirectory(prefix="nexios-growth-") as tmp:
        for requested, path, groups in todo:
            size = fitted(requested, fd_limit)
            label = f"{requested:,} members, {path}, groups={groups}"
            if size is None:
                size = requested
                reason = (
                    f"needs {size + FD_MARGIN:,} file descriptors in one process; the hard "
                    f"limit here is {fd_limit:,} (raising it needs CAP_SYS_RESOURCE)"
                )
                print(f"skip {label}: {reason}", flush=True)
                data["skipped"].append(
                    {"size": size, "path": path, "groups": groups, "why": reason}
                )
                continue
            profile = None
            if args.profile:
                profiles.mkdir(parents=True, exist_ok=True)
                profile = profiles / f"{groups}-{size}-{path}.txt"
            result = run_one(plan, size, path, groups, Path(tmp), profile)
            if size != requested:
                result["requested"] = requested
                label += f" (run at {size:,}: the fd limit is {fd_limit:,})"
            data["runs"].append(result)
            print(f"{label}: {brief(result)}", flush=True)
    data["meta"]["seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {data['meta']['seconds']}s", flush=True)
    return 0


def redis_version() -> str:
    output = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return output.stdout.strip()


def brief(run: dict[str, Any]) -> str:
    parts = [
        f"{run['bytes_per_member']:,.0f} B/member",
        f"{run['connects_per_s']:,.0f} connects/s",
        f"join p50 {run['join_us']['p50']:,.0f} µs p99 {run['join_us']['p99']:,.0f} µs",
        f"leave p99 {run['leave_us']['p99']:,.0f} µs",
        f"presence p50 {run['presence_ms']['p50']:,.2f} ms",
        f"idle redis {run['idle']['redis_commands_per_s']:,.0f} cmd/s",
    ]
    if "broadcast_ms" in run:
        broadcast = run["broadcast_ms"]
        parts.append(f"broadcast p50 {broadcast['p50']:,.1f} p99 {broadcast['p99']:,.1f} ms")
    return "; ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
