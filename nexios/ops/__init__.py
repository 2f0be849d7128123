"""Running nexios in production: metrics, health probes and the live dashboard.

:class:`Operations` is what an app owns (``app.ops``); :mod:`nexios.ops.meter` counts
each connection's messages, :mod:`nexios.ops.health` serves ``/healthz`` and
``/readyz``, :mod:`nexios.ops.dashboard` the dashboard, and :mod:`nexios.ops.snapshot`
builds and adds up what each process shows on it. The metrics themselves are defined
in :mod:`nexios.metrics`. See ``docs/operations.md``.
"""

from nexios.ops.dashboard import DASHBOARD_PATH, Dashboard
from nexios.ops.health import HEALTH_PATH, READY_PATH, HealthEndpoints
from nexios.ops.meter import ConnectionMeter, MeteredLimiter
from nexios.ops.operations import METRICS_PATH, Operations

__all__ = [
    "DASHBOARD_PATH",
    "HEALTH_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "ConnectionMeter",
    "Dashboard",
    "HealthEndpoints",
    "MeteredLimiter",
    "Operations",
]
