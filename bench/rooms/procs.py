"""Processes for the rooms and growth benchmarks: servers, redis-server, a talking client.

Builds on ``bench.run`` (CPU and core readings, ports); adds what these two need: a
``redis-server`` whose pid is known (its CPU is reported), servers started together,
a client whose JSON lines the runner reads one by one, and the raised fd limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.run import (
    CLIENT_CORE,
    PYTHON,
    ROOT,
    SERVER_CORE,
    core_busy,
    core_times,
    cpu_seconds,
    free_port,
    rss_bytes,
    stop,
    wait_port,
)

__all__ = [
    "CLIENT_CORE",
    "PYTHON",
    "ROOT",
    "SERVER_CORE",
    "Client",
    "CpuMark",
    "Redis",
    "ServerSpec",
    "cpu_window",
    "raise_fd_limit",
    "read_results",
    "redis_server",
    "rss_bytes",
    "sources",
    "start_servers",
    "uvicorn_server",
    "versions",
]

UVICORN_OPTIONS = [
    *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio"),
    *("--ws-per-message-deflate", "false", "--log-level", "warning", "--no-access-log"),
]


def raise_fd_limit() -> int:
    """Soft fd limit up to the hard one (children inherit it); return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server process: a command after ``python -m``, and its env."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def command(self, port: int) -> list[str]:
        return [
            *("taskset", "-c", SERVER_CORE, PYTHON, "-m"),
            *(arg.format(port=port) for arg in self.argv),
        ]


def uvicorn_server(name: str, target: str, env: dict[str, str]) -> ServerSpec:
    """A peer under uvicorn with the same options as every row of ``bench.run``."""
    argv = ("uvicorn", target, "--host", "127.0.0.1", "--port", "{port}", *UVICORN_OPTIONS)
    return ServerSpec(name, argv, env)


@dataclass
class Running:
    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def start_servers(
    spec: ServerSpec, count: int, logs: Path, wrap: list[str] | None = None
) -> Iterator[list[Running]]:
    """Start ``count`` processes of ``spec`` at once; stop them on exit.

    ``wrap`` prefixes the command (e.g. ``py-spy record ... --``); the pid read for CPU
    and RSS is then the wrapper's child, found through ``/proc``.
    """
    started: list[Running] = []
    try:
        for _ in range(count):
            port = free_port()
            log = logs / f"{spec.name}-{port}.log"
            env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [*(wrap or []), *spec.command(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Running(spec, port, process, log))
        for server in started:
            wait_port(server.port, server.process, f"{spec.name} server", timeout=60)
        yield started
    except BaseException:
        for server in started:
            tail = server.log.read_text(errors="replace")[-3000:]
            if tail.strip():
                print(f"--- {server.log.name}\n{tail}", flush=True)
        raise
    finally:
        for server in started:
            stop(server.process)


def python_child(pid: int) -> int:
    """The python process under ``pid`` (itself, or the child a wrapper started)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"py-spy" not in cmdline.read().split(b"\0")[0]:
                return pid
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise RuntimeError(f"no child process under {pid}")


@dataclass
class Redis:
    url: str
    pid: int
    port: int

    def info(self, section: str) -> dict[str, str]:
        """``INFO <section>`` as a dict (through redis-cli, to stay off the event loop)."""
        output = subprocess.run(
            ["redis-cli", "-p", str(self.port), "INFO", section],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        pairs = (line.split(":", 1) for line in output.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far (``INFO commandstats``), script-internal ones included."""
        calls = {}
        for key, value in self.info("commandstats").items():
            fields = dict(item.split("=", 1) for item in value.split(","))
            calls[key.removeprefix("cmdstat_")] = int(fields["calls"])
        return calls


@contextlib.contextmanager
def redis_server(core: str = CLIENT_CORE) -> Iterator[Redis]:
    """A throwaway ``redis-server`` on a free loopback port, pinned to ``core``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            *("taskset", "-c", core, binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            *("--maxclients", "10000"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process, "redis-server")  # type: ignore[arg-type]
        yield Redis(f"redis://127.0.0.1:{port}/0", process.pid, port)
    finally:
        process.terminate()
        process.wait(timeout=5)


@dataclass(frozen=True)
class CpuMark:
    """CPU seconds of the watched processes and the cores' times at one instant."""

    at: float
    servers: list[float]
    others: dict[str, float]
    cores: dict[str, tuple[float, float]]

    @classmethod
    def take(cls, servers: list[int], others: dict[str, int]) -> CpuMark:
        return cls(
            time.monotonic(),
            [cpu_seconds(pid) for pid in servers],
            {name: cpu_seconds(pid) for name, pid in others.items()},
            core_times(),
        )


def cpu_window(start: CpuMark, end: CpuMark) -> dict[str, Any]:
    """CPU seconds used in ``[start, end]`` and the share of each core used by nobody we
    watch (other jobs on a shared machine)."""
    wall = end.at - start.at
    servers = [b - a for a, b in zip(start.servers, end.servers, strict=True)]
    others = {name: end.others[name] - start.others[name] for name in start.others}
    busy = core_busy(start.cores, end.cores)
    client_core_known = sum(others.values())
    return {
        "wall": round(wall, 3),
        "server_cpu_s": [round(value, 3) for value in servers],
        **{f"{name}_cpu_s": round(value, 3) for name, value in others.items()},
        "other_load": [
            round(max(0.0, busy[SERVER_CORE] - sum(servers) / wall), 3),
            round(max(0.0, busy[CLIENT_CORE] - client_core_known / wall), 3),
        ],
    }


class Client:
    """A client process on the client core speaking JSON lines on stdout."""

    def __init__(self, module: str, spec: dict[str, Any], timeout: float) -> None:
        self.process = subprocess.Popen(
            ["taskset", "-c", CLIENT_CORE, PYTHON, "-m", module, json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.deadline = time.monotonic() + timeout
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> Iterator[dict[str, Any]]:
        """Each JSON line until the client exits; raises on silence past the deadline."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, self.deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("the client timed out") from None
            if not line:
                code = self.process.wait()
                if code != 0:
                    raise RuntimeError(f"the client exited with {code}")
                return
            if line.startswith("{"):
                yield json.loads(line)

    def reply(self, text: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones left out)."""
    out = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def read_results(
    doc: str | None, argv: list[str] | None, default_out: Path
) -> tuple[argparse.Namespace, list[dict[str, Any]]]:
    """A report's command line (result files, ``--out``) and the results it names."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    return args, [json.loads(path.read_text()) for path in args.results]


def sources(data: list[dict[str, Any]]) -> list[str]:
    """One line per result file: the command that made it, when, and how long it took."""
    return [
        f"- `{item['meta']['command']}` ({item['meta']['started']}, {item['meta']['seconds']} s)"
        for item in data
    ]
