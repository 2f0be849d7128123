"""The wire's own limits, read from the environment (``nexios run`` sets it from flags).

The protocol classes are built by uvicorn from its ``Config``, which has no room for
settings of ours, and ``--workers``/``--reload`` start fresh processes: the environment
reaches all of them. The variables are read when a server starts.

=====================================  ==========================  =============================
variable (``nexios run`` flag)          default                     on violation
=====================================  ==========================  =============================
``NEXIOS_HANDSHAKE_TIMEOUT``            10 s                        connection closed (408)
(``--handshake-timeout``)               from connect or the first
                                        byte of a request to the
                                        end of its headers
``NEXIOS_MAX_REQUEST_LINE``             8,192 bytes                 HTTP **414**, closed
(``--max-request-line``)
``NEXIOS_MAX_HEADER_BYTES``             16,384 bytes                HTTP **431**, closed
(``--max-header-bytes``)
``NEXIOS_MAX_CONNECTIONS``              the open-file limit minus   the oldest unfinished
(``--max-connections``)                 a reserve (1/20, >= 32)     handshake is dropped; if none,
                                                                    HTTP **503**, closed
``NEXIOS_WS_MAX_FRAGMENTS``             ``ws_max_size // 64``,      close **1009**
(``--ws-max-fragments``)                at least 1,024 (frames per
                                        message)
``NEXIOS_WS_MAX_CONTROL_FRAMES``        50 pings/pongs per second   close **1008**
(``--ws-max-control-frames``)
=====================================  ==========================  =============================

``0``, ``off`` or ``none`` turns a limit off.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from nexios._env import is_off
from nexios.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONTROL_FRAMES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_REQUEST_LINE",
    "ENV",
    "WireSettings",
    "connection_cap",
    "fragment_cap",
    "parse_setting",
]

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_REQUEST_LINE = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_CONTROL_FRAMES = 50

ENV = {
    "handshake_timeout": "NEXIOS_HANDSHAKE_TIMEOUT",
    "max_request_line": "NEXIOS_MAX_REQUEST_LINE",
    "max_header_bytes": "NEXIOS_MAX_HEADER_BYTES",
    "max_connections": "NEXIOS_MAX_CONNECTIONS",
    "max_fragments": "NEXIOS_WS_MAX_FRAGMENTS",
    "max_control_frames": "NEXIOS_WS_MAX_CONTROL_FRAMES",
}
"""``WireSettings`` field → environment variable."""

_AUTO = ("", "auto")
_MIN_FRAGMENTS = 1024
_BYTES_PER_FRAGMENT = 64
_MIN_RESERVE = 32


def connection_cap(fd_limit: int | None = None) -> int:
    """Connections one process may hold: its open-file limit minus a reserve.

    The reserve (a twentieth, at least 32) keeps descriptors for the listening socket,
    logs, Redis and files, so ``accept()`` never fails with "too many open files".
    """
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit == resource.RLIM_INFINITY:
            fd_limit = 1 << 20
    return max(1, fd_limit - max(_MIN_RESERVE, fd_limit // 20))


def fragment_cap(ws_max_size: int | None) -> int:
    """Default frames per message: enough for a full-size message in 64-byte fragments."""
    if ws_max_size is None:
        return 1 << 20
    return max(_MIN_FRAGMENTS, ws_max_size // _BYTES_PER_FRAGMENT)


@dataclass(frozen=True, slots=True)
class WireSettings:
    """The wire's limits; ``None`` is off. ``max_connections``/``max_fragments`` of
    ``-1`` mean "derive" (see :func:`connection_cap` and :func:`fragment_cap`)."""

    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
    max_request_line: int | None = DEFAULT_MAX_REQUEST_LINE
    max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES
    max_connections: int | None = -1
    max_fragments: int | None = -1
    max_control_frames: int | None = DEFAULT_MAX_CONTROL_FRAMES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WireSettings:
        env = os.environ if environ is None else environ
        values: dict[str, float | int | None] = {}
        for name, variable in ENV.items():
            raw = env.get(variable)
            if raw is None:
                continue
            values[name] = parse_setting(name, raw, variable)
        return cls(**values)  # type: ignore[arg-type]

    def connections(self) -> int | None:
        """The connection cap in force."""
        return connection_cap() if self.max_connections == -1 else self.max_connections

    def fragments(self, ws_max_size: int | None) -> int | None:
        """Frames allowed per message for a server with this ``ws_max_size``."""
        return fragment_cap(ws_max_size) if self.max_fragments == -1 else self.max_fragments


def parse_setting(name: str, raw: str, source: str | None = None) -> float | int | None:
    """The value of field ``name`` written as ``raw`` (``None``: off, ``-1``: derive)."""
    variable = source or ENV[name]
    text = raw.strip().lower()
    if is_off(text):
        return None
    derived = name in ("max_connections", "max_fragments")
    if text in _AUTO and derived:
        return -1
    try:
        value = float(text) if name == "handshake_timeout" else int(text)
    except ValueError:
        hint = "'auto', " if derived else ""
        raise ConfigurationError(
            f"{variable}={raw!r} is not a number: use a positive number, {hint}or 0/off to "
            "turn the limit off."
        ) from None
    if value <= 0:
        raise ConfigurationError(f"{variable} must be positive (or 0/off), got {raw!r}.")
    return value
