"""Per-connection limits: message size, message rate, connections per address, idle time.

The ASGI server owns the wire: framing, UTF-8, ping/pong and its own frame cap
(``nexios run --ws-max-size``, 1 MiB by default, closes **1009** before the app sees
anything). These limits sit above it, in the framework, and are on by default:

==================================  ============  ===================================
limit (``Limits`` field)            default       on violation
==================================  ============  ===================================
``max_message_size`` (bytes)        64 KiB        close **1009** (message too big)
``messages_per_second``, ``burst``  100/s, 1000   close **1008** (policy violation)
``max_connections_per_client``      100           handshake refused: HTTP **429**
``idle_timeout`` (seconds)          300           close **1001** (going away)
==================================  ============  ===================================

Each violation ends only the offending connection; its handler sees
``WebSocketDisconnect(code)`` from its receive, the close frame carries that code, and
one warning is logged (client address, limit and value, never the payload).

Settings: ``NexiosApp(limits=Limits(...))``, or the environment when ``limits`` is not
given — ``NEXIOS_MAX_MESSAGE_SIZE``, ``NEXIOS_MESSAGES_PER_SECOND``,
``NEXIOS_MESSAGE_BURST``, ``NEXIOS_MAX_CONNECTIONS_PER_CLIENT``, ``NEXIOS_IDLE_TIMEOUT``;
``0``, ``off`` or ``none`` disables one. ``Limits.unlimited()`` disables them all.

Cost: the size and rate checks run on every received message, so they live in one
small object with ``__slots__`` (:class:`MessageLimiter`), read no clock and allocate
nothing unless a limit is broken (or the bucket looks empty). Time is the sweep's
business: one task per app visits the open connections once a second
(:meth:`MessageLimiter.tick`), refilling each token bucket and closing connections idle
past ``idle_timeout`` — no timer per connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nexios._env import env_number, env_text, is_off
from nexios.exceptions import ConfigurationError

__all__ = [
    "IDLE_CLOSE_CODE",
    "RATE_CLOSE_CODE",
    "SIZE_CLOSE_CODE",
    "TOO_MANY_CONNECTIONS_STATUS",
    "Limits",
    "MessageLimiter",
]

SIZE_CLOSE_CODE = 1009
"""Close code for a message larger than ``max_message_size`` (RFC 6455: message too big)."""

RATE_CLOSE_CODE = 1008
"""Close code for a client sending faster than its bucket allows (policy violation)."""

IDLE_CLOSE_CODE = 1001
"""Close code after ``idle_timeout`` without a message (going away: the client did
nothing wrong, the server leaves an unused connection — reconnect when needed)."""

TOO_MANY_CONNECTIONS_STATUS = 429
"""HTTP status refusing a handshake over ``max_connections_per_client``."""

_ENV = {
    "max_message_size": "NEXIOS_MAX_MESSAGE_SIZE",
    "messages_per_second": "NEXIOS_MESSAGES_PER_SECOND",
    "burst": "NEXIOS_MESSAGE_BURST",
    "max_connections_per_client": "NEXIOS_MAX_CONNECTIONS_PER_CLIENT",
    "idle_timeout": "NEXIOS_IDLE_TIMEOUT",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one app. ``None`` turns a limit off. See the module docstring."""

    max_message_size: int | None = 64 * 1024
    messages_per_second: float | None = 100.0
    burst: int = 1000
    max_connections_per_client: int | None = 100
    idle_timeout: float | None = 300.0

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_connections_per_client"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(
                    f"Limits.{name} must be a positive int or None (no limit), got {value!r}."
                )
        for name in ("messages_per_second", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ConfigurationError(
                    f"Limits.{name} must be a positive number or None (no limit), got {value!r}."
                )
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigurationError(
                f"Limits.burst is how many messages may arrive at once, an int >= 1; "
                f"got {self.burst!r}."
            )

    @classmethod
    def unlimited(cls) -> Limits:
        """Every limit off (benchmarks, trusted internal clients)."""
        return cls(None, None, 1, None, None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by the ``NEXIOS_*`` variables named in the module docs."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, variable in _ENV.items():
            text = env_text(env, variable)
            if text is None:
                continue
            if is_off(text) and name != "burst":
                values[name] = None
                continue
            values[name] = env_number(
                env,
                variable,
                integer=name not in _FLOATS,
                minimum=1 if name in ("burst", "max_message_size") else 0,
                exclusive=name not in ("burst", "max_message_size"),
                what="or 0/off to disable the limit" if name != "burst" else "",
            )
        return cls(**{**_fields(cls()), **values}) if values else cls()

    @property
    def per_message(self) -> bool:
        """True when a check must run on received messages (size, rate or idle time)."""
        return self.max_message_size is not None or self.needs_sweep

    @property
    def needs_sweep(self) -> bool:
        """True when the periodic sweep has work: refilling buckets or closing idle sockets."""
        return self.messages_per_second is not None or self.idle_timeout is not None


_FLOATS = ("messages_per_second", "idle_timeout")


def _fields(limits: Limits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in _ENV}


class MessageLimiter:
    """One connection's message checks: size, and a token bucket. Created per connection.

    The bucket holds up to ``burst`` tokens, refilled at ``messages_per_second``; each
    message takes one, and a message that finds none breaks the rate limit. No clock is
    read per message: the app's sweep calls :meth:`tick` about once a second to refill,
    and a message that finds the bucket empty refills it up to the present before it
    is refused. Over any span of T seconds at most ``burst + rate * T`` messages pass.
    So :meth:`check` costs a counter, a dict lookup, ``len`` and two comparisons.
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_max_size",
        "_quarter",
        "_rate",
        "_seen",
        "_ticked",
        "allowance",
        "last",
        "received",
        "violation",
    )

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        now = clock()
        self._clock = clock
        self._max_size = (
            limits.max_message_size if limits.max_message_size is not None else _NO_LIMIT
        )
        self._quarter = self._max_size // 4
        self._rate = limits.messages_per_second
        self._burst = float(limits.burst)
        self.received = 0
        """Messages received so far."""
        self.allowance: float = self._burst if self._rate is not None else float("inf")
        """``received`` may grow up to this; the tokens left are ``allowance - received``."""
        self._seen = 0
        self._ticked = now
        self.last = now
        """When a message last arrived, to within one tick (or when the connection began)."""
        self.violation: tuple[int, str] | None = None
        """``(close code, log text)`` of the limit broken, once :meth:`check` said so."""

    def check(self, message: dict[str, Any]) -> bool:
        """Account for one received ASGI message; True when it breaks a limit."""
        self.received = received = self.received + 1
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        # len() of text counts code points and UTF-8 needs 1-4 bytes each: up to a
        # quarter of the limit nothing can be too big, so look closer only above that.
        if len(data) > self._quarter and self._too_big(data):
            return True
        if received > self.allowance and not self._refilled(received):
            self.violation = (
                RATE_CLOSE_CODE,
                f"more than messages_per_second={self._rate:g} (burst={self._burst:g})",
            )
            return True
        return False

    def _too_big(self, data: str | bytes) -> bool:
        size = len(data.encode()) if isinstance(data, str) and not data.isascii() else len(data)
        if size <= self._max_size:
            return False
        self.violation = (
            SIZE_CLOSE_CODE,
            f"message of {size} bytes exceeds max_message_size={self._max_size}",
        )
        return True

    def _refilled(self, received: int) -> bool:
        """The bucket looked empty: refill it up to now; True if this message fits."""
        self._refill(self._clock(), received - 1)
        return received <= self.allowance

    def _refill(self, now: float, consumed: int) -> None:
        rate = self._rate
        elapsed = now - self._ticked
        self._ticked = now
        if rate is not None and elapsed > 0:
            tokens = self.allowance - consumed + elapsed * rate
            self.allowance = consumed + (tokens if tokens < self._burst else self._burst)

    def tick(self, now: float | None = None) -> float:
        """Refill the bucket for the time since the last refill; return the seconds idle."""
        if now is None:
            now = self._clock()
        received = self.received
        if received != self._seen:
            self._seen = received
            self.last = now
        self._refill(now, received)
        return now - self.last

    @property
    def tokens(self) -> float:
        """Messages that may arrive without a refusal, as of the last refill."""
        return max(0.0, self.allowance - self.received)


_NO_LIMIT = 1 << 62
