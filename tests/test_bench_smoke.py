"""bench/run.py --quick: every scenario runs end to end and reports positive numbers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import QUICK

ROOT = Path(__file__).resolve().parent.parent
# A guard against a hang, not a speed check: the quick run takes ~20 s on idle cores and
# up to ~60 s with every core busy; each client step has its own 90 s timeout too.
TIME_LIMIT = 300

pytestmark = [pytest.mark.slow, pytest.mark.bench]


def expected_scenarios() -> set[str]:
    plan = QUICK
    return {
        *(f"echo_{conns}" for conns in plan.echo_conns),
        f"json_{plan.json_conns}",
        *(f"fanout_{members}" for members in plan.fanout_members),
        *(f"memory_{conns}" for conns in plan.memory_conns),
        *(f"joinleave_{members}" for members in plan.joinleave),
        f"redis_fanout_{plan.redis_members}",
        f"saved_fanout_{plan.saved_members}",
        f"saved_redis_fanout_{plan.saved_members}",
    }


DEFAULT_ROWS = {"raw", "starlette", "nexios", "nexios-frame-once", "nexios-picows"}
EXPECTED_APPS = {
    "echo": DEFAULT_ROWS,
    "json": DEFAULT_ROWS,
    "fanout": DEFAULT_ROWS,
    "memory": DEFAULT_ROWS,
    "joinleave": {"set", "async-set", "nexios"},
    "redis_fanout": {"starlette+broadcaster", "nexios", "nexios-frame-once", "nexios-picows"},
}
SAVED_APPS = {
    "saved_fanout": {"raw", "nexios-saved", "nexios-frame-once-saved"},
    "saved_redis_fanout": {"nexios-saved", "nexios-frame-once-saved", "nexios-frame-once"},
}
METRICS = {
    "echo": ("rate",),
    "json": ("rate",),
    "fanout": ("rate", "p50_ms", "p99_ms"),
    "redis_fanout": ("rate", "p50_ms", "p99_ms"),
    "memory": ("bytes_per_conn",),
    "joinleave": ("add_us", "remove_us"),
}


def test_quick_run_covers_every_scenario(tmp_path: Path) -> None:
    for tool in ("taskset", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the benchmark pins server and client to two cores")
    pytest.importorskip("picows")
    out = tmp_path / "quick.json"

    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["meta"]["quick"] is True
    scenarios = data["scenarios"]
    assert set(scenarios) == expected_scenarios()
    for name, entry in scenarios.items():
        saved = name.rpartition("_")[0]
        expected = SAVED_APPS[saved] if saved in SAVED_APPS else EXPECTED_APPS[entry["kind"]]
        assert set(entry["apps"]) == expected, name
        for app, samples in entry["apps"].items():
            for metric in METRICS[entry["kind"]]:
                value = samples["summary"][metric]["median"]
                assert math.isfinite(value) and value > 0, (name, app, metric, value)
            if entry["kind"] in ("echo", "json", "fanout", "redis_fanout"):
                assert all(cpu > 0 for cpu in samples["client_cpu"]), (name, app)
