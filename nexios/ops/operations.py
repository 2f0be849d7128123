"""What an app runs for its operators: metrics, health probes and the dashboard.

``NexiosApp`` builds one :class:`Operations` from its options and mounts its endpoints:

===================  ==========================================  =====================
path                 what                                        on when
===================  ==========================================  =====================
``/metrics``         Prometheus metrics (:mod:`nexios.metrics`)  ``metrics=True``,
                                                                 ``NEXIOS_METRICS=1``,
                                                                 ``nexios run --metrics``
``/healthz``         liveness, ``/readyz`` readiness             by default
                     (:mod:`nexios.ops.health`)                  (``health=False``: off)
``/_nexios/         the live dashboard                          ``dashboard="<token>"``,
dashboard``          (:mod:`nexios.ops.dashboard`)               ``NEXIOS_DASHBOARD_TOKEN``
===================  ==========================================  =====================

Counting (a :class:`~nexios.metrics.Metrics`) is on when metrics or the dashboard are;
the app then gives each connection a :class:`~nexios.ops.meter.ConnectionMeter` and the
channels runtime its ``metrics``. At startup :meth:`Operations.start` starts the
metrics flush and, with the dashboard, the task that puts this process's snapshot in
the process directory every second; :meth:`Operations.withdraw` and
:meth:`Operations.stop` undo that at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nexios import encoding
from nexios._env import env_text, is_off
from nexios.exceptions import ChannelError, ConfigurationError
from nexios.metrics import Metrics
from nexios.ops.dashboard import DASHBOARD_PATH, Dashboard
from nexios.ops.health import HEALTH_PATH, READY_PATH, HealthEndpoints
from nexios.ops.meter import ConnectionMeter, Send
from nexios.ops.snapshot import RateSeries, process_snapshot
from nexios.runtime import ChannelsRuntime
from nexios.runtime.senders import FrameSender

__all__ = [
    "ANNOUNCE_EVERY",
    "ANNOUNCE_TTL",
    "METRICS_PATH",
    "Operations",
    "dashboard_token_option",
    "metrics_option",
]

logger = logging.getLogger("nexios.ops")

METRICS_PATH = "/metrics"
ANNOUNCE_EVERY = 1.0
"""Seconds between two snapshots of this process in the process directory."""
ANNOUNCE_TTL = 5.0
"""Seconds a snapshot stays in the directory unrefreshed (a dead process drops out)."""

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def metrics_option(
    metrics: bool | Metrics | None, environ: Mapping[str, str] | None = None
) -> Metrics | None:
    """``NexiosApp(metrics=...)``: a Metrics, True (a new one), False, or None (then
    ``NEXIOS_METRICS``: on unless unset or an off word — ``nexios run --metrics`` sets it)."""
    if isinstance(metrics, Metrics):
        return metrics
    if metrics is None:
        text = env_text(os.environ if environ is None else environ, "NEXIOS_METRICS")
        metrics = text is not None and not is_off(text)
    if metrics is True:
        return Metrics()
    if metrics is False:
        return None
    raise ConfigurationError(
        f"NexiosApp(metrics=...) takes True, False or a nexios.metrics.Metrics, got {metrics!r}."
    )


def dashboard_token_option(
    token: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """``NexiosApp(dashboard=...)``: the token, or None (then ``NEXIOS_DASHBOARD_TOKEN``)."""
    if token is not None:
        return token
    return env_text(os.environ if environ is None else environ, "NEXIOS_DASHBOARD_TOKEN")


class Operations:
    """An app's metrics, health probes and dashboard (see the module docstring)."""

    def __init__(
        self,
        runtime: ChannelsRuntime,
        *,
        metrics: Metrics | None = None,
        dashboard_token: str | None = None,
        health: bool = True,
    ) -> None:
        self.runtime = runtime
        self.serve_metrics = metrics is not None
        if metrics is None and dashboard_token is not None:
            metrics = Metrics()  # the dashboard shows what it counts
        self.metrics = metrics
        """What this app counts; None when neither metrics nor the dashboard are on."""
        self.health = HealthEndpoints(runtime) if health else None
        self.started_at = time.time()
        self.series = RateSeries()
        self.dashboard = (
            Dashboard(dashboard_token, runtime, self.snapshot)
            if dashboard_token is not None
            else None
        )
        self._announcer: asyncio.Task[None] | None = None
        if metrics is not None:
            runtime.metrics = metrics
            metrics.watch(
                groups=lambda: len(runtime.groups),
                members=lambda: sum(len(members) for members in runtime.groups.values()),
                layer_up=self._layer_up,
                layer_reconnects=self._layer_reconnects,
                dropped=lambda: runtime.dropped,
                outboxes=self._outboxes,
            )

    def mounts(self) -> list[tuple[str, ASGIApp]]:
        """``(path, ASGI app)`` for each endpoint that is on."""
        found: list[tuple[str, ASGIApp]] = []
        if self.serve_metrics and self.metrics is not None:
            found.append((METRICS_PATH, self.metrics))
        if self.health is not None:
            found += [(HEALTH_PATH, self.health.healthz), (READY_PATH, self.health.readyz)]
        if self.dashboard is not None:
            found.append((DASHBOARD_PATH, self.dashboard))
        return found

    def meter(self, send: Send) -> ConnectionMeter | None:
        """A new connection's meter (None when nothing is counted)."""
        return ConnectionMeter(self.metrics, send) if self.metrics is not None else None

    # ------------------------------------------------------------------ sources

    def _layer_up(self) -> float:
        health = self.runtime.health()
        return 1.0 if health is not None and health.connected else 0.0

    def _layer_reconnects(self) -> float:
        health = self.runtime.health()
        return float(health.reconnects) if health is not None else 0.0

    def _outboxes(self) -> list[tuple[int, int]]:
        found = []
        for channel in self.runtime.channels.values():
            sender = channel.sender
            if sender is None or sender.closed:
                continue
            buffered = sender.sink.buffered() if isinstance(sender, FrameSender) else 0
            found.append((sender.depth, buffered))
        return found

    def snapshot(self) -> dict[str, Any]:
        """This process now, as the dashboard shows it."""
        assert self.metrics is not None
        return process_snapshot(self.runtime, self.metrics, self.series, self.started_at)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start flushing metrics; with the dashboard, announce this process every second."""
        if self.metrics is not None:
            await self.metrics.start()
        if self.dashboard is not None and self._announcer is None:
            self._announcer = asyncio.get_running_loop().create_task(
                self._announce_forever(), name="nexios-ops-announce"
            )

    async def withdraw(self) -> None:
        """Stop announcing and leave the process directory (before the runtime stops)."""
        announcer, self._announcer = self._announcer, None
        if announcer is None:
            return
        announcer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcer
        with contextlib.suppress(ChannelError):
            await self.runtime.withdraw()

    async def stop(self) -> None:
        """Last metrics flush (multiprocess: this process leaves the gauges' sums)."""
        await self.withdraw()
        if self.metrics is not None:
            await self.metrics.stop()

    async def _announce_forever(self) -> None:
        failing = False
        while True:
            self.tick()
            try:
                await self.runtime.announce(encoding.dumps(self.snapshot()), ANNOUNCE_TTL)
            except Exception as error:  # the dashboard must never take the server down
                if not failing:
                    logger.warning(
                        "The dashboard cannot share this process's numbers (%s); it shows "
                        "this process only until the channel layer answers again",
                        error,
                        exc_info=not isinstance(error, ChannelError),
                    )
                failing = True
            else:
                failing = False
            await asyncio.sleep(ANNOUNCE_EVERY)

    def tick(self) -> None:
        """Record this second's message totals in the rate series."""
        metrics = self.metrics
        if metrics is not None:
            self.series.tick(
                int(time.time()),
                metrics.received_messages,
                metrics.sent_messages,
                self.runtime.evictions,
            )
