"""What metrics cost per message: echo and fan-out with metrics on, off, and before
metrics were wired in (another tree), interleaved in one run.

    .venv/bin/python -m bench.metrics_cost --out bench/results/metrics_cost.json
    .venv/bin/python -m bench.metrics_cost --quick --out /tmp/metrics-cost.json  # smoke

Rows, each served by ``bench/app_nexios.py`` under uvicorn's websockets-sansio protocol,
nexios's sans-I/O frame-once wire and its compiled picows wire (``nexios run``'s
default):

- ``before``: the code of ``--base`` (default ``git merge-base HEAD main``), extracted
  with ``git archive`` into a temporary folder and served from there;
- ``off``: this tree, metrics off (the default);
- ``on``: this tree, ``NEXIOS_METRICS=1``.

Scenarios: echo at 50 connections (round trips/s) and fan-out to 1,000 members
(messages delivered/s), as in ``bench.run`` (same client, pinning, quiet waits and
rotation of the row order every round). Besides throughput, each sample's server CPU
time per message (µs) is reported: it moves less than throughput when other jobs share
the machine. The summary gives medians over rounds and the ratios ``on/off`` (the cost
of metrics) and ``off/before`` (what the hooks cost with metrics off).

``--inproc N`` adds N interleaved rounds of ``bench/metrics_inproc.py``: the framework's
own path per message, driven in process by fake servers (echo; fan-out to 1,000 members
through ASGI and through the frame sink), for each tree and metrics setting — steady
figures for what metrics add per message, in ns. ``--micro`` adds in-process timings
(ns per call, ``timeit``) of the per-message hooks alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.run import (
    FRAME_ONCE,
    PICOWS_WIRE,
    ROOT,
    SERVER_CORE,
    App,
    Plan,
    Results,
    Server,
    fanout_spec,
    rotate,
    run_client,
)

PLAN = Plan(
    rounds=8,
    duration=2.0,
    warmup=0.3,
    echo_conns=(50,),
    json_conns=50,
    fanout_members=(1000,),
    latency_count=50,
    latency_time=1.5,
    window=16,
    memory_conns=(),
    joinleave=(),
    redis_members=0,
)
QUICK = Plan(
    rounds=1,
    duration=0.2,
    warmup=0.05,
    echo_conns=(5,),
    json_conns=5,
    fanout_members=(20,),
    latency_count=5,
    latency_time=0.3,
    window=2,
    memory_conns=(),
    joinleave=(),
    redis_members=0,
)
TARGET = "bench.app_nexios:app"
QUIET_LOAD = 0.3
"""A sample counts as quiet when other jobs took less than this share of either core."""


PROTOCOLS = (
    ("websockets-sansio", "", "websockets-sansio"),
    (FRAME_ONCE, "+frame-once", "frame-once"),
    (PICOWS_WIRE, "+picows", "picows wire"),
)


def rows(base: Path) -> list[App]:
    found = []
    for protocol, suffix, _ in PROTOCOLS:
        found += [
            App(f"before{suffix}", TARGET, ws=protocol, root=base),
            App(f"off{suffix}", TARGET, ws=protocol),
            App(f"on{suffix}", TARGET, ws=protocol, env={"NEXIOS_METRICS": "1"}),
        ]
    return found


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """``commit``'s tree in a temporary folder (``git archive``: no worktree is added)."""
    with tempfile.TemporaryDirectory(prefix="nexios-before-") as folder:
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


def per_message_cpu(sample: dict[str, Any]) -> float | None:
    """Server CPU µs per message (round trip, or delivered copy) in the measured window."""
    rate = sample.get("rate")
    cpu = sample.get("server_cpu")
    if not rate or not cpu:
        return None
    return float(sum(cpu)) / float(rate) * 1e6


def measure(plan: Plan, app: App, results: Results, logs: Path) -> None:
    with Server(app, logs) as server:
        base = {"urls": [server.url], "duration": plan.duration, "warmup": plan.warmup}
        for conns in plan.echo_conns:
            sample = run_client({**base, "kind": "echo", "conns": conns}, [server])
            sample["server_us_per_message"] = per_message_cpu(sample)
            info = {"kind": "echo", "conns": conns, "unit": "round trips/s"}
            results.add(f"echo_{conns}", info, app.name, sample)
        for members in plan.fanout_members:
            sample = run_client(fanout_spec(plan, [server], members), [server])
            sample["server_us_per_message"] = per_message_cpu(sample)
            info = {"kind": "fanout", "members": members, "unit": "messages delivered/s"}
            results.add(f"fanout_{members}", info, app.name, sample)


def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per scenario and protocol: medians of each row and the two ratios."""
    table = []
    for scenario, entry in data["scenarios"].items():
        apps = entry["apps"]
        for _, suffix, protocol in PROTOCOLS:
            medians = {}
            for row in ("before", "off", "on"):
                samples = apps.get(row + suffix)
                if not samples:
                    continue
                per_message = samples["server_us_per_message"]
                quiet = [
                    us
                    for us, load in zip(per_message, samples["other_load"], strict=True)
                    if us is not None and max(load) < QUIET_LOAD
                ]
                medians[row] = {
                    "rate": statistics.median(samples["rate"]),
                    "us": statistics.median(us for us in per_message if us is not None),
                    "quiet_us": statistics.median(quiet) if quiet else None,
                    "quiet_samples": len(quiet),
                    "samples": len(samples["rate"]),
                }
            if {"before", "off", "on"} <= medians.keys():
                table.append(
                    {
                        "scenario": scenario,
                        "protocol": protocol,
                        **{f"{row}_rate": medians[row]["rate"] for row in medians},
                        **{f"{row}_us": medians[row]["us"] for row in medians},
                        "on/off rate": medians["on"]["rate"] / medians["off"]["rate"],
                        "on/off cpu": medians["on"]["us"] / medians["off"]["us"],
                        "off/before rate": medians["off"]["rate"] / medians["before"]["rate"],
                        "off/before cpu": medians["off"]["us"] / medians["before"]["us"],
                        "rounds": medians["on"]["samples"],
                        **{f"{row}_quiet_us": medians[row]["quiet_us"] for row in medians},
                        **{
                            f"{row}_quiet_samples": medians[row]["quiet_samples"] for row in medians
                        },
                    }
                )
    return table


def micro() -> dict[str, float]:
    """ns per call of the per-message hooks, in this process (no sockets)."""
    from nexios.limits import Limits, MessageLimiter
    from nexios.metrics import Metrics
    from nexios.ops.meter import ConnectionMeter, MeteredLimiter

    limits = Limits(messages_per_second=1e9, burst=10**9, max_connections_per_client=None)
    metrics = Metrics()
    message = {"type": "websocket.receive", "text": "nexios bench echo payload 0123456789abcdef"}
    plain, metered = MessageLimiter(limits), MeteredLimiter(limits, metrics)

    async def raw_send(message: dict[str, Any]) -> None:
        return None

    meter = ConnectionMeter(metrics, raw_send)
    outgoing = {"type": "websocket.send", "text": message["text"]}
    number = 200_000

    def ns(statement: Any) -> float:
        return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e9

    metrics.timed = lambda sending: sending  # type: ignore[method-assign]  # no loop here

    return {
        "limiter.check (metrics off)": ns(lambda: plain.check(message)),
        "limiter.check (metrics on)": ns(lambda: metered.check(message)),
        # each call makes the server's coroutine (closed unawaited here)
        "send (metrics off)": ns(lambda: raw_send(outgoing).close()),
        "send (metrics on)": ns(lambda: meter.send(outgoing).close()),  # type: ignore[attr-defined]
        "delivered() per group message": ns(lambda: metrics.delivered(1000, 64)),
    }


INPROC = ROOT / "bench" / "metrics_inproc.py"
INPROC_KINDS = {"echo": 20_000, "fanout": 300, "fanout-frames": 300}


def inproc_sample(kind: str, count: int, root: Path, metrics: bool) -> float:
    """ns per message of one in-process run (best of 5), in ``root``'s tree."""
    env = {key: value for key, value in os.environ.items() if key != "NEXIOS_METRICS"}
    if metrics:
        env["NEXIOS_METRICS"] = "1"
    command = ["taskset", "-c", SERVER_CORE, sys.executable, "-c", INPROC.read_text()]
    done = subprocess.run(
        [*command, kind, str(count), "5"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    ns: float = json.loads(done.stdout.strip().splitlines()[-1])["ns"]
    return ns


def inproc(rounds: int, before: Path, quick: bool) -> dict[str, Any]:
    """Interleaved rounds of every (kind, row); medians and what metrics add, in ns."""
    variants = [("before", before, False), ("off", ROOT, False), ("on", ROOT, True)]
    samples: dict[str, dict[str, list[float]]] = {kind: {} for kind in INPROC_KINDS}
    for round_index in range(rounds):
        print(f"in process, round {round_index + 1}/{rounds}", flush=True)
        for kind, count in INPROC_KINDS.items():
            for name, root, metrics in variants[round_index % 3 :] + variants[: round_index % 3]:
                ns = inproc_sample(kind, count // 20 if quick else count, root, metrics)
                samples[kind].setdefault(name, []).append(ns)
                print(f"  {kind:<14} {name:<7} {ns:8.1f} ns", flush=True)
    table = {}
    for kind, rows in samples.items():
        # Each sample is already a best of 5; the best over rounds is the run least
        # disturbed by other jobs, the steadiest estimate of the path's own cost.
        best = {name: min(values) for name, values in rows.items()}
        table[kind] = {
            "samples_ns": rows,
            "median_ns": {name: statistics.median(values) for name, values in rows.items()},
            "best_ns": best,
            "on_minus_off_ns": best["on"] - best["off"],
            "off_minus_before_ns": best["off"] - best["before"],
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--base", default=None, help="the commit of the 'before' rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/metrics_cost.json")
    parser.add_argument("--micro", action="store_true", help="add in-process hook timings")
    parser.add_argument(
        "--inproc", type=int, default=0, metavar="N", help="add N in-process rounds"
    )
    parser.add_argument(
        "--no-servers", action="store_true", help="skip the server rows (with --inproc)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else PLAN
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    base = (
        args.base
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    results = Results(plan, args.quick)
    results.data["meta"]["base"] = base
    results.data["meta"]["command"] = " ".join(
        [".venv/bin/python -m bench.metrics_cost", *sys.argv[1:]]
    )
    started = time.monotonic()
    with checkout(base) as before, tempfile.TemporaryDirectory(prefix="nexios-bench-") as tmp:
        apps = rows(before)
        for round_index in range(0 if args.no_servers else plan.rounds):
            print(f"round {round_index + 1}/{plan.rounds}", flush=True)
            for app in rotate(apps, round_index):
                measure(plan, app, results, Path(tmp))
        if args.inproc:
            results.data["inproc"] = inproc(args.inproc, before, args.quick)
    results.summarize()
    results.data["summary"] = summary(results.data)
    if args.micro:
        results.data["micro_ns"] = micro()
    results.data["meta"]["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results.data, indent=1, sort_keys=True) + "\n")
    for row in results.data["summary"]:
        print(
            f"{row['scenario']:<14} {row['protocol']:<18} "
            f"on/off rate {row['on/off rate']:.3f} cpu {row['on/off cpu']:.3f}   "
            f"off/before rate {row['off/before rate']:.3f} cpu {row['off/before cpu']:.3f}"
        )
    for kind, row in results.data.get("inproc", {}).items():
        best = row["best_ns"]
        print(
            f"in process {kind:<14} best: before {best['before']:7.1f} off {best['off']:7.1f} "
            f"on {best['on']:7.1f} ns   on-off {row['on_minus_off_ns']:+6.1f} "
            f"off-before {row['off_minus_before_ns']:+6.1f}"
        )
    for name, value in results.data.get("micro_ns", {}).items():
        print(f"{name:<32} {value:8.1f} ns")
    print(f"wrote {args.out} in {results.data['meta']['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
