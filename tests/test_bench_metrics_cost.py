"""bench/metrics_cost.py: its in-process driver runs each path end to end on this tree,
with metrics off and on, and every message reaches the fake server."""

from __future__ import annotations

import pytest

from bench.metrics_cost import INPROC_KINDS, ROOT, inproc_sample, micro

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("kind", sorted(INPROC_KINDS))
@pytest.mark.parametrize("metrics", [False, True], ids=["off", "on"])
def test_the_in_process_driver_measures_each_path(kind: str, metrics: bool) -> None:
    # The driver waits until every copy reached the fake server: a lost message would
    # hang it (the subprocess has a timeout), so a result means all were delivered.
    ns = inproc_sample(kind, 40, ROOT, metrics)
    assert 0 < ns < 1e6


def test_the_hook_timings_are_positive() -> None:
    timings = micro()
    assert set(timings) >= {"limiter.check (metrics on)", "send (metrics on)"}
    assert all(value > 0 for value in timings.values())
