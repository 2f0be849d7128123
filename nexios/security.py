"""Handshake admission: the Origin allowlist and the authentication hook.

Both run in the app's WebSocket dispatch, after the route matched and before any
middleware or handler, so a refused client never reaches application code and never
gets a 101:

1. **Origin** (``NexiosApp(allowed_origins=...)``, overridden per route by
   ``ws_route(path, allowed_origins=...)``). Origins compare exactly on
   (scheme, host, port) after normalising: lower case, default ports (80 for
   ``http``/``ws``, 443 for ``https``/``wss``) made explicit, ``ws`` treated as
   ``http`` and ``wss`` as ``https``. There is no suffix, prefix or substring matching:
   for ``https://example.com``, ``https://evil-example.com`` and
   ``https://example.com.evil.com`` are refused. The default (``None``) allows the
   same origin only: the Origin's host and port equal the ``Host`` header's, and its
   scheme matches the connection's. ``"*"`` allows any origin. A handshake **without**
   an Origin header is allowed: browsers always send one, so its absence means a
   non-browser client, which could forge any Origin anyway — protect those routes with
   authentication. ``Origin: null`` (sandboxed frames, ``file://`` pages) is refused
   unless ``"null"`` is in the list (``"*"`` does not include it). Refused: HTTP 403,
   one info line naming the path and the origin.
2. **Authentication** (``NexiosApp(ws_auth=...)``, per route ``auth=``; ``auth=False``
   makes a route public on an app with a hook): ``async def auth(ws) -> user | None``
   reads a cookie, header, query parameter or ``Sec-WebSocket-Protocol`` token
   (:func:`subprotocol_token`). A user is stored as ``ws.scope["user"]`` (``ws.user``);
   None refuses with HTTP 401; raising :class:`AuthError` picks the status (401/403).
   The log line names the path, status and reason — never headers or the query
   string, so tokens stay out of logs.

Per-group authorization is :meth:`ChannelBox.set_group_policy
<nexios.websockets.channels.ChannelBox.set_group_policy>`, which can read the same user
(``channel.websocket.user``).

Exceptions::

    NexiosError
    └── AuthError    an auth hook refusing a handshake (status 401, 403, ...)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from nexios._utils import is_async_callable
from nexios.exceptions import ConfigurationError, NexiosError

if TYPE_CHECKING:
    from nexios.connection import WebSocket

__all__ = [
    "AuthError",
    "OriginPolicy",
    "WSAuth",
    "check_auth_hook",
    "normalize_origin",
    "subprotocol_token",
]

WSAuth = Callable[["WebSocket"], Awaitable[Any]]
"""``async def auth(ws) -> user | None``: run at the handshake, before the handler."""

Origin = tuple[str, str, int]
"""A normalised origin: ``(scheme, host, port)`` with scheme ``http`` or ``https``."""

_SCHEMES = {
    "http": ("http", 80),
    "ws": ("http", 80),
    "https": ("https", 443),
    "wss": ("https", 443),
}
_HOST = r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)"
_ORIGIN_RE = re.compile(rf"([a-z][a-z0-9+.-]*)://{_HOST}(?::([0-9]{{1,5}}))?")
_HOST_RE = re.compile(rf"{_HOST}(?::([0-9]{{1,5}}))?")
_LOGGED_ORIGIN = 120  # characters of a refused Origin that reach the log


class AuthError(NexiosError):
    """Raise in an auth hook to refuse the handshake with ``status`` (401 by default).

    ``reason`` goes to the log and the response body: keep secrets out of it.
    """

    def __init__(self, status: int = 401, reason: str = "authentication failed") -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigurationError(
                f"AuthError status must be an HTTP error status (401, 403, ...), got {status!r}."
            )
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _port(scheme_default: int, text: str | None) -> int | None:
    if text is None:
        return scheme_default
    port = int(text)
    return port if 0 < port < 65536 else None


def normalize_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` for a serialised origin, or None when it is not one.

    ``"HTTPS://Example.COM"`` → ``("https", "example.com", 443)``; ``ws``/``wss`` count
    as ``http``/``https``. Paths, user info, queries and ``null`` are not origins.
    """
    found = _ORIGIN_RE.fullmatch(value.lower())
    if found is None:
        return None
    scheme, host, port_text = found.groups()
    known = _SCHEMES.get(scheme)
    if known is None:
        return None
    port = _port(known[1], port_text)
    return None if port is None else (known[0], host, port)


def _allowlist_entry(entry: str) -> Origin:
    text = entry.strip()
    if text.endswith("/") and text.count("/") == 3:
        text = text[:-1]  # "https://example.com/" as people often write it
    scheme, sep, rest = text.partition("://")
    if sep and not rest.isascii():
        with contextlib.suppress(UnicodeError):
            text = f"{scheme}://{rest.encode('idna').decode('ascii')}"
    origin = normalize_origin(text)
    if origin is None:
        raise ConfigurationError(
            f"allowed_origins entry {entry!r} is not an origin: write scheme://host[:port] "
            "(e.g. 'https://example.com'), '*' for any origin, or 'null'."
        )
    return origin


class OriginPolicy:
    """Which ``Origin`` headers a route accepts. Built once, at registration.

    ``OriginPolicy(None)``: same origin only. ``OriginPolicy(["https://a.com"])``: that
    origin only. ``OriginPolicy("*")`` / ``["*"]``: any. ``"null"`` in the list allows
    ``Origin: null``.
    """

    __slots__ = ("allow_any", "allow_null", "origins")

    def __init__(self, allowed: str | Iterable[str] | None = None) -> None:
        self.allow_any = False
        self.allow_null = False
        self.origins: frozenset[Origin] | None = None
        if allowed is None:
            return
        entries: Sequence[str] = [allowed] if isinstance(allowed, str) else list(allowed)
        origins: set[Origin] = set()
        for entry in entries:
            if not isinstance(entry, str):
                raise ConfigurationError(
                    f"allowed_origins takes strings such as 'https://example.com', got {entry!r}."
                )
            if entry.strip() == "*":
                self.allow_any = True
            elif entry.strip().lower() == "null":
                self.allow_null = True
            else:
                origins.add(_allowlist_entry(entry))
        self.origins = frozenset(origins)

    @property
    def same_origin_only(self) -> bool:
        return self.origins is None

    def refusal(self, scope: dict[str, Any]) -> str | None:
        """None when the handshake's Origin is allowed; else the Origin, for the log."""
        origin: bytes | None = None
        host: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                if origin is not None:
                    return "(several Origin headers)"
                origin = value
            elif name == b"host":
                host = value
        if origin is None:
            return None  # not a browser: see the module docstring
        text = origin.decode("latin-1").strip()
        if text.lower() == "null":
            return None if self.allow_null else "null"
        if self.allow_any:
            return None
        parsed = normalize_origin(text)
        if parsed is not None:
            if self.origins is None:
                if parsed == _own_origin(scope, host):
                    return None
            elif parsed in self.origins:
                return None
        return text[:_LOGGED_ORIGIN]

    def __repr__(self) -> str:
        if self.origins is None:
            return "OriginPolicy(same-origin)"
        shown = ["*"] if self.allow_any else []
        shown += [f"{s}://{h}:{p}" for s, h, p in sorted(self.origins)]
        if self.allow_null:
            shown.append("null")
        return f"OriginPolicy({shown})"


def _own_origin(scope: dict[str, Any], host: bytes | None) -> Origin | None:
    """The origin this connection is served from: its scheme and the ``Host`` header."""
    if host is None:
        return None
    scheme, default_port = _SCHEMES.get(scope.get("scheme", "ws"), ("http", 80))
    found = _HOST_RE.fullmatch(host.decode("latin-1").strip().lower())
    if found is None:
        return None
    name, port_text = found.groups()
    port = _port(default_port, port_text)
    return None if port is None else (scheme, name, port)


def subprotocol_token(ws: WebSocket, marker: str = "bearer") -> str | None:
    """The token a browser sent as ``new WebSocket(url, ["bearer", token])``, or None.

    Browsers cannot set headers on a WebSocket, so a token often rides in
    ``Sec-WebSocket-Protocol`` after a marker. The handler must then accept with the
    marker as the subprotocol (``await ws.accept(subprotocol="bearer")``), or the
    browser drops the connection.
    """
    offered = ws.subprotocols
    for index, name in enumerate(offered[:-1]):
        if name == marker:
            return offered[index + 1]
    return None


def check_auth_hook(auth: Any, where: str) -> WSAuth | Literal[False] | None:
    """Validate an ``auth=``/``ws_auth=`` value at registration.

    None: inherit (a route) or no hook (the app); False: a public route.
    """
    if auth is None or auth is False:
        return auth
    if not is_async_callable(auth):
        raise ConfigurationError(
            f"{where} must be `async def auth(ws) -> user | None` (or False for a public "
            f"route), got {auth!r}."
        )
    return auth  # type: ignore[no-any-return]
