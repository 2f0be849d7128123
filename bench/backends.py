"""Per-group state, reaping cost and join storms of the history stores and channel layers.

``python -m bench.backends SCENARIO [--size N]`` prints one JSON line per measurement.
Each Redis scenario starts its own ``redis-server`` (no persistence, 127.0.0.1). The
scenarios use only calls that every version of the layer/history contract has, so the
same script measures a checkout before and after a change (run it with ``PYTHONPATH``
pointing at the other checkout).

- ``memory-history``: rounds of N distinct short-lived groups (2 entries each) in one
  ``MemoryHistoryStore`` with ``max_age=0.5``; RSS after each round has aged out.
- ``redis-history``: N groups, one entry each, in a ``RedisHistoryStore``: keys and
  ``used_memory`` after the appends and after ``max_age`` (2 s) has passed.
- ``reap``: N groups with one member each (added by "another process"); Redis commands
  (``INFO commandstats``) and time of one ``presence_reap`` by a process with no members,
  then with 1 % of the members expired.
- ``publish``: microseconds per message of ``publish``, of ``append`` then
  ``publish`` (a saved message in two steps) and, where it exists, ``publish_saved``;
  awaited one by one, and N at once.
- ``join-storm``: N joins at once on one layer, each a concurrent ``subscribe`` and
  ``presence_add``, on N distinct groups and on one group: failures and time.
- ``cluster-throughput``: broadcasts per second across N groups (default 200), one
  Redis against a Redis Cluster of three primaries, in one run (rounds interleaved).
  ``--publishers`` processes (each a layer, 64 publishes in flight) publish to the
  groups for ``--seconds``; one more process subscribes to every group and counts what
  arrives. Unsaved (``publish``) and saved (``publish_saved``) broadcasts. Each sample
  records the load average and the CPU seconds every redis-server used: on a machine
  with fewer cores than processes the Python clients are the limit, and
  ``redis_ceiling_per_s`` (broadcasts per CPU second of the busiest redis-server) shows
  what the servers themselves would take.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.run import redis_server
from nexios.history.base import HistoryLimits
from nexios.history.memory import MemoryHistoryStore
from nexios.history.redis import RedisHistoryStore
from nexios.layers import layer_from_url
from nexios.layers.base import WireMessage
from nexios.layers.redis import RedisLayer


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 2**20


async def _commands(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


async def memory_history(size: int, rounds: int = 3) -> None:
    store = MemoryHistoryStore(HistoryLimits(max_entries=100, max_age=0.5))
    gc.collect()
    base = _rss_mib()
    for round_index in range(rounds):
        for i in range(size):
            group = f"r{round_index}-g{i}"
            await store.append(group, "json", b'{"text":"hello"}')
            await store.append(group, "json", b'{"text":"again"}')
        await asyncio.sleep(0.6)
        # other traffic goes on; nobody reads the short-lived groups again
        await store.append("keepalive", "text", b"x")
        gc.collect()
        _emit(
            scenario="memory-history",
            groups=size,
            round=round_index + 1,
            rss_growth_mib=round(_rss_mib() - base, 1),
        )


async def redis_history(size: int) -> None:
    with redis_server() as url:
        raw = aioredis.Redis.from_url(url)
        for label, limits in (
            ("default limits", HistoryLimits()),
            ("max_age=2s", HistoryLimits(max_age=2.0)),
        ):
            await raw.flushall()
            base = int((await raw.info("memory"))["used_memory"])
            store = RedisHistoryStore(url, limits=limits)
            for start in range(0, size, 500):
                await asyncio.gather(
                    *(
                        store.append(f"group-{i}", "json", b'{"text":"hello"}')
                        for i in range(start, min(size, start + 500))
                    )
                )
            used = int((await raw.info("memory"))["used_memory"])
            _emit(
                scenario="redis-history",
                limits=label,
                groups=size,
                phase="after appends",
                keys=await raw.dbsize(),
                used_memory_mib=round((used - base) / 2**20, 2),
            )
            if limits.max_age is not None and limits.max_age < 60:
                await asyncio.sleep(limits.max_age + 0.5)
                await store.groups()
                used = int((await raw.info("memory"))["used_memory"])
                _emit(
                    scenario="redis-history",
                    limits=label,
                    groups=size,
                    phase=f"{limits.max_age + 0.5:g} s later",
                    keys=await raw.dbsize(),
                    used_memory_mib=round((used - base) / 2**20, 2),
                )
            await store.close()
        await raw.aclose()


async def reap(size: int) -> None:
    with redis_server() as url:
        raw = aioredis.Redis.from_url(url)
        owner = RedisLayer(url, origin=uuid.uuid4().bytes)
        reaper = RedisLayer(url, origin=uuid.uuid4().bytes)
        await owner.start(lambda group, message: None)
        await reaper.start(lambda group, message: None)
        for start in range(0, size, 500):
            await asyncio.gather(
                *(
                    owner.presence_add(f"group-{i}", f"member-{i}", b"{}", 3600)
                    for i in range(start, min(size, start + 500))
                )
            )
        await reaper.presence_reap()  # connect (and load scripts) before counting
        expiring = max(1, size // 100)
        for case in ("nothing expired", f"{expiring} expired"):
            if case != "nothing expired":
                await asyncio.gather(
                    *(
                        owner.presence_add(f"group-{i}", f"short-{i}", b"{}", 0.05)
                        for i in range(expiring)
                    )
                )
                await asyncio.sleep(0.2)
            before = await _commands(raw)
            began = time.perf_counter()
            error = None
            reaped = 0
            try:
                reaped = len(await reaper.presence_reap())
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - began
            commands = await _commands(raw) - before - 1  # minus our own INFO
            _emit(
                scenario="reap",
                groups=size,
                case=case,
                reaped=reaped,
                redis_commands=commands,
                seconds=round(elapsed, 3),
                error=error,
            )
        await owner.stop()
        await reaper.stop()
        await raw.aclose()


async def join_storm(size: int) -> None:
    with redis_server() as url:
        for shape in ("distinct groups", "one group"):
            layer = RedisLayer(url)
            await layer.start(lambda group, message: None)

            async def join(i: int, shape: str = shape, layer: RedisLayer = layer) -> None:
                group = f"group-{i}" if shape == "distinct groups" else "lobby"
                await asyncio.gather(
                    layer.subscribe(group),
                    layer.presence_add(group, f"member-{i}", b'{"name":"x"}', 30),
                )

            began = time.perf_counter()
            results = await asyncio.gather(*(join(i) for i in range(size)), return_exceptions=True)
            elapsed = time.perf_counter() - began
            failures = [r for r in results if isinstance(r, BaseException)]
            kinds = sorted({type(f).__name__ for f in failures})
            # the layer still works: a message published elsewhere arrives
            other = RedisLayer(url, origin=uuid.uuid4().bytes)
            await other.start(lambda group, message: None)
            await other.publish(
                "group-0" if shape == "distinct groups" else "lobby", WireMessage("text", b"x")
            )
            _emit(
                scenario="join-storm",
                joins=size,
                shape=shape,
                failures=len(failures),
                failure_kinds=kinds,
                seconds=round(elapsed, 2),
                members_listed=len(await layer.presence_list("lobby"))
                if shape == "one group"
                else None,
                reconnects=layer.health().reconnects,
            )
            await other.stop()
            await layer.stop()
            raw = aioredis.Redis.from_url(url)
            await raw.flushall()
            await raw.aclose()


async def publish(size: int) -> None:
    """Publishing cost on one layer: awaited one by one, and all at once."""
    with redis_server() as url:
        layer = RedisLayer(url)
        await layer.start(lambda group, message: None)
        listener = RedisLayer(url, origin=uuid.uuid4().bytes)
        await listener.start(lambda group, message: None)
        await listener.subscribe("room")
        history = layer.default_history()
        message = WireMessage("json", b'{"text":"hello, world"}')
        await layer.publish("room", message)  # connect first

        async def one_by_one(step: Any) -> float:
            began = time.perf_counter()
            for _ in range(size):
                await step()
            return (time.perf_counter() - began) / size * 1e6

        async def all_at_once(step: Any) -> float:
            began = time.perf_counter()
            await asyncio.gather(*(step() for _ in range(size)))
            return (time.perf_counter() - began) / size * 1e6

        async def unsaved() -> None:
            await layer.publish("room", message)

        async def append_then_publish() -> None:
            entry = await history.append("room", "json", message.data)
            await layer.publish("room", WireMessage("json", message.data, entry.seq))

        steps = {"publish": unsaved, "append+publish": append_then_publish}
        if hasattr(layer, "publish_saved"):

            async def saved() -> None:
                await layer.publish_saved("room", "json", message.data, history=history)

            steps["publish_saved"] = saved
        rounds = 7
        for shape, run in (("one by one", one_by_one), ("all at once", all_at_once)):
            samples: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(rounds):  # interleaved, so that load from others hits all alike
                for name, step in steps.items():
                    try:
                        samples[name].append(await run(step))
                    except Exception as exc:
                        samples[name].append(float("nan"))
                        print(f"# {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            for name, values in samples.items():
                _emit(
                    scenario="publish",
                    call=name,
                    shape=shape,
                    messages=size,
                    rounds=rounds,
                    failed_rounds=sum(v != v for v in values),
                    us_per_message_min=round(min(values), 1),
                    us_per_message_median=round(statistics.median(values), 1),
                )
        await history.close()
        await listener.stop()
        await layer.stop()


# -- one Redis against a Redis Cluster ----------------------------------------------------


def _port_pair_free(port: int) -> bool:
    """``port`` and its cluster bus port (+10000) can both be bound."""
    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


@contextlib.contextmanager
def redis_processes(primaries: int) -> Iterator[tuple[str, list[int]]]:
    """``primaries`` = 0: one plain redis-server; else a Redis Cluster of that many
    primaries (no replicas). Yields the channels URL and the servers' pids."""
    binary = shutil.which("redis-server") or "redis-server"
    workdir = tempfile.mkdtemp(prefix="nexios-bench-")
    ports: list[int] = []
    while len(ports) < max(1, primaries):  # below the ephemeral range, bus ports too
        port = random.randrange(20000, 22768)
        if port not in ports and _port_pair_free(port):
            ports.append(port)
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
    common += ["--loglevel", "warning"]
    if primaries:
        common += ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
    processes = [
        subprocess.Popen(
            [binary, "--port", str(port), *common, "--cluster-config-file", f"{port}.conf"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            _wait_for(lambda port=port: redis.Redis(port=port).ping())
        if primaries:
            nodes = [f"127.0.0.1:{port}" for port in ports]
            create = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0"]
            subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True)
            _wait_for(lambda: all(_cluster_ok(port) for port in ports))
            url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        else:
            url = f"redis://127.0.0.1:{ports[0]}/0"
        yield url, [process.pid for process in processes]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port) as client:
        return bool(client.cluster("INFO")["cluster_state"] == "ok")


def _wait_for(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not come up")
        time.sleep(0.02)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _publishing(
    url: str, kind: str, groups: list[str], start_at: float, seconds: float, inflight: int
) -> int:
    layer = layer_from_url(url)
    await layer.start(lambda group, message: None)
    history = layer.default_history()
    data = b'{"text":"hello, world"}'
    message = WireMessage("json", data)
    for group in groups:  # connect everywhere, load the scripts
        await layer.publish(group, message)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    sent = 0

    async def worker(first: int) -> None:
        nonlocal sent
        n = first
        while time.monotonic() < deadline:
            group = groups[n % len(groups)]
            n += inflight
            if kind == "saved":
                await layer.publish_saved(group, "json", data, history=history)
            else:
                await layer.publish(group, message)
            sent += 1

    await asyncio.gather(*(worker(i) for i in range(inflight)))
    await history.close()
    await layer.stop()
    return sent


async def _receiving(
    url: str, groups: list[str], start_at: float, seconds: float, ready: Any
) -> int:
    counted = 0
    window = (start_at, start_at + seconds)

    def receiver(group: str, message: WireMessage) -> None:
        nonlocal counted
        if window[0] <= time.time() < window[1]:
            counted += 1

    layer = layer_from_url(url)
    await layer.start(receiver)
    await asyncio.gather(*(layer.subscribe(group) for group in groups))
    ready.set()
    await asyncio.sleep(max(0.0, window[1] + 0.5 - time.time()))
    await layer.stop()
    return counted


def _publisher_process(args: tuple[Any, ...]) -> int:
    return asyncio.run(_publishing(*args))


def _receiver_process(args: tuple[Any, ...], ready: Any, out: Any) -> None:
    out.put(asyncio.run(_receiving(*args, ready)))


def _throughput_sample(
    url: str, pids: list[int], kind: str, groups: list[str], publishers: int, seconds: float
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every process connected and warm by then
    ready, out = context.Event(), context.Queue()
    receiver = context.Process(
        target=_receiver_process, args=((url, groups, start_at, seconds), ready, out)
    )
    receiver.start()
    ready.wait(30)
    before = [_cpu_seconds(pid) for pid in pids]
    load_before = os.getloadavg()[0]
    with context.Pool(publishers) as pool:
        sent = sum(
            pool.map(
                _publisher_process,
                [(url, kind, groups, start_at, seconds, 64) for _ in range(publishers)],
            )
        )
    cpu = [_cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True)]
    received = out.get(timeout=30)
    receiver.join(10)
    return {
        "broadcasts_per_s": round(sent / seconds),
        "delivered_per_s": round(received / seconds),
        "redis_cpu_s": [round(used, 2) for used in cpu],
        "redis_us_per_broadcast": round(sum(cpu) / sent * 1e6, 2),
        # what the busiest redis-server could take at 100 % of one core, at this mix
        "redis_ceiling_per_s": round(sent / max(cpu)) if max(cpu) > 0 else None,
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def cluster_throughput(size: int, publishers: int = 2, seconds: float = 5.0) -> None:
    groups = [f"room-{i}" for i in range(size)]
    rounds = 3
    setups = {"one redis": 0, "cluster (3 primaries)": 3}
    with contextlib.ExitStack() as stack:
        running = {name: stack.enter_context(redis_processes(n)) for name, n in setups.items()}
        _emit(scenario="cluster-throughput", cpus=os.cpu_count(), load_1min=os.getloadavg())
        for round_index in range(rounds):  # interleaved: load drift hits both alike
            for kind in ("unsaved", "saved"):
                for name, (url, pids) in running.items():
                    sample = _throughput_sample(url, pids, kind, groups, publishers, seconds)
                    _emit(
                        scenario="cluster-throughput",
                        backend=name,
                        kind=kind,
                        groups=size,
                        publishers=publishers,
                        seconds=seconds,
                        round=round_index + 1,
                        **sample,
                    )


SCENARIOS = {
    "memory-history": memory_history,
    "redis-history": redis_history,
    "reap": reap,
    "join-storm": join_storm,
    "publish": publish,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted([*SCENARIOS, "cluster-throughput"]))
    parser.add_argument("--size", type=int, action="append", help="groups / joins (repeatable)")
    parser.add_argument("--publishers", type=int, default=2, help="cluster-throughput only")
    parser.add_argument("--seconds", type=float, default=5.0, help="cluster-throughput only")
    args = parser.parse_args()
    if args.scenario == "cluster-throughput":
        for size in args.size or [200]:
            cluster_throughput(size, args.publishers, args.seconds)
        return
    defaults = {
        "memory-history": [50_000],
        "redis-history": [20_000],
        "reap": [20_000, 80_000],
        "publish": [2_000],
    }
    for size in args.size or defaults.get(args.scenario, [20_000]):
        asyncio.run(SCENARIOS[args.scenario](size))


if __name__ == "__main__":
    main()
