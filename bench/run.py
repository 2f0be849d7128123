"""Run the benchmark suite: servers on core 0, the picows client on core 1.

    .venv/bin/python -m bench.run --out bench/results/full.json
    .venv/bin/python -m bench.run --quick --out bench/results/quick.json   # CI smoke

Every app runs under the same uvicorn command line (see ``UVICORN``); the
``nexios-frame-once`` row adds ``--ws nexios.server:NexiosWebSocketProtocol``. Rounds
are interleaved and the app order rotates each round, so drift hits every app alike.
Each sample records the CPU used by the server(s) and by the client during the
measured window (from ``/proc/<pid>/stat``), to show which side was the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
UVICORN = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "false",
    "--log-level",
    "warning",
    "--no-access-log",
]
FRAME_ONCE = "nexios.server:NexiosWebSocketProtocol"
PICOWS_WIRE = "nexios.server:PicowsWebSocketProtocol"


@dataclass(frozen=True)
class App:
    """A benchmark row: ``target`` served by ``runner``.

    ``uvicorn``: the shared uvicorn command line (``UVICORN``) with ``--ws ws``;
    ``nexios-run``: ``python -m nexios run target --ws ws`` with its other defaults
    (``--log-level warning`` aside); ``native``: ``python -m target --port N`` (no ASGI).
    """

    name: str
    target: str
    ws: str = "websockets-sansio"
    env: dict[str, str] = field(default_factory=dict)
    runner: str = "uvicorn"
    root: Path = ROOT
    """The checkout the server imports nexios and the bench apps from (``--baseline``)."""


STANDALONE = {"PYTHONPATH": str(ROOT / "bench" / "standalone")}


def saved_apps(baseline: Path | None) -> list[App]:
    """Rows of the ``saved`` scenarios: saved fan-out, on both senders, before/after."""
    apps = [
        App("nexios-saved", "saved_app:app", env=STANDALONE),
        App("nexios-frame-once-saved", "saved_app:app", ws=FRAME_ONCE, env=STANDALONE),
    ]
    if baseline is not None:
        apps += [dataclasses.replace(app, name=f"{app.name}@before", root=baseline) for app in apps]
    return apps


def baseline_apps(root: Path) -> list[App]:
    """The nexios rows again, served from another checkout (e.g. the commit before a
    change), so that before and after are measured in the same run."""
    return [
        App("nexios@before", "bench.app_nexios:app", root=root),
        App("nexios-frame-once@before", "bench.app_nexios:app", ws=FRAME_ONCE, root=root),
    ]


APPS = [
    App("raw", "bench.app_raw:app"),
    App("starlette", "bench.app_starlette:app"),
    App("nexios", "bench.app_nexios:app"),
    App("nexios-frame-once", "bench.app_nexios:app", ws=FRAME_ONCE),
    App("raw-picows", "bench.app_raw:app", ws=PICOWS_WIRE),
    App("nexios-picows", "bench.app_nexios:app", ws=PICOWS_WIRE),
    App("nexios-run", "bench.app_nexios:app", ws="auto", runner="nexios-run"),
    App("nexios-run-sansio", "bench.app_nexios:app", ws=FRAME_ONCE, runner="nexios-run"),
    App("picows-native", "bench.app_picows", runner="native"),
]
DEFAULT_APPS = ("raw", "starlette", "nexios", "nexios-frame-once", "nexios-picows")
"""Rows run unless ``--apps`` names others."""


def redis_apps(url: str) -> list[App]:
    nexios_env = {"NEXIOS_CHANNELS_URL": url}
    return [
        App("starlette+broadcaster", "bench.app_starlette:app", env={"BENCH_BROADCAST_URL": url}),
        App("nexios", "bench.app_nexios:app", env=nexios_env),
        App("nexios-frame-once", "bench.app_nexios:app", ws=FRAME_ONCE, env=nexios_env),
        App("nexios-picows", "bench.app_nexios:app", ws=PICOWS_WIRE, env=nexios_env),
    ]


@dataclass(frozen=True)
class Plan:
    rounds: int
    duration: float
    warmup: float
    echo_conns: tuple[int, ...]
    json_conns: int
    fanout_members: tuple[int, ...]
    latency_count: int
    latency_time: float
    window: int
    memory_conns: tuple[int, ...]
    joinleave: tuple[int, ...]
    redis_members: int
    saved_members: int = 1000
    paced_count: int = 300
    payload: int = 64
    settle: float = 0.5


FULL = Plan(
    rounds=3,
    duration=1.5,
    warmup=0.3,
    echo_conns=(1, 50, 500),
    json_conns=50,
    fanout_members=(100, 1000, 5000),
    latency_count=100,
    latency_time=2.0,
    window=16,
    memory_conns=(1000, 5000),
    joinleave=(1000, 5000),
    redis_members=1000,
)
QUICK = Plan(
    saved_members=50,
    paced_count=20,
    rounds=1,
    duration=0.2,
    warmup=0.05,
    echo_conns=(1, 5),
    json_conns=5,
    fanout_members=(10, 50),
    latency_count=10,
    latency_time=0.3,
    window=2,
    memory_conns=(50,),
    joinleave=(200,),
    redis_members=20,
    settle=0.1,
)


# ---------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_times() -> dict[str, tuple[float, float]]:
    """(busy, total) seconds of each core we pin to, from /proc/stat."""
    out = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name in (f"cpu{SERVER_CORE}", f"cpu{CLIENT_CORE}"):
                ticks = [int(value) for value in values[:8]]
                idle = ticks[3] + ticks[4]
                out[name[3:]] = ((sum(ticks) - idle) / CLK_TCK, sum(ticks) / CLK_TCK)
    return out


def core_busy(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Fraction of each core that was busy between two ``core_times`` samples."""
    return {
        core: (after[core][0] - before[core][0]) / max(1e-9, after[core][1] - before[core][1])
        for core in before
    }


def wait_quiet(limit: float, threshold: float = 0.15, sample: float = 0.25) -> float:
    """Wait (at most ``limit`` s) until both cores are idle: the machine may be shared.

    Returns the busiest core's load in the last sample.
    """
    deadline = time.monotonic() + limit
    while True:
        before = core_times()
        time.sleep(sample)
        load = max(core_busy(before, core_times()).values())
        if load < threshold or time.monotonic() > deadline:
            return load


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server:
    """One uvicorn process serving ``app`` on a fresh port, pinned to the server core."""

    def __init__(self, app: App, logs: Path) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = logs / f"{app.name}-{self.port}.log"
        self.command = command = server_command(app, self.port)
        env = {**os.environ, **app.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=app.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_port(self.port, self.process, f"{app.name} server")
        except BaseException:
            stop(self.process)
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        stop(self.process)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_command(app: App, port: int) -> list[str]:
    pinned = ["taskset", "-c", SERVER_CORE, PYTHON, "-m"]
    if app.runner == "native":
        return [*pinned, app.target, "--port", str(port)]
    if app.runner == "nexios-run":
        command = [*pinned, "nexios", "run", app.target, "--port", str(port)]
        return [*command, "--log-level", "warning", "--ws", app.ws]
    command = [*pinned, "uvicorn", app.target, "--host", "127.0.0.1", "--port", str(port)]
    command += UVICORN
    if app.ws != "websockets-sansio":
        command[command.index("websockets-sansio")] = app.ws
    return command


@contextlib.contextmanager
def servers(app: App, count: int, logs: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(Server(app, logs))
        yield started
    finally:
        for server in started:
            server.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            *("taskset", "-c", CLIENT_CORE, binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process, "redis-server")  # type: ignore[arg-type]
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=5)


QUIET_WAIT = 0.0  # set by main: seconds to wait for idle cores before each sample...
QUIET_BUDGET = [90.0]  # ...and at most this long over the whole run


def run_client(
    spec: dict[str, Any],
    group: list[Server],
    settle: float = 0.5,
    timeout: float = 90,
    module: str = "bench.client",
) -> dict[str, Any]:
    """Run one client measurement; add CPU use of servers and client in its window.

    ``other_load``: the part of the server core and of the client core that was busy
    with neither (other jobs on a shared machine, redis-server on the client core).
    """
    if QUIET_WAIT and QUIET_BUDGET[0] > 0:
        began = time.monotonic()
        wait_quiet(min(QUIET_WAIT, QUIET_BUDGET[0]))
        QUIET_BUDGET[0] -= time.monotonic() - began
    process = subprocess.Popen(
        ["taskset", "-c", CLIENT_CORE, PYTHON, "-m", module, json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None and process.stdin is not None

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    pids = [server.pid for server in group]
    extra: dict[str, Any] = {}
    marks: dict[str, tuple[float, list[float], float, dict[str, tuple[float, float]]]] = {}
    try:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if not line:
                raise RuntimeError(f"client exited ({process.wait()}) without a result: {spec}")
            message = json.loads(line)
            event = message.pop("event")
            if event in ("start", "stop"):
                now = time.monotonic()
                marks[event] = (
                    now,
                    [cpu_seconds(pid) for pid in pids],
                    cpu_seconds(process.pid),
                    core_times(),
                )
                if event == "start":  # the client waits for this before it measures
                    process.stdin.write("go\n")
                    process.stdin.flush()
            elif event in ("baseline", "connected"):
                time.sleep(settle)  # let the server settle before reading its RSS
                extra[f"rss_{event}"] = sum(rss_bytes(pid) for pid in pids)
                process.stdin.write("go\n")
                process.stdin.flush()
            elif event == "result":
                result: dict[str, Any] = {**message, **extra}
                if "start" in marks and "stop" in marks:
                    (t0, servers0, client0, cores0) = marks["start"]
                    (t1, servers1, client1, cores1) = marks["stop"]
                    wall = t1 - t0
                    server_cpu = [(b - a) / wall for a, b in zip(servers0, servers1, strict=True)]
                    # The client's own, exact figure when it gives one; else from ticks.
                    client_cpu = message.get("client_cpu", (client1 - client0) / wall)
                    busy = core_busy(cores0, cores1)
                    result["server_cpu"] = [round(value, 3) for value in server_cpu]
                    result["client_cpu"] = float(f"{client_cpu:.3g}")  # tiny stays > 0
                    result["other_load"] = [
                        round(max(0.0, busy[SERVER_CORE] - sum(server_cpu)), 3),
                        round(max(0.0, busy[CLIENT_CORE] - client_cpu), 3),
                    ]
                process.wait(timeout=10)
                return result
    except queue.Empty:
        raise RuntimeError(f"client timed out after {timeout}s: {spec}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- scenarios


class Results:
    def __init__(self, plan: Plan, quick: bool) -> None:
        self.data: dict[str, Any] = {
            "meta": {
                "quick": quick,
                "plan": plan.__dict__,
                "uvicorn": UVICORN,
                "frame_once_ws": FRAME_ONCE,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "cpu_model": _cpu_model(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "versions": _versions(),
                "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
            },
            "scenarios": {},
        }

    def add(self, scenario: str, info: dict[str, Any], app: str, sample: dict[str, Any]) -> None:
        entry = self.data["scenarios"].setdefault(scenario, {**info, "apps": {}})
        samples = entry["apps"].setdefault(app, {})
        for key, value in sample.items():
            samples.setdefault(key, []).append(value)
        print(f"  {scenario:<18} {app:<22} {_brief(sample)}", flush=True)

    def summarize(self) -> None:
        for entry in self.data["scenarios"].values():
            for samples in entry["apps"].values():
                summary = {}
                for key, values in samples.items():
                    if key == "summary" or not values or not isinstance(values[0], int | float):
                        continue
                    summary[key] = {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                    }
                samples["summary"] = summary


def _brief(sample: dict[str, Any]) -> str:
    parts = []
    for key, value in sample.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:,.2f}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("nexios", "uvicorn", "uvloop", "httptools", "websockets", "starlette"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    for name in ("picows", "broadcaster", "redis"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def rotate(items: list[App], by: int) -> list[App]:
    by %= len(items)
    return items[by:] + items[:by]


def socket_scenarios(
    plan: Plan, server: Server, app: App, results: Results, groups: set[str]
) -> None:
    base = {"urls": [server.url], "duration": plan.duration, "warmup": plan.warmup}
    if "echo" in groups:
        for conns in plan.echo_conns:
            info = {"kind": "echo", "conns": conns, "unit": "round trips/s"}
            sample = run_client({**base, "kind": "echo", "conns": conns}, [server])
            results.add(f"echo_{conns}", info, app.name, sample)
        info = {"kind": "json", "conns": plan.json_conns, "unit": "round trips/s"}
        sample = run_client({**base, "kind": "json", "conns": plan.json_conns}, [server])
        results.add(f"json_{plan.json_conns}", info, app.name, sample)
    if "fanout" in groups:
        for members in plan.fanout_members:
            info = {"kind": "fanout", "members": members, "unit": "messages delivered/s"}
            sample = run_client(fanout_spec(plan, [server], members), [server])
            results.add(f"fanout_{members}", info, app.name, sample)


def fanout_spec(plan: Plan, group: list[Server], members: int) -> dict[str, Any]:
    return {
        "kind": "fanout",
        "urls": [server.url for server in group],
        "members": members,
        "payload": plan.payload,
        "latency_count": plan.latency_count,
        "latency_time": plan.latency_time,
        "window": plan.window,
        "duration": plan.duration,
        "warmup": plan.warmup,
    }


def memory_scenario(plan: Plan, conns: int, app: App, results: Results, logs: Path) -> None:
    with Server(app, logs) as server:
        spec = {"kind": "memory", "urls": [server.url], "conns": conns}
        sample = run_client(spec, [server], settle=plan.settle)
    per_conn = (sample["rss_connected"] - sample["rss_baseline"]) / sample["conns"]
    info = {"kind": "memory", "conns": conns, "unit": "bytes/connection"}
    results.add(f"memory_{conns}", info, app.name, {"bytes_per_conn": per_conn})


def joinleave_scenario(members: int, results: Results) -> None:
    output = subprocess.run(
        ["taskset", "-c", SERVER_CORE, PYTHON, "-m", "bench.joinleave", str(members)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    info = {"kind": "joinleave", "members": members, "unit": "µs CPU/member"}
    for registry, sample in json.loads(output).items():
        results.add(f"joinleave_{members}", info, registry, sample)


def redis_scenario(plan: Plan, round_index: int, results: Results, logs: Path) -> None:
    with redis_server() as url:
        for app in rotate(redis_apps(url), round_index):
            with servers(app, 2, logs) as group:
                spec = fanout_spec(plan, group, plan.redis_members)
                sample = run_client(spec, group)
            info = {
                "kind": "redis_fanout",
                "members": plan.redis_members,
                "servers": 2,
                "unit": "messages delivered/s",
            }
            results.add(f"redis_fanout_{plan.redis_members}", info, app.name, sample)


def saved_scenario(
    plan: Plan, round_index: int, results: Results, logs: Path, baseline: Path | None
) -> None:
    """Saved fan-out: in one process against raw ASGI's unsaved loop (throughput), and
    across two processes on Redis at a steady 100 broadcasts/s (latency)."""
    members = plan.saved_members
    for app in rotate([APPS[0], *saved_apps(baseline)], round_index):
        with Server(app, logs) as server:
            sample = run_client(fanout_spec(plan, [server], members), [server])
        info = {"kind": "fanout", "members": members, "unit": "messages delivered/s"}
        results.add(f"saved_fanout_{members}", info, app.name, sample)
    with redis_server() as url:
        redis = {"NEXIOS_CHANNELS_URL": url}
        rows = [dataclasses.replace(a, env={**a.env, **redis}) for a in saved_apps(baseline)]
        rows.append(App("nexios-frame-once", "bench.app_nexios:app", ws=FRAME_ONCE, env=redis))
        for app in rotate(rows, round_index):
            with servers(app, 2, logs) as group:
                spec = {**fanout_spec(plan, group, members), "paced_rate": 100}
                spec["latency_count"] = plan.paced_count
                sample = run_client(spec, group)
            info = {
                "kind": "redis_fanout",
                "members": members,
                "servers": 2,
                "paced_rate": 100,
                "unit": "messages delivered/s",
            }
            results.add(f"saved_redis_fanout_{members}", info, app.name, sample)


SCENARIO_GROUPS = ("echo", "fanout", "memory", "joinleave", "redis", "saved")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--rounds", type=int, default=None)
    for name in ("echo_conns", "fanout_members", "memory_conns"):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help=f"comma list of sizes, instead of the plan's {name.replace('_', ' ')}",
        )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIO_GROUPS),
        help="comma list of " + ", ".join(SCENARIO_GROUPS),
    )
    parser.add_argument(
        "--apps",
        default=None,
        help="comma list of rows: "
        + ", ".join(app.name for app in APPS)
        + " (default: "
        + ", ".join(DEFAULT_APPS)
        + ")",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout of an earlier commit (git worktree add DIR REV): its nexios rows "
        "run in the same rounds as this tree's, as nexios@before",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="before each sample, wait up to this many seconds for both cores to be idle, "
        "90 s at most in all (default: 5, 0 with --quick)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    for name in ("echo_conns", "fanout_members", "memory_conns"):
        sizes = getattr(args, name)
        if sizes:
            plan = Plan(**{**plan.__dict__, name: tuple(int(size) for size in sizes.split(","))})
    groups = set(args.only.split(","))
    if unknown := groups - set(SCENARIO_GROUPS):
        parser.error(f"unknown --only group(s) {sorted(unknown)}; choose from {SCENARIO_GROUPS}")
    global QUIET_WAIT
    QUIET_WAIT = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 5.0)
    every = APPS + (baseline_apps(args.baseline.resolve()) if args.baseline else [])
    wanted = DEFAULT_APPS if args.apps is None else tuple(args.apps.split(","))
    if args.baseline and args.apps is None:
        wanted += tuple(app.name for app in baseline_apps(args.baseline))
    if unknown_apps := set(wanted) - {app.name for app in every}:
        parser.error(f"unknown --apps row(s) {sorted(unknown_apps)}")
    apps = [app for app in every if app.name in wanted]

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = Results(plan, args.quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nexios-bench-") as tmp:
        logs = Path(tmp)
        try:
            for round_index in range(plan.rounds):
                print(f"round {round_index + 1}/{plan.rounds}", flush=True)
                order = rotate(apps, round_index)
                if groups & {"echo", "fanout"}:
                    for app in order:
                        with Server(app, logs) as server:
                            socket_scenarios(plan, server, app, results, groups)
                if "memory" in groups:
                    for conns in plan.memory_conns:
                        for app in order:
                            memory_scenario(plan, conns, app, results, logs)
                if "joinleave" in groups:
                    for members in plan.joinleave:
                        joinleave_scenario(members, results)
                if "redis" in groups:
                    redis_scenario(plan, round_index, results, logs)
                if "saved" in groups:
                    saved_scenario(plan, round_index, results, logs, args.baseline)
        except BaseException:
            for log in sorted(logs.glob("*.log")):
                tail = log.read_text(errors="replace")[-2000:]
                if tail.strip():
                    print(f"--- {log.name}\n{tail}", file=sys.stderr)
            raise
    results.summarize()
    results.data["meta"]["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results.data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {results.data['meta']['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
