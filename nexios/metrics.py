"""Prometheus metrics for a nexios server: what the runtime counts, and ``/metrics``.

The app owns one :class:`Metrics` when metrics are on and calls its hooks as things
happen (see each method); :meth:`Metrics.__call__` is a small ASGI app serving the
Prometheus text format (or OpenMetrics, by ``Accept``), mounted at ``/metrics``.

Cost: the per-message hooks (:meth:`~Metrics.message_received`, :meth:`~Metrics.message_sent`,
:meth:`~Metrics.delivered`, :meth:`~Metrics.broadcast_published`) only add to plain
``int`` attributes of this object — no lock, no label lookup, no clock. A task started
by :meth:`~Metrics.start` moves those totals into prometheus-client's metrics once a
second (:data:`FLUSH_INTERVAL`), and the process answering a scrape flushes first. Timings
(:meth:`~Metrics.send_seconds`) are observed only for the sends :meth:`~Metrics.sampled`
picks (one in :data:`SAMPLE_EVERY`), so callers read no clock for the others.

Several processes (``nexios run --workers N``): prometheus-client's multiprocess mode,
where each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape of any process sums them. The variable must be set before prometheus-client is
first imported in the workers: :func:`prepare_multiprocess_dir` (called by the parent)
does that and empties the folder of a previous run's files. A worker's gauges leave the
sums when it stops, or at the next scrape after it died. Counters of a worker that
exited stay in the sums: totals never go down.

Metrics (all prefixed ``nexios_``; *per process* means one series per ``pid`` label):

======================================  =========  ====================================
name                                    type       what
======================================  =========  ====================================
``connections``                         gauge      open WebSockets (sum of processes)
``handshakes_total{outcome}``           counter    accepted, or refused by reason
                                                   (:data:`HANDSHAKE_OUTCOMES`)
``connections_closed_total{code}``      counter    ended connections by close code
                                                   (1000-1015 each; ``3xxx``, ``4xxx``,
                                                   ``other``; 1006 when none was sent)
``messages_received_total``             counter    messages from clients
``received_bytes_total``                counter    their payload bytes
``messages_sent_total``                 counter    messages to clients (deliveries too)
``sent_bytes_total``                    counter    their payload bytes
``broadcasts_total``                    counter    group sends published
``deliveries_total``                    counter    messages queued for group members
``groups``                              gauge      groups with a member here, per process
``group_members``                       gauge      memberships (sum of processes)
``evictions_total{reason}``             counter    members closed 1013 (:data:`EVICTION_REASONS`)
``outbox_drops_total``                  counter    messages dropped by a DROP_* policy
``outbox_depth``                        histogram  messages queued for a member, per non-
                                                   empty outbox, sampled once a second
``write_buffer_bytes``                  histogram  the same for the frame-once path: bytes
                                                   in a member's transport write buffer
``send_seconds``                        histogram  queued → written, sampled sends
``history_append_seconds``              histogram  history appends and their latency
``recoveries_total{result}``            counter    ``complete`` / ``incomplete``
``layer_up``                            gauge      1 when the channel layer's link is
                                                   up, per process
``layer_reconnects_total``              counter    links re-established (the layer's count)
``publish_errors_total``                counter    group sends the layer refused
======================================  =========  ====================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_asgi_app,
    values,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from nexios.exceptions import ConfigurationError

__all__ = [
    "EVICTION_REASONS",
    "FLUSH_INTERVAL",
    "HANDSHAKE_OUTCOMES",
    "MULTIPROC_ENV",
    "SAMPLE_EVERY",
    "Metrics",
    "close_code_label",
    "forget_dead_processes",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
]

logger = logging.getLogger("nexios.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that turns on prometheus-client's multiprocess mode."""

FLUSH_INTERVAL = 1.0
"""Seconds between two flushes of the plain counters into prometheus-client's metrics."""

SAMPLE_EVERY = 64
""":meth:`Metrics.sampled` is true once in this many calls."""

HANDSHAKE_OUTCOMES = ("accepted", "unknown_path", "origin", "limit", "auth", "handler")
"""``accepted``, or why a handshake was refused: no route, a foreign ``Origin``, the
per-address connection limit, the auth hook, or the handler closing before ``accept``."""

EVICTION_REASONS = ("outbox_full", "send_timeout", "write_buffer_full")
"""Why a member was evicted (closed 1013)."""

_DEPTH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, float("inf"))
_BUFFER_BUCKETS = (*(float(1 << shift) for shift in range(10, 25, 2)), float("inf"))  # 1 KiB-16 MiB
_SEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_HISTORY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def multiprocess_dir() -> str | None:
    """The multiprocess folder this process writes to, or None (single process)."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Make ``path`` (default: ``$PROMETHEUS_MULTIPROC_DIR``, else a new temporary
    folder) the multiprocess folder of this process and of the workers it starts.

    Call it in the parent before any worker starts. Files of an earlier run (``*.db``)
    are deleted — counters would otherwise go on from the last run's totals, and dead
    processes' gauges would count — and nothing else in the folder is touched.
    """
    chosen = path or multiprocess_dir() or tempfile.mkdtemp(prefix="nexios-metrics-")
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def close_code_label(code: int | None) -> str:
    """The ``code`` label for a close code: a bounded set, whatever clients send."""
    if code is None:
        return "1006"
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


class Metrics:
    """The metrics of one server process. See the module docstring."""

    def __init__(self, *, flush_interval: float = FLUSH_INTERVAL) -> None:
        if flush_interval <= 0:
            raise ConfigurationError(f"flush_interval must be positive, got {flush_interval!r}")
        self.flush_interval = flush_interval
        self.multiprocess_dir = multiprocess_dir()
        _check_mode(self.multiprocess_dir)
        # Plain totals of this process, added to on the hot path.
        self.received_messages = 0
        self.received_bytes = 0
        self.sent_messages = 0
        self.sent_bytes = 0
        self.broadcasts = 0
        self.deliveries = 0
        self.open_connections = 0
        self._flushed: dict[str, int] = {}
        self._sample_tick = 0
        self._sources: dict[str, Callable[[], float]] = {}
        self._failed_sources: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry()
        self._define(self.registry)
        self._exposition = make_asgi_app(self._exposition_registry())

    # ------------------------------------------------------------------ definitions

    def _define(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"nexios_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, mode: Literal["liveall", "livesum"]) -> Gauge:
            return Gauge(f"nexios_{name}", doc, registry=registry, multiprocess_mode=mode)

        self._handshakes = counter("handshakes", "WebSocket handshakes by outcome.", ("outcome",))
        self._handshake_children = {o: self._handshakes.labels(o) for o in HANDSHAKE_OUTCOMES}
        self._closed = counter("connections_closed", "Ended WebSockets by close code.", ("code",))
        self._evictions = counter("evictions", "Members evicted (1013) by reason.", ("reason",))
        self._eviction_children = {r: self._evictions.labels(r) for r in EVICTION_REASONS}
        self._recoveries = counter("recoveries", "History recoveries by result.", ("result",))
        self._recovery_children = {
            True: self._recoveries.labels("complete"),
            False: self._recoveries.labels("incomplete"),
        }
        self._plain_counters = {
            "received_messages": counter("messages_received", "Messages from clients."),
            "received_bytes": counter("received_bytes", "Payload bytes from clients."),
            "sent_messages": counter("messages_sent", "Messages to clients."),
            "sent_bytes": counter("sent_bytes", "Payload bytes to clients."),
            "broadcasts": counter("broadcasts", "Group sends published."),
            "deliveries": counter("deliveries", "Messages queued for group members."),
        }
        self._drops = counter("outbox_drops", "Messages dropped by a DROP_* overflow policy.")
        self._reconnects = counter("layer_reconnects", "Channel layer links re-established.")
        self._publish_errors = counter("publish_errors", "Group sends the layer refused.")
        self._connections = gauge("connections", "Open WebSockets.", "livesum")
        self._gauges = {
            "groups": gauge("groups", "Groups with a member in this process.", "liveall"),
            "members": gauge("group_members", "Group memberships.", "livesum"),
            "layer_up": gauge("layer_up", "1 when the channel layer link is up.", "liveall"),
        }
        self._depth = Histogram(
            "nexios_outbox_depth",
            "Messages queued for a member (non-empty outboxes, sampled).",
            buckets=_DEPTH_BUCKETS,
            registry=registry,
        )
        self._write_buffer = Histogram(
            "nexios_write_buffer_bytes",
            "Bytes waiting in a member's write buffer (non-empty buffers, sampled).",
            buckets=_BUFFER_BUCKETS,
            registry=registry,
        )
        self._send = Histogram(
            "nexios_send_seconds",
            "Time from queued to written (sampled sends).",
            buckets=_SEND_BUCKETS,
            registry=registry,
        )
        self._history = Histogram(
            "nexios_history_append_seconds",
            "History appends and their latency.",
            buckets=_HISTORY_BUCKETS,
            registry=registry,
        )
        if self.multiprocess_dir is None:
            ProcessCollector(registry=registry)

    def _exposition_registry(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return combined

    # ------------------------------------------------------------------ per message

    def message_received(self, nbytes: int) -> None:
        """A message of ``nbytes`` payload bytes arrived from a client."""
        self.received_messages += 1
        self.received_bytes += nbytes

    def message_sent(self, nbytes: int) -> None:
        """A message of ``nbytes`` was sent to one client directly (not a group send)."""
        self.sent_messages += 1
        self.sent_bytes += nbytes

    def broadcast_published(self) -> None:
        """A group send was published (counted once, in the publishing process)."""
        self.broadcasts += 1

    def delivered(self, members: int, nbytes: int) -> None:
        """One group message of ``nbytes`` was queued for ``members`` local members."""
        self.deliveries += members
        self.sent_messages += members
        self.sent_bytes += members * nbytes

    def sampled(self) -> bool:
        """True once in :data:`SAMPLE_EVERY` calls: time this send, then :meth:`send_seconds`."""
        self._sample_tick += 1
        return self._sample_tick % SAMPLE_EVERY == 0

    def send_seconds(self, seconds: float) -> None:
        """A sampled message took ``seconds`` from being queued to being written."""
        self._send.observe(seconds)

    def outbox_depth(self, depth: int) -> None:
        """A member's outbox holds ``depth`` messages (the sweep reports non-empty ones)."""
        self._depth.observe(depth)

    def write_buffer(self, nbytes: int) -> None:
        """A member's transport write buffer holds ``nbytes`` (frame-once path; the sweep
        reports non-empty ones)."""
        self._write_buffer.observe(nbytes)

    # ------------------------------------------------------------------ per connection

    def connection_opened(self) -> None:
        """A handshake was accepted (101 sent)."""
        self.open_connections += 1
        self._handshake_children["accepted"].inc()

    def connection_closed(self, code: int | None) -> None:
        """An accepted connection ended with ``code`` (None: no close frame, 1006)."""
        self.open_connections -= 1
        self._closed.labels(close_code_label(code)).inc()

    def handshake_refused(self, reason: str) -> None:
        """A handshake was refused; ``reason`` is one of :data:`HANDSHAKE_OUTCOMES`."""
        child = self._handshake_children.get(reason)
        if child is None or reason == "accepted":
            raise ValueError(
                f"unknown handshake refusal {reason!r}; use one of {HANDSHAKE_OUTCOMES[1:]}"
            )
        child.inc()

    def evicted(self, reason: str) -> None:
        """A member was closed 1013; ``reason`` is one of :data:`EVICTION_REASONS`."""
        child = self._eviction_children.get(reason)
        if child is None:
            raise ValueError(f"unknown eviction reason {reason!r}; use one of {EVICTION_REASONS}")
        child.inc()

    def dropped(self, count: int = 1) -> None:
        """``count`` messages were dropped by a DROP_OLDEST / DROP_NEWEST outbox."""
        self._drops.inc(count)

    # ------------------------------------------------------------------ history, layer

    def history_appended(self, seconds: float) -> None:
        """A message was appended to history in ``seconds``."""
        self._history.observe(seconds)

    def recovered(self, complete: bool) -> None:
        """A client recovered missed messages; ``complete`` as in the HistoryPage."""
        self._recovery_children[bool(complete)].inc()

    def publish_failed(self) -> None:
        """A group send could not be published (the layer raised)."""
        self._publish_errors.inc()

    def watch(
        self,
        *,
        groups: Callable[[], float] | None = None,
        members: Callable[[], float] | None = None,
        layer_up: Callable[[], float] | None = None,
        layer_reconnects: Callable[[], float] | None = None,
    ) -> None:
        """Read these at each flush: local groups, local memberships, link up (1/0), and
        the layer's own count of reconnects (a total; a smaller value means a new layer).

        State is read, not counted, so joins and leaves cost nothing here.
        """
        given = {
            "groups": groups,
            "members": members,
            "layer_up": layer_up,
            "layer_reconnects": layer_reconnects,
        }
        self._sources.update({name: source for name, source in given.items() if source})

    # ------------------------------------------------------------------ flushing

    def flush(self) -> None:
        """Move the plain totals and the watched state into prometheus-client's metrics."""
        for name, metric in self._plain_counters.items():
            total: int = getattr(self, name)
            delta = total - self._flushed.get(name, 0)
            if delta:
                metric.inc(delta)
                self._flushed[name] = total
        self._connections.set(self.open_connections)
        for name, source in self._sources.items():
            try:
                value = float(source())
            except Exception:
                if name not in self._failed_sources:
                    self._failed_sources.add(name)
                    logger.exception("Reading the %r metric failed; it keeps its last value", name)
                continue
            if name == "layer_reconnects":
                self._add_reconnects(int(value))
            else:
                self._gauges[name].set(value)

    def _add_reconnects(self, total: int) -> None:
        last = self._flushed.get("layer_reconnects", 0)
        delta = total - last if total >= last else total  # a new layer counts from 0
        if delta:
            self._reconnects.inc(delta)
        self._flushed["layer_reconnects"] = total

    async def start(self) -> None:
        """Flush every :attr:`flush_interval` seconds until :meth:`stop` (app startup)."""
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name="nexios-metrics")

    async def stop(self) -> None:
        """Last flush; in multiprocess mode this process's gauges leave the sums."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush()
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self.flush()

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The Prometheus text format of every process's metrics, flushed first here."""
        self._before_scrape()
        return generate_latest(self._exposition_registry())

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        """ASGI app for ``GET /metrics`` (text format, or OpenMetrics by ``Accept``)."""
        self._before_scrape()
        await self._exposition(scope, receive, send)

    def _before_scrape(self) -> None:
        self.flush()
        if self.multiprocess_dir is not None:
            forget_dead_processes(self.multiprocess_dir)


def forget_dead_processes(path: str | os.PathLike[str]) -> list[int]:
    """Drop the live gauges of processes that died without :meth:`Metrics.stop`."""
    dead = []
    for file in Path(path).glob("gauge_live*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(file.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if pid != os.getpid() and not _alive(pid):
            dead.append(pid)
    for pid in sorted(set(dead)):
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(set(dead))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _check_mode(directory: str | None) -> None:
    """prometheus-client picks its mode at import: the environment must agree with it."""
    multiprocess_values = values.ValueClass is not values.MutexValue
    if directory is not None and not multiprocess_values:
        raise ConfigurationError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported, so this process "
            "records single-process values that a multiprocess scrape cannot see. Set it "
            "before the app is imported (nexios run --metrics does this), or unset it."
        )
    if directory is not None and not Path(directory).is_dir():
        raise ConfigurationError(
            f"{MULTIPROC_ENV}={directory!r} is not a folder: create it, or unset it."
        )
