"""What each process reports to the dashboard, and how processes are added up."""

from __future__ import annotations

from typing import Any

from nexios import encoding
from nexios.ops.snapshot import SERIES_SECONDS, RateSeries, combine, decode_snapshots


def test_rates_are_the_differences_of_totals_per_second() -> None:
    series = RateSeries(seconds=3)
    series.tick(100, received=10, sent=20, evictions=0)  # the first tick sets the base
    assert series.to_dict() == {"seconds": [], "in": [], "out": [], "evicted": []}
    series.tick(101, 15, 40, 1)
    series.tick(102, 15, 45, 1)
    series.tick(102, 18, 45, 1)  # a second tick in the same second adds up
    series.tick(103, 20, 50, 3)
    series.tick(104, 21, 50, 3)  # only the last 3 seconds are kept
    assert series.to_dict() == {
        "seconds": [102, 103, 104],
        "in": [3, 2, 1],
        "out": [5, 5, 0],
        "evicted": [0, 2, 0],
    }


def snapshot(pid: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"p{pid}",
        "pid": pid,
        "host": "h",
        "connections": 0,
        "groups": 0,
        "members": 0,
        "evictions": 0,
        "dropped": 0,
        "received": 0,
        "sent": 0,
        "layer": {"url": "redis://r", "connected": True},
        "largest_groups": [],
        "series": {"seconds": [], "in": [], "out": [], "evicted": []},
    }
    return {**base, **fields}


def test_processes_are_added_up_and_their_series_aligned_by_second() -> None:
    now = 1000.5  # the last complete second is 999
    first = snapshot(
        1,
        connections=3,
        members=4,
        evictions=1,
        received=10,
        largest_groups=[["lobby", 3], ["a", 1]],
        series={"seconds": [998, 999], "in": [5, 6], "out": [7, 8], "evicted": [0, 1]},
    )
    second = snapshot(
        2,
        connections=2,
        members=2,
        received=5,
        largest_groups=[["lobby", 2], ["b", 2]],
        # 1000 is not complete yet and 600 is older than the chart: both left out
        series={
            "seconds": [600, 999, 1000],
            "in": [9, 1, 4],
            "out": [9, 2, 4],
            "evicted": [9, 0, 4],
        },
    )
    combined = combine([second, first], now)
    assert combined["totals"] == {
        "connections": 5,
        "groups": 0,
        "members": 6,
        "evictions": 1,
        "dropped": 0,
        "received": 15,
        "sent": 0,
        "processes": 2,
    }
    rates = combined["rates"]
    assert rates["end"] == 999
    assert rates["first"] == 999 - SERIES_SECONDS + 1  # no start known: the whole window
    assert len(rates["in"]) == SERIES_SECONDS
    assert rates["in"][-2:] == [5, 7] and rates["out"][-2:] == [7, 10]
    assert rates["evicted"][-1] == 1 and sum(rates["in"]) == 12
    assert combined["largest_groups"] == [
        {"name": "lobby", "members": 5},
        {"name": "b", "members": 2},
        {"name": "a", "members": 1},
    ]
    assert [p["pid"] for p in combined["processes"]] == [1, 2]
    assert "series" not in combined["processes"][0]


def test_the_chart_starts_with_the_oldest_process() -> None:
    combined = combine([snapshot(1, started=990.2), snapshot(2, started=995.0)], 1000.5)
    assert (combined["rates"]["first"], combined["rates"]["end"]) == (990, 999)


def test_entries_that_are_not_snapshots_are_skipped() -> None:
    entries = {
        "a": encoding.dumps(snapshot(1)),
        "b": b"not json",
        "c": encoding.dumps([1, 2]),
        "d": encoding.dumps({"no": "id"}),
    }
    assert [s["pid"] for s in decode_snapshots(entries)] == [1]
