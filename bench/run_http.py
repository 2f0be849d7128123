"""The HTTP benchmark: nexios against Starlette and raw ASGI on the same uvicorn.

    .venv/bin/python -m bench.run_http --out bench/results/http.json
    .venv/bin/python -m bench.run_http --quick                        # smoke test, ~15 s

Scenarios, each a closed loop of ``--conns`` keep-alive connections (one request in
flight each) for ``duration`` seconds after a warm-up:

- ``json``: ``GET /json`` answered ``{"hello": "world"}``;
- ``path``: ``GET /items/12345``, an ``int`` path parameter echoed as JSON;
- ``mw3``: ``/json`` behind three pure-ASGI middleware (``bench/http_middleware.py``,
  the same classes for every app);
- ``fmw3``: ``/json`` behind three function-style middleware: ``@app.middleware("http")``
  in nexios, ``BaseHTTPMiddleware`` in Starlette.

Servers run on core 0, the client (``bench/http_client.py``) on core 1, every server
with the same uvicorn options as ``bench.run``. Rounds are interleaved and the app
order rotates; the report gives medians over rounds and nexios/Starlette ratios, of
requests per second and of requests per CPU-second of the server. On a shared machine
the second is the steadier one: other jobs on the server's core lower the first for
whichever app is measured at the time, but leave the cost of a request alone.
``--report FILE`` prints the tables of an earlier run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import (
    CLIENT_CORE,
    PYTHON,
    ROOT,
    SERVER_CORE,
    UVICORN,
    App,
    Server,
    core_busy,
    core_times,
    cpu_seconds,
    wait_quiet,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    apps: dict[str, str]  # row name -> uvicorn target


SCENARIOS = [
    Scenario(
        "json",
        "/json",
        {
            "raw": "bench.app_http_raw:app",
            "starlette": "bench.app_http_starlette:app",
            "nexios": "bench.app_http_nexios:app",
        },
    ),
    Scenario(
        "path",
        "/items/12345",
        {
            "raw": "bench.app_http_raw:app",
            "starlette": "bench.app_http_starlette:app",
            "nexios": "bench.app_http_nexios:app",
        },
    ),
    Scenario(
        "mw3",
        "/json",
        {
            "raw": "bench.app_http_raw:app_mw",
            "starlette": "bench.app_http_starlette:app_mw",
            "nexios": "bench.app_http_nexios:app_mw",
        },
    ),
    Scenario(
        "fmw3",
        "/json",
        {
            "starlette": "bench.app_http_starlette:app_fmw",
            "nexios": "bench.app_http_nexios:app_fmw",
        },
    ),
]


def measure(server: Server, spec: dict[str, Any], quiet_wait: float) -> dict[str, Any]:
    """One client run against ``server``: requests/s, latency and both sides' CPU."""
    if quiet_wait:
        wait_quiet(quiet_wait)
    command = ["taskset", "-c", CLIENT_CORE, PYTHON, "-m", "bench.http_client", json.dumps(spec)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    marks: dict[str, tuple[float, float, float, dict[str, tuple[float, float]]]] = {}
    try:
        for line in process.stdout:
            message = json.loads(line)
            event = message.pop("event")
            if event in ("start", "stop"):
                marks[event] = (
                    time.monotonic(),
                    cpu_seconds(server.pid),
                    cpu_seconds(process.pid),
                    core_times(),
                )
            elif event == "result":
                t0, server0, client0, cores0 = marks["start"]
                t1, server1, client1, cores1 = marks["stop"]
                wall = t1 - t0
                busy = core_busy(cores0, cores1)
                server_cpu = (server1 - server0) / wall
                client_cpu = (client1 - client0) / wall
                message["server_cpu"] = round(server_cpu, 3)
                message["client_cpu"] = round(client_cpu, 3)
                message["other_load"] = [
                    round(max(0.0, busy[SERVER_CORE] - server_cpu), 3),
                    round(max(0.0, busy[CLIENT_CORE] - client_cpu), 3),
                ]
                process.wait(timeout=10)
                return message
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise RuntimeError(f"the client exited ({process.wait()}) without a result: {spec}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http.json")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--only", default=None, help="comma list of scenarios")
    parser.add_argument("--quiet-wait", type=float, default=None, help="s to wait for idle cores")
    parser.add_argument("--report", type=Path, default=None, help="print an earlier run's tables")
    args = parser.parse_args(argv)
    if args.report is not None:
        print(table(summarize(json.loads(args.report.read_text())["samples"])))
        return 0
    rounds = args.rounds or (1 if args.quick else 5)
    duration, warmup = (0.3, 0.1) if args.quick else (2.0, 0.5)
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 3.0)
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    targets = sorted({target for s in scenarios for target in s.apps.values()})
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    with contextlib.ExitStack() as stack:
        servers = {
            target: stack.enter_context(Server(App(target, target), logs)) for target in targets
        }
        for round_index in range(rounds):
            print(f"round {round_index + 1}/{rounds}", flush=True)
            for scenario in scenarios:
                rows = list(scenario.apps.items())
                shift = round_index % len(rows)
                for row, target in rows[shift:] + rows[:shift]:
                    spec = {
                        "port": servers[target].port,
                        "path": scenario.path,
                        "conns": args.conns,
                        "warmup": warmup,
                        "duration": duration,
                    }
                    sample = measure(servers[target], spec, quiet_wait)
                    samples.setdefault(scenario.name, {}).setdefault(row, []).append(sample)
                    print(
                        f"  {scenario.name:<5} {row:<10} {sample['rps']:>9,.0f} req/s  "
                        f"p99 {sample['p99_ms']:.2f} ms  server cpu {sample['server_cpu']:.2f}  "
                        f"client cpu {sample['client_cpu']:.2f}  other {sample['other_load']}",
                        flush=True,
                    )
    summary = summarize(samples)
    result = {
        "meta": {
            "command": " ".join([".venv/bin/python -m bench.run_http", *(argv or sys.argv[1:])]),
            "rounds": rounds,
            "duration": duration,
            "warmup": warmup,
            "conns": args.conns,
            "uvicorn": UVICORN,
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "summary": summary,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(summary))
    return 0


def summarize(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, rows in samples.items():
        entry: dict[str, Any] = {}
        for row, runs in rows.items():
            rps = [run["rps"] for run in runs]
            per_cpu = [run["rps"] / run["server_cpu"] for run in runs if run["server_cpu"] > 0]
            entry[row] = {
                "rps_median": statistics.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "per_cpu_median": statistics.median(per_cpu) if per_cpu else 0.0,
                "p99_ms_median": statistics.median(run["p99_ms"] for run in runs),
                "server_cpu_median": statistics.median(run["server_cpu"] for run in runs),
            }
        if "starlette" in entry and "nexios" in entry:
            nexios, starlette = entry["nexios"], entry["starlette"]
            entry["nexios_vs_starlette"] = nexios["rps_median"] / starlette["rps_median"]
            if starlette["per_cpu_median"]:
                entry["nexios_vs_starlette_per_cpu"] = (
                    nexios["per_cpu_median"] / starlette["per_cpu_median"]
                )
        summary[scenario] = entry
    return summary


def table(summary: dict[str, Any]) -> str:
    """Two markdown tables: requests/s, then requests per server CPU-second."""
    out = []
    for title, key, ratio_key in (
        ("requests/s, median (min-max)", "rps", "nexios_vs_starlette"),
        ("requests per server CPU-second, median", "per_cpu", "nexios_vs_starlette_per_cpu"),
    ):
        out += [
            f"| scenario: {title} | raw | Starlette | nexios | nexios / Starlette |",
            "|---|---:|---:|---:|---:|",
        ]
        for scenario, entry in summary.items():

            def cell(row: str, entry: dict[str, Any] = entry, key: str = key) -> str:
                if row not in entry:
                    return "-"
                data = entry[row]
                if key == "rps":
                    return (
                        f"{data['rps_median']:,.0f} ({data['rps_min']:,.0f}-{data['rps_max']:,.0f})"
                    )
                return f"{data['per_cpu_median']:,.0f}"

            ratio = entry.get(ratio_key)
            shown = "-" if ratio is None else f"{ratio:.2f}"
            out.append(
                f"| {scenario} | {cell('raw')} | {cell('starlette')} | {cell('nexios')} | {shown} |"
            )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
