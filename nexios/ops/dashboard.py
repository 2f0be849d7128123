"""The live dashboard: one page served by the app, behind a token, off by default.

``NexiosApp(dashboard="<token>")`` or ``NEXIOS_DASHBOARD_TOKEN=<token>`` turns it on at
:data:`DASHBOARD_PATH`. Open ``/_nexios/dashboard?token=<token>`` once: the app sets a
cookie (``HttpOnly``, ``SameSite=Strict``, limited to the dashboard's path, ``Secure``
over https) and redirects to the page without the token in the address. Scripts may
send ``Authorization: Bearer <token>`` instead. Without a valid token every dashboard
path answers ``401`` with nothing in it — no page, no script, no numbers.

The page (``static/``: plain HTML, CSS and an ES module, no build step) polls
``api/stats`` every second and shows connections, messages in and out per second over
the last five minutes (a live chart), the largest groups with their presence,
evictions and each process's channel-layer link. The numbers are every process's:
each process puts a snapshot in the runtime's process directory every second (see
:mod:`nexios.ops.snapshot`), which on Redis every process reads.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from nexios.exceptions import ChannelError, ConfigurationError
from nexios.http.datastructures import route_path
from nexios.http.request import Request
from nexios.http.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from nexios.ops.snapshot import combine, decode_snapshots
from nexios.runtime import ChannelsRuntime

__all__ = ["COOKIE", "DASHBOARD_PATH", "MIN_TOKEN_LENGTH", "PRESENCE_SHOWN", "Dashboard"]

DASHBOARD_PATH = "/_nexios/dashboard"
COOKIE = "nexios_dashboard"
MIN_TOKEN_LENGTH = 16
"""Shortest token accepted: make one with ``python -c "import secrets;
print(secrets.token_urlsafe())"``."""

PRESENCE_SHOWN = 8
"""Members listed per group (the count is always complete)."""

_PRESENCE_CACHE = 5.0
"""Seconds a group's presence is reused: reading a large group's presence is O(members)."""

_STATIC = {
    "": ("dashboard.html", "text/html"),
    "/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard.css": ("dashboard.css", "text/css"),
}
_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
}

Snapshot = Callable[[], dict[str, Any]]


def check_token(token: object) -> str:
    """``token`` if it can guard the dashboard; a ConfigurationError saying why not."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"The dashboard token must be a str of at least {MIN_TOKEN_LENGTH} characters; "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe())"'
        )
    return token


class Dashboard:
    """The dashboard's ASGI app, mounted at :data:`DASHBOARD_PATH`."""

    def __init__(self, token: str, runtime: ChannelsRuntime, local_snapshot: Snapshot) -> None:
        self._token = check_token(token).encode()
        self._session = hmac.new(self._token, b"nexios dashboard session", hashlib.sha256)
        self.runtime = runtime
        self.local_snapshot = local_snapshot
        self._files = {
            path: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
            for path, (name, kind) in _STATIC.items()
        }
        self._presence: dict[str, tuple[float, dict[str, Any]]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self._respond(request, route_path(scope))
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        await response(scope, receive, send)

    async def _respond(self, request: Request, path: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed\n", 405, {"allow": "GET, HEAD"})
        base = request.scope.get("root_path", "")  # the mount's prefix, under any root path
        given = request.query_params.get("token")
        if given is not None:
            if not self._is_token(given):
                return _unauthorized()
            redirect = RedirectResponse(base, 303)
            redirect.set_cookie(
                COOKIE,
                self._session.hexdigest(),
                path=base,
                secure=request.url.scheme in ("https", "wss"),
                httponly=True,
                samesite="strict",
            )
            return redirect
        if not self._authorized(request):
            return _unauthorized()
        # Mounted: ``path`` is what lies below the dashboard's prefix ("" for the page).
        if path == "/api/stats":
            return JSONResponse(await self.stats())
        found = self._files.get(path.rstrip("/"))
        if found is None:
            return PlainTextResponse("not found\n", 404)
        body, kind = found
        if not path.rstrip("/"):  # the page names its script and styles under ``base``
            body = body.replace(b"{base}", html.escape(base).encode())
        return Response(body, media_type=kind)

    def _is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def _authorized(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(
            cookie.encode(), self._session.hexdigest().encode()
        ):
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self._is_token(credentials.strip())

    async def stats(self) -> dict[str, Any]:
        """Every process's numbers, added up, with the largest groups' presence."""
        local = self.local_snapshot()
        notes: list[str] = []
        try:
            snapshots = decode_snapshots(await self.runtime.processes())
        except ChannelError as error:
            snapshots = []
            notes.append(f"other processes unknown: the process directory did not answer ({error})")
        snapshots = [s for s in snapshots if s["id"] != local["id"]] + [local]
        combined = combine(snapshots, time.time())
        for group in combined["largest_groups"]:
            group.update(await self._presence_of(group["name"], notes))
        combined["notes"] = notes
        return combined

    async def _presence_of(self, group: str, notes: list[str]) -> dict[str, Any]:
        now = time.monotonic()
        cached = self._presence.get(group)
        if cached is not None and now - cached[0] < _PRESENCE_CACHE:
            return cached[1]
        try:
            members = await self.runtime.presence(group)
        except ChannelError as error:
            notes.append(f"presence of {group!r} unavailable: {error}")
            return {"presence": None, "present": []}
        shown = {
            "presence": len(members),
            "present": [
                {"id": member.channel_id[:8], "metadata": member.metadata}
                for member in members[:PRESENCE_SHOWN]
            ],
        }
        self._presence = {
            name: entry
            for name, entry in self._presence.items()
            if now - entry[0] < _PRESENCE_CACHE
        }
        self._presence[group] = (now, shown)
        return shown


def _unauthorized() -> Response:
    return PlainTextResponse("dashboard: a valid token is required\n", 401)
