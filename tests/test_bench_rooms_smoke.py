"""The rooms and growth benchmarks run end to end at a tiny size and report sane figures.

Only the harnesses are checked here (every server row, every phase, counts that add
up); the figures themselves come from full runs, see ``bench/README.md``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.growth.run import SMOKE as GROWTH_SMOKE
from bench.rooms.run import SERVERS
from bench.rooms.run import SMOKE as ROOMS_SMOKE

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 60

pytestmark = [pytest.mark.slow, pytest.mark.bench]


def need_machine() -> None:
    for tool in ("taskset", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the benchmarks pin servers and client to two cores")
    pytest.importorskip("picows")


def run_module(
    module: str, out: Path, env: dict[str, str] | None = None, *args: str
) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--out", str(out), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["meta"]["kind"] == "smoke"
    return data


def test_rooms_smoke_every_server_delivers_every_copy(tmp_path: Path) -> None:
    need_machine()
    for package in ("socketio", "channels", "channels_redis", "django", "broadcaster"):
        pytest.importorskip(package, reason="the peers extra: pip install -e '.[peers]'")

    # socket.io pings every 0.3 s here: a client that did not answer would lose members.
    data = run_module(
        "bench.rooms.run", tmp_path / "rooms.json", {"BENCH_SIO_PING_INTERVAL": "0.3"}
    )

    plan = ROOMS_SMOKE
    assert [run["server"] for run in data["runs"]] == list(SERVERS)
    for run in data["runs"]:
        name = run["server"]
        assert run["sockets"] == plan.rooms * plan.members, name
        steady = run["steps"][0]
        # The steady load is tiny: every copy of every message must arrive, once.
        assert steady["sent"] > 0, name
        assert steady["expected"] == steady["sent"] * plan.members, name
        assert steady["delivered"] == steady["expected"], (name, steady)
        assert steady["duplicates"] == 0, name
        assert 0 < steady["p50_ms"] <= steady["p99_ms"] <= steady["max_ms"], (name, steady)
        assert sum(steady["server_cpu_s"]) >= 0 and steady["client_cpu_s"] >= 0, name
        assert math.isfinite(steady["server_us_per_delivery"]), name
        assert all(step["joined_after"] == run["sockets"] for step in run["steps"]), name
        assert run["knee"]["rate"] in (0.0, plan.base_rate, *plan.knee_rates), name


def test_rooms_knee_only_ramps_from_the_lowest_rate_and_reports_the_knee(
    tmp_path: Path,
) -> None:
    need_machine()
    out = tmp_path / "knee.json"
    rates = (24.0, 48.0)
    args = ("--knee-only", "--warmup", "0.5", "--servers", "nexios")
    args += ("--knee-rates", ",".join(map(str, rates)))
    data = run_module("bench.rooms.run", out, None, *args)

    (run,) = data["runs"]
    assert data["meta"]["plan"]["steady"] is False
    # No steady step: a warm-up at the first rate, apart, then the ramp alone.
    assert run["warmup"]["rate"] == rates[0] and run["warmup"]["delivered"] > 0
    assert [step["rate"] for step in run["steps"]] == list(rates)
    assert all(step["delivered"] == step["expected"] > 0 for step in run["steps"])
    assert run["knee"] == {"rate": rates[-1], "failed_at": None}
    report = tmp_path / "knee.md"
    subprocess.run(
        [sys.executable, "-m", "bench.rooms.report", str(out), "--out", str(report)],
        cwd=ROOT,
        check=True,
        timeout=TIME_LIMIT,
    )
    text = report.read_text()
    assert "## Knee: rates from the lowest" in text and "| nexios | ≥ 48 | none |" in text


def test_growth_smoke_reports_every_phase(tmp_path: Path) -> None:
    need_machine()

    data = run_module("bench.growth.run", tmp_path / "growth.json")

    plan = GROWTH_SMOKE
    kinds = {(run["size"], run["path"], run["groups"]) for run in data["runs"]}
    expected = {(size, path, "one") for size in plan.sizes for path in ("frame-once", "portable")}
    assert kinds == expected | {(plan.solo_groups, "frame-once", "each")}
    for run in data["runs"]:
        label = (run["size"], run["path"], run["groups"])
        assert run["connects_per_s"] > 0, label
        assert run["join_us"]["p50"] > 0 and run["leave_us"]["p50"] > 0, label
        assert run["rss"]["joined"] > run["rss"]["baseline"], label
        assert run["presence_members"] == (run["size"] if run["groups"] == "one" else 1), label
        # Presence refresh while idle: every member's entry is refreshed (ZADD) at least
        # once in the window (heartbeats run every ttl / 3, four times the window here).
        idle = run["idle"]
        refreshes = idle["redis_by_command_per_s"].get("zadd", 0) * idle["seconds"]
        assert refreshes >= run["size"], (label, idle)
        if run["groups"] == "one":
            assert 0 < run["broadcast_ms"]["p50"] <= run["broadcast_ms"]["p99"], label
