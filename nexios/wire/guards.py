"""State shared by one server's connections: limits, sweeps and a log that can't be flooded.

One :class:`ServerGuard` per uvicorn server (keyed by its ``ServerState``), created by
the first connection. It holds the :class:`~nexios.wire.settings.WireSettings` read at
that moment, and two sweeps, each a single timer for the whole server rather than one
per connection:

- **handshakes**: connections whose request head is not complete yet, oldest first.
  Those older than ``handshake_timeout`` are closed, and when the connection cap is
  reached the oldest is dropped to make room (a slowloris holds many, a real client
  one, briefly).
- **keepalive**: every ``ws_ping_interval`` each WebSocket connection that offers
  ``keepalive_ping()`` is pinged; ``ws_ping_timeout`` later, those that did not answer
  are closed (``keepalive_expired()``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Protocol

from nexios.wire.settings import WireSettings

__all__ = [
    "CONTROL_CLOSE_CODE",
    "FRAGMENTS_CLOSE_CODE",
    "KEEPALIVE_CLOSE_CODE",
    "PING_SLICES",
    "REFUSAL_LINGER",
    "Handshaking",
    "KeepaliveTarget",
    "ServerGuard",
    "ThrottledLog",
    "control_frame_allowed",
    "guard_for",
    "peer",
    "plain_response",
    "refuse",
]

FRAGMENTS_CLOSE_CODE = 1009
"""Close code for a message split into more frames than allowed (message too big)."""

CONTROL_CLOSE_CODE = 1008
"""Close code for a peer sending pings/pongs faster than allowed (policy violation)."""

KEEPALIVE_CLOSE_CODE = 1011
"""Close code when a keepalive ping goes unanswered (as uvicorn and websockets do)."""

logger = logging.getLogger("nexios.wire")


class ThrottledLog:
    """At most one line per ``interval`` seconds per kind of event, counting the rest.

    For events any client can cause at will (bad UTF-8, protocol errors, floods): each
    is worth knowing about, but a client must not be able to fill the disk with them.
    """

    __slots__ = ("_interval", "_logger", "_state")

    def __init__(self, log: logging.Logger = logger, interval: float = 10.0) -> None:
        self._logger = log
        self._interval = interval
        self._state: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, kind, message, *args)

    def log(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last, suppressed = self._state.get(kind, (float("-inf"), 0))
        if now - last < self._interval:
            self._state[kind] = (last, suppressed + 1)
            return
        self._state[kind] = (now, 0)
        if suppressed:
            message += " (%d more like this in the last %.0f s not logged)"
            args = (*args, suppressed, now - last)
        self._logger.log(level, message, *args)


def peer(client: tuple[str, int] | None) -> str:
    """``host:port`` of a connection's client, for log lines."""
    return f"{client[0]}:{client[1]}" if client else "?"


def control_frame_allowed(owner: Any, limit: int | None, now: float) -> bool:
    """Count one ping/pong from ``owner``; False once it exceeds ``limit`` in one second.

    ``owner`` keeps the window in two attributes, ``control_window`` (start time) and
    ``control_count``. Called only for control frames, so the clock is read only then.
    """
    if limit is None:
        return True
    if now - owner.control_window >= 1.0:
        owner.control_window = now
        owner.control_count = 0
    owner.control_count += 1
    return bool(owner.control_count <= limit)


_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def plain_response(status: int, text: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a short text body."""
    body = text.encode()
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines.append(b"content-type: text/plain; charset=utf-8\r\n")
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


REFUSAL_LINGER = 1.0
"""Seconds a refused connection keeps reading (and dropping) what the client still sends."""


def refuse(transport: asyncio.Transport, response: bytes) -> None:
    """Write an HTTP refusal and close — a lingering close, as Apache and nginx do.

    A client refused mid-head (431, 414, 503) is often still sending. Closing a socket
    with unread bytes makes the kernel reset the connection, and the reset can discard
    the refusal before the client has read it. So the write side is shut after the
    response, and what still arrives is read and dropped until the client closes or
    :data:`REFUSAL_LINGER` seconds pass. The connection's own protocol still learns of
    the loss (``connection_lost``). TLS cannot half-close: it is closed at once.
    """
    if transport.is_closing():
        return
    if response:
        transport.write(response)
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    protocol = transport.get_protocol()
    transport.set_protocol(_Draining(transport, protocol))
    transport.resume_reading()


class _Draining(asyncio.Protocol):
    """Reads and drops everything until the peer closes or the linger ends."""

    def __init__(self, transport: asyncio.Transport, owner: asyncio.BaseProtocol) -> None:
        self._owner = owner
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done too: close now

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._owner.connection_lost(exc)


class Handshaking(Protocol):
    """A connection still reading a request head."""

    def handshake_timed_out(self) -> None: ...

    def drop_for_room(self) -> None: ...


PING_SLICES = 20
"""Ticks one keepalive round (a ping interval) is spread over."""


class KeepaliveTarget(Protocol):
    def keepalive_ping(self) -> int:
        """Send a ping; its number, 0 when none went out."""

    def keepalive_expired(self, ping: int) -> None:
        """``ping``'s timeout passed: close if it is still unanswered."""


class ServerGuard:
    """Limits and sweeps of one server. Get it with :func:`guard_for`."""

    def __init__(self, config: Any, server_state: Any, settings: WireSettings) -> None:
        self.settings = settings
        self.max_connections = settings.connections()
        self.max_fragments = settings.fragments(config.ws_max_size)
        self.max_control_frames = settings.max_control_frames
        self.log = ThrottledLog()
        self._connections: set[Any] = server_state.connections
        self._pending: dict[Handshaking, float] = {}
        self._pending_timer: asyncio.TimerHandle | None = None
        interval = config.ws_ping_interval
        self._ping_interval: float | None = interval if interval and interval > 0 else None
        self._ping_timeout: float | None = config.ws_ping_timeout
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._ping_round: list[Any] = []
        self._ping_index = 0

    # ------------------------------------------------------------------ connections

    def full(self) -> bool:
        """True when one more connection would pass the cap."""
        cap = self.max_connections
        return cap is not None and len(self._connections) > cap

    def make_room(self) -> bool:
        """Drop the oldest connection still sending its request head; False if none."""
        for protocol in self._pending:
            del self._pending[protocol]
            self.log.warning(
                "cap",
                "%d connections reach the cap (--max-connections %d): dropping the oldest "
                "connection still sending its request head",
                len(self._connections),
                self.max_connections,
            )
            protocol.drop_for_room()
            return True
        return False

    # ------------------------------------------------------------------ handshakes

    def handshake_started(self, protocol: Handshaking) -> None:
        timeout = self.settings.handshake_timeout
        pending = self._pending
        pending.pop(protocol, None)  # re-inserted last: the dict stays oldest first
        pending[protocol] = time.monotonic()
        if timeout is not None and self._pending_timer is None:
            loop = asyncio.get_running_loop()
            self._pending_timer = loop.call_later(timeout / 4, self._expire_handshakes)

    def handshake_done(self, protocol: Handshaking) -> None:
        self._pending.pop(protocol, None)

    def _expire_handshakes(self) -> None:
        self._pending_timer = None
        timeout = self.settings.handshake_timeout
        if timeout is None:
            return
        deadline = time.monotonic() - timeout
        pending = self._pending
        expired = []
        for protocol, started in pending.items():
            if started > deadline:
                break
            expired.append(protocol)
        for protocol in expired:
            del pending[protocol]
            protocol.handshake_timed_out()
        if expired:
            self.log.log(
                logging.INFO,
                "timeout",
                "closed %d connection(s) that did not send a request head within %g s "
                "(--handshake-timeout)",
                len(expired),
                timeout,
            )
        if pending:
            loop = asyncio.get_running_loop()
            self._pending_timer = loop.call_later(timeout / 4, self._expire_handshakes)

    # ------------------------------------------------------------------ keepalive

    def keepalive_started(self) -> None:
        """A WebSocket connection opened: make sure the keepalive sweep runs."""
        if self._ping_interval is None or self._keepalive_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._keepalive_timer = loop.call_later(self._ping_interval / PING_SLICES, self._ping_slice)

    def _ping_slice(self) -> None:
        """Ping the next slice of this round's connections.

        A round pings every connection once per ping interval, spread over
        :data:`PING_SLICES` ticks: one sweep of all of them held the event loop for a
        time that grows with the connections (~200 ms at 5,000 on a slow machine), and
        every message in flight waited. A connection opened during a round joins the next.
        """
        self._keepalive_timer = None
        if self._ping_index >= len(self._ping_round):
            self._ping_round, self._ping_index = list(self._connections), 0
        size = -(-len(self._ping_round) // PING_SLICES)
        start, self._ping_index = self._ping_index, self._ping_index + size
        pinged = [
            (connection, ping)
            for connection in self._ping_round[start : self._ping_index]
            if getattr(connection, "keepalive_ping", None) is not None
            and (ping := connection.keepalive_ping())
        ]
        if self._ping_index >= len(self._ping_round):
            self._ping_round = []  # let go of the connections that closed since
        loop = asyncio.get_running_loop()
        if pinged and self._ping_timeout is not None:
            loop.call_later(self._ping_timeout, _expire_pings, pinged)
        if self._connections and self._ping_interval is not None:
            self._keepalive_timer = loop.call_later(
                self._ping_interval / PING_SLICES, self._ping_slice
            )


def _expire_pings(pinged: list[tuple[KeepaliveTarget, int]]) -> None:
    # Each ping is numbered: a connection pinged again since (its slot moved to earlier
    # in the next round) is judged on its own ping's timeout, not on this one's.
    for connection, ping in pinged:
        connection.keepalive_expired(ping)


_guards: weakref.WeakKeyDictionary[Any, ServerGuard] = weakref.WeakKeyDictionary()


def guard_for(config: Any, server_state: Any) -> ServerGuard:
    """The guard of the server owning ``server_state``; created (env read) on first use."""
    guard = _guards.get(server_state)
    if guard is None:
        guard = _guards[server_state] = ServerGuard(config, server_state, WireSettings.from_env())
    return guard
