"""Counting one connection's messages for :mod:`nexios.metrics`, at the least cost.

With metrics off, nothing here runs and the connection's receive and send paths are
exactly what they are without this module. With metrics on, a connection gets:

- a :class:`MeteredLimiter` as its message limiter: the connection already calls its
  limiter's ``check`` once per received message (size and rate limits), so counting
  the message there adds no call to the receive path when limits are on (the default),
  and one call when they are off;
- the ASGI ``send`` wrapped by :meth:`ConnectionMeter.send`: a plain function (no
  coroutine of its own) that counts ``websocket.send`` messages, notes the accept, and
  returns the server's awaitable; one send in :data:`~nexios.metrics.SAMPLE_EVERY` (of
  the process's) is timed.

Group deliveries do not pass through here: members' senders hand frames to the server
(or its frame sink) directly, and the runtime counts them once per group message
(:meth:`Metrics.delivered <nexios.metrics.Metrics.delivered>`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from nexios.limits import Limits, MessageLimiter
from nexios.metrics import SAMPLE_EVERY, Metrics

__all__ = ["ConnectionMeter", "MeteredLimiter"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

_SEND = "websocket.send"
_ACCEPT = "websocket.accept"
_UNLIMITED = Limits.unlimited()
_SAMPLED = SAMPLE_EVERY - 1
assert SAMPLE_EVERY & _SAMPLED == 0, "SAMPLE_EVERY must be a power of two"
_limiter_check = MessageLimiter.check


class MeteredLimiter(MessageLimiter):
    """A :class:`~nexios.limits.MessageLimiter` that also counts what it checks."""

    __slots__ = ("_limited", "_metrics")

    def __init__(
        self, limits: Limits, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(limits if limits.per_message else _UNLIMITED, clock)
        self._limited = limits.per_message
        self._metrics = metrics

    def check(self, message: dict[str, Any]) -> bool:
        """Count one received message and its payload bytes; then apply the limits."""
        metrics = self._metrics
        metrics.received_messages += 1
        data = message.get("text")
        if data is None:
            size = len(message.get("bytes") or b"")
        else:
            # str.isascii() is O(1) in CPython: only non-ASCII text is encoded to count it.
            size = len(data) if data.isascii() else len(data.encode())
        metrics.received_bytes += size
        if not self._limited:
            return False
        # The limiter's own check, with the exact size already known: one call per
        # message instead of two. A message that may break a limit (too big, or the
        # bucket looks empty) goes to the limiter itself, which decides and says why.
        received = self.received + 1
        if size > self._max_size or received > self.allowance:
            return _limiter_check(self, message)
        self.received = received
        return False


class ConnectionMeter:
    """Counts for one connection: built by the app per handshake when metrics are on."""

    __slots__ = ("_metrics", "_send", "accepted")

    def __init__(self, metrics: Metrics, send: Send) -> None:
        self._metrics = metrics
        self._send = send
        self.accepted = False
        """True once the handshake was accepted (the app then counts the close)."""

    def limiter(self, limits: Limits) -> MeteredLimiter:
        """The connection's limiter: ``limits`` applied, every message counted."""
        return MeteredLimiter(limits, self._metrics)

    def send(self, message: dict[str, Any]) -> Awaitable[None]:
        """The ASGI ``send`` to give the connection: counts, then hands ``message`` on."""
        # Only a websocket.send message has "text" or "bytes": look for them first, so
        # a text frame (the common case) costs one lookup before it is counted.
        data = message.get("text")
        if data is not None:
            size = len(data) if data.isascii() else len(data.encode())
        elif message["type"] == _SEND:
            size = len(message.get("bytes") or b"")
        else:
            if message["type"] == _ACCEPT and not self.accepted:
                self.accepted = True
                self._metrics.connection_opened()
            return self._send(message)
        metrics = self._metrics
        metrics.sent_bytes += size
        sent = metrics.sent_messages = metrics.sent_messages + 1
        if sent & _SAMPLED:
            return self._send(message)
        return metrics.timed(self._send(message))  # one send in SAMPLE_EVERY is timed

    def closed(self, code: int | None) -> None:
        """The connection ended (after an accept) with ``code``."""
        if self.accepted:
            self.accepted = False
            self._metrics.connection_closed(code)
