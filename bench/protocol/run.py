"""The protocol benchmark: fan-out through the endpoint against plain ``group_send``, and
protocol messages per second through one connection.

    .venv/bin/python -m bench.protocol.run --out bench/results/protocol.json
    .venv/bin/python -m bench.protocol.run --quick --out /tmp/protocol-quick.json

The server is ``bench/protocol/app.py`` under uvicorn with nexios's frame-once protocol
(what ``nexios run`` uses), pinned to core 0; the picows client (``bench.protocol.client``)
on core 1. Rounds are interleaved and the order of the paths alternates each round.
Every sample records the CPU of the server and the client and the *other load* on both
cores (work by neither: the machine is shared); the run records the load average too.

- **fan-out**: the same ``ChannelBox.group_send`` of a 64-byte text to N members that
  are plain (``Channel(ws)``: the text frame) or protocol clients (the ``message`` push,
  built once per broadcast by the endpoint's framer). Target: protocol ≥ 0.8x plain.
- **one connection**: ``window`` publishes in flight on one socket — protocol
  ``publish`` commands (parse, hooks, ``group_send``, reply, the push back) against a
  handler that sends each text frame to its own group (no protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import FRAME_ONCE, App, Server, run_client, wait_quiet

APP = App("nexios-frame-once", "bench.protocol.app:app", ws=FRAME_ONCE)
MODULE = "bench.protocol.client"


def fanout_spec(url: str, path: str, members: int, quick: bool) -> dict[str, Any]:
    return {
        "kind": "fanout",
        "url": url,
        "path": path,
        "members": members,
        "payload": 64,
        "latency_count": 20 if quick else 100,
        "latency_time": 0.5 if quick else 3.0,
        "window": 16,
        "duration": 0.3 if quick else 2.0,
    }


def publish_spec(url: str, path: str, group: str, quick: bool) -> dict[str, Any]:
    return {
        "kind": "publish",
        "url": url,
        "path": path,
        "group": group,
        "window": 16,
        "warmup": 0.1 if quick else 0.5,
        "duration": 0.3 if quick else 2.0,
    }


SCENARIOS = [
    ("fanout", "member"),
    ("fanout", "protocol"),
    ("publish", "loop"),
    ("publish", "protocol"),
    ("publish", "protocol-saved"),
]


def one_round(index: int, members: int, quick: bool, logs: Path) -> list[dict[str, Any]]:
    samples = []
    order = SCENARIOS if index % 2 == 0 else SCENARIOS[::-1]
    with Server(APP, logs) as server:
        for kind, path in order:
            wait_quiet(5.0)
            if kind == "fanout":
                spec = fanout_spec(server.url, path, members, quick)
            else:
                group = "saved:pipe" if path == "protocol-saved" else "pipe"
                spec = publish_spec(server.url, path.removesuffix("-saved"), group, quick)
            load = os.getloadavg()[0]
            result = run_client(spec, [server], module=MODULE)
            samples.append({"kind": kind, "path": path, "round": index, "load1": load, **result})
            print(
                f"  {kind:8} {path:15} {result['rate']:12,.0f}/s  other load "
                f"{result.get('other_load')}",
                flush=True,
            )
    return samples


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for kind, path in SCENARIOS:
        mine = [s for s in samples if s["kind"] == kind and s["path"] == path]
        rates = [s["rate"] for s in mine]
        row = {"rate": statistics.median(rates), "min": min(rates), "max": max(rates)}
        if kind == "fanout":
            row["p50_ms"] = statistics.median(s["p50_ms"] for s in mine)
            row["p99_ms"] = statistics.median(s["p99_ms"] for s in mine)
        row["server_cpu"] = statistics.median(s["server_cpu"][0] for s in mine)
        row["client_cpu"] = statistics.median(s["client_cpu"] for s in mine)
        row["other_load"] = max(max(s["other_load"]) for s in mine)
        # Server CPU per delivery (or publish): what the shared machine disturbs least.
        row["server_us"] = statistics.median(cost(s) for s in mine)
        rows[f"{kind}/{path}"] = row
    for kind, mine, base in (("fanout", "protocol", "member"), ("publish", "protocol", "loop")):
        rows[f"{kind}_ratio"] = paired(samples, kind, mine, base, lambda s: s["rate"])
        rows[f"{kind}_cpu_ratio"] = paired(samples, kind, mine, base, lambda s: 1 / cost(s))
    return rows


def cost(sample: dict[str, Any]) -> float:
    """Server CPU microseconds per delivery (fan-out) or per publish."""
    return float(sample["server_cpu"][0] / sample["rate"] * 1e6)


def paired(samples: list[dict[str, Any]], kind: str, mine: str, base: str, value: Any) -> float:
    """Median over rounds of ``value(mine) / value(base)`` within each round: samples a few
    seconds apart share the machine's load better than medians over the whole run."""
    ratios = []
    for index in sorted({s["round"] for s in samples}):
        pair = {s["path"]: s for s in samples if s["round"] == index and s["kind"] == kind}
        ratios.append(value(pair[mine]) / value(pair[base]))
    return statistics.median(ratios)


def table(summary: dict[str, Any], members: int) -> str:
    lines = [
        "| scenario | path | rate (median, min-max) | p50 / p99 ms | server µs each "
        "| server CPU | client CPU | other load (max) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, path in SCENARIOS:
        row = summary[f"{kind}/{path}"]
        unit = "deliveries/s" if kind == "fanout" else "publishes/s"
        latency = f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}" if kind == "fanout" else "-"
        what = f"fan-out to {members:,}" if kind == "fanout" else "one connection, 16 in flight"
        lines.append(
            f"| {what} | {path} | {row['rate']:,.0f} {unit} ({row['min']:,.0f}-{row['max']:,.0f}) "
            f"| {latency} | {row['server_us']:.2f} | {row['server_cpu']:.0%} "
            f"| {row['client_cpu']:.0%} "
            f"| {row['other_load']:.0%} |"
        )
    lines.append("")
    lines.append(
        "Fan-out through the endpoint / plain `group_send` (median of per-round ratios): "
        f"throughput **{summary['fanout_ratio']:.2f}x**, server CPU per delivery "
        f"**{summary['fanout_cpu_ratio']:.2f}x** as efficient (target ≥ 0.8x). Publishes "
        f"through the protocol / the plain loop: throughput {summary['publish_ratio']:.2f}x, "
        f"CPU {summary['publish_cpu_ratio']:.2f}x."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.protocol.run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a smoke run, ~20 s")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    members = args.members or (50 if args.quick else 1000)
    began, load_before = time.time(), os.getloadavg()
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nexios-bench-") as logs:
        for index in range(rounds):
            print(f"round {index + 1}/{rounds}", flush=True)
            samples += one_round(index, members, args.quick, Path(logs))
    summary = summarise(samples)
    result = {
        "started": began,
        "seconds": round(time.time() - began, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "members": members,
        "rounds": rounds,
        "samples": samples,
        "summary": summary,
        "table": table(summary, members),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(result["table"])
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
