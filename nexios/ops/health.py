"""``/healthz`` and ``/readyz``: probes for load balancers and orchestrators.

- ``GET /healthz`` answers ``200 ok`` while the process serves HTTP: its event loop is
  running and not stuck. It asks nothing else, so a broker outage never makes an
  orchestrator restart healthy processes (liveness).
- ``GET /readyz`` asks the channel layer and the history store for an answer (a read
  each, bounded by ``within`` seconds, 2 by default): ``200`` when both answered,
  ``503`` otherwise, with the reason for each (readiness: take the process out of
  rotation until its dependencies are back)::

      {"ready": false, "channel_layer": "the link to redis://127.0.0.1:6379/0 is down
       (Connection refused)", "history": "no answer within 2 s"}

Both answer ``HEAD`` too, and are never cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

from typing import Any

from nexios.http.responses import JSONResponse, PlainTextResponse, Response
from nexios.runtime import ChannelsRuntime

__all__ = ["HEALTH_PATH", "READY_PATH", "HealthEndpoints"]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

_NO_STORE = {"cache-control": "no-store"}


class HealthEndpoints:
    """The two probes of one app, as ASGI apps (:meth:`healthz`, :meth:`readyz`)."""

    def __init__(self, runtime: ChannelsRuntime, *, within: float = 2.0) -> None:
        self.runtime = runtime
        self.within = within

    async def healthz(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """200 ``ok``: the process is serving."""
        response = _refuse_method(scope) or PlainTextResponse("ok\n", headers=_NO_STORE)
        await response(scope, receive, send)

    async def readyz(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """200 when the channel layer and history store answered, 503 with the reasons."""
        response = _refuse_method(scope)
        if response is None:
            readiness = await self.runtime.check_ready(self.within)
            body = {
                "ready": readiness.ready,
                "channel_layer": readiness.channel_layer or "ok",
                "history": readiness.history or "ok",
            }
            response = JSONResponse(body, 200 if readiness.ready else 503, dict(_NO_STORE))
        await response(scope, receive, send)


def _refuse_method(scope: dict[str, Any]) -> Response | None:
    if scope["method"] in ("GET", "HEAD"):
        return None
    return PlainTextResponse("method not allowed\n", 405, {"allow": "GET, HEAD", **_NO_STORE})
