"""What each process tells the dashboard, and how the dashboard adds processes up.

Every second each process builds a :func:`process_snapshot` — its connections, groups,
members, evictions, message totals, the layer's link, its largest groups and its
message rates per second over the last :data:`SERIES_SECONDS` (:class:`RateSeries`) —
and puts it in the runtime's process directory (one presence entry per process, with a
time-to-live: a process that dies drops out on its own). The dashboard reads every
entry and :func:`combine` adds them up. No I/O here.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from nexios import encoding
from nexios.layers.base import LayerHealth
from nexios.metrics import Metrics
from nexios.runtime import ChannelsRuntime

__all__ = [
    "SERIES_SECONDS",
    "TOP_GROUPS",
    "RateSeries",
    "combine",
    "decode_snapshots",
    "process_snapshot",
]

SERIES_SECONDS = 300
"""Seconds of message rates each process keeps and the dashboard charts."""

TOP_GROUPS = 20
"""Largest local groups each process reports; the dashboard shows the largest overall."""

_SERIES = ("in", "out", "evicted")


class RateSeries:
    """Messages in and out and evictions per second, for the last ``seconds`` seconds."""

    def __init__(self, seconds: int = SERIES_SECONDS) -> None:
        self.seconds = seconds
        self._points: deque[tuple[int, int, int, int]] = deque(maxlen=seconds)
        self._last: tuple[int, int, int] | None = None

    def tick(self, second: int, received: int, sent: int, evictions: int) -> None:
        """Record the totals at wall-clock ``second``: the rates are the differences."""
        last = self._last
        self._last = (received, sent, evictions)
        if last is None:
            return
        point = (
            second,
            max(0, received - last[0]),
            max(0, sent - last[1]),
            max(0, evictions - last[2]),
        )
        if self._points and self._points[-1][0] == second:
            _, received_before, sent_before, evicted_before = self._points.pop()
            # two ticks in one second: add them up
            point = (
                second,
                point[1] + received_before,
                point[2] + sent_before,
                point[3] + evicted_before,
            )
        self._points.append(point)

    def to_dict(self) -> dict[str, Any]:
        """``{"seconds": [...], "in": [...], "out": [...], "evicted": [...]}``."""
        points = list(self._points)
        return {
            "seconds": [p[0] for p in points],
            **{name: [p[i + 1] for p in points] for i, name in enumerate(_SERIES)},
        }


def process_snapshot(
    runtime: ChannelsRuntime, metrics: Metrics, series: RateSeries, started: float
) -> dict[str, Any]:
    """This process, as the dashboard shows it (JSON-ready)."""
    groups = runtime.groups
    largest = sorted(groups.items(), key=lambda item: len(item[1]), reverse=True)[:TOP_GROUPS]
    health = runtime.health()
    return {
        "id": runtime.process_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": started,
        "at": time.time(),
        "connections": metrics.open_connections,
        "groups": len(groups),
        "members": sum(len(members) for members in groups.values()),
        "evictions": runtime.evictions,
        "dropped": runtime.dropped,
        "received": metrics.received_messages,
        "sent": metrics.sent_messages,
        "layer": _layer(health),
        "largest_groups": [[name, len(members)] for name, members in largest],
        "series": series.to_dict(),
    }


def _layer(health: LayerHealth | None) -> dict[str, Any]:
    if health is None:
        return {"url": "", "connected": False, "reconnects": 0, "last_error": "not started"}
    return {
        "url": health.url,
        "connected": health.connected,
        "reconnects": health.reconnects,
        "last_error": health.last_error,
        "subscribed_groups": health.subscribed_groups,
    }


def decode_snapshots(entries: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """The directory's entries as snapshots; an entry that is not one is skipped."""
    found = []
    for raw in entries.values():
        try:
            snapshot = encoding.loads(raw)
        except encoding.JSONDecodeError:
            continue
        if isinstance(snapshot, dict) and isinstance(snapshot.get("id"), str):
            found.append(snapshot)
    return found


def combine(snapshots: Iterable[dict[str, Any]], now: float, top: int = 10) -> dict[str, Any]:
    """Every process's snapshot added up: totals, rates per second, the largest groups."""
    processes = sorted(snapshots, key=lambda s: (s.get("host", ""), s.get("pid", 0)))
    totals = {
        key: sum(int(s.get(key, 0)) for s in processes)
        for key in ("connections", "groups", "members", "evictions", "dropped", "received", "sent")
    }
    totals["processes"] = len(processes)
    end = int(now) - 1  # the last complete second
    rates = {name: [0] * SERIES_SECONDS for name in _SERIES}
    for snapshot in processes:
        series = snapshot.get("series") or {}
        for i, second in enumerate(series.get("seconds", ())):
            slot = SERIES_SECONDS - 1 - (end - int(second))
            if 0 <= slot < SERIES_SECONDS:
                for name in _SERIES:
                    rates[name][slot] += int(series[name][i])
    members: dict[str, int] = {}
    for snapshot in processes:
        for name, count in snapshot.get("largest_groups", ()):
            members[name] = members.get(name, 0) + int(count)
    largest = sorted(members.items(), key=lambda item: (-item[1], item[0]))[:top]
    # The chart starts when the oldest process did, if that is within its window.
    started = min((int(s.get("started", 0)) for s in processes), default=end)
    first = min(end, max(end - SERIES_SECONDS + 1, started))
    return {
        "at": now,
        "totals": totals,
        "rates": {"first": first, "end": end, **rates},
        "largest_groups": [{"name": name, "members": count} for name, count in largest],
        "processes": [
            {key: value for key, value in s.items() if key not in ("series", "largest_groups")}
            for s in processes
        ],
    }
