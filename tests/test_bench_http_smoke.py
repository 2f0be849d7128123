"""bench/run_http.py --quick: every HTTP scenario runs end to end with positive numbers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 90

pytestmark = [pytest.mark.slow, pytest.mark.bench]

EXPECTED = {
    "json": {"raw", "starlette", "nexios"},
    "path": {"raw", "starlette", "nexios"},
    "mw3": {"raw", "starlette", "nexios"},
    "fmw3": {"starlette", "nexios"},
}


def test_quick_http_run_covers_every_scenario(tmp_path: Path) -> None:
    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the benchmark pins server and client to two cores")
    out = tmp_path / "http.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run_http", "--quick", "--conns", "4", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {name: set(rows) for name, rows in data["samples"].items()} == EXPECTED
    for name, rows in data["samples"].items():
        for row, runs in rows.items():
            for run in runs:
                assert run["requests"] > 0 and math.isfinite(run["rps"]), (name, row, run)
                assert 0 < run["p50_ms"] <= run["p99_ms"], (name, row, run)
        assert data["summary"][name]["nexios_vs_starlette"] > 0
