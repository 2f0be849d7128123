"""The wire under ``nexios run``: the protocol classes uvicorn runs for each connection.

=====================================================  ===========================================
``--ws`` / ``--http`` path                              what
=====================================================  ===========================================
``nexios.server:PicowsWebSocketProtocol``               default WebSocket wire: picows's compiled
                                                        parser (:mod:`nexios.wire.native`)
``nexios.server:NexiosWebSocketProtocol``               fallback: uvicorn's sans-I/O protocol,
                                                        hardened (:mod:`nexios.wire.sansio`)
``nexios.server:GuardedHttpToolsProtocol``              default HTTP wire: uvicorn's httptools
                                                        protocol with a handshake timeout, head
                                                        size caps and a connection cap
                                                        (:mod:`nexios.wire.http`)
=====================================================  ===========================================

``nexios run`` picks the first that the installed versions allow
(:func:`default_ws_protocol`, :func:`default_http_protocol`); ``--ws``/``--http`` choose
any, uvicorn's own included.

Both WebSocket wires offer the frame sink, the interface between the channels runtime
and the wire: ``scope["extensions"]["nexios.frames"]`` (:class:`FrameSink`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

__all__ = [
    "FRAMES_EXTENSION",
    "TESTED_PICOWS",
    "TESTED_UVICORN",
    "FrameSink",
    "default_http_protocol",
    "default_ws_protocol",
    "tested",
]

FRAMES_EXTENSION = "nexios.frames"

TESTED_UVICORN = ((0, 54), (0, 55))
"""uvicorn versions the protocols are tested with (they read its internals): ``>= first,
< second``."""

TESTED_PICOWS = ((2, 3), (2, 4))
"""picows versions the compiled wire is tested with: ``>= first, < second``."""

PICOWS_PROTOCOL = "nexios.server:PicowsWebSocketProtocol"
SANSIO_PROTOCOL = "nexios.server:NexiosWebSocketProtocol"
HTTP_PROTOCOL = "nexios.server:GuardedHttpToolsProtocol"


class FrameSink(Protocol):
    """Pre-built frames to one connection, at ``scope["extensions"]["nexios.frames"]``.

    Offered only when no extension (per-message deflate) is active on the connection.
    Frames come from ``build_frame`` (complete, unmasked, FIN set).
    """

    def write(self, frame: bytes) -> bool:
        """Write ``frame``, in order with the app's sends; False (nothing written) once
        the connection is closing or closed."""

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (the peer's backlog)."""

    def abort(self) -> None:
        """Drop the connection now, discarding the backlog; the app sees a disconnect."""

    @property
    def closed(self) -> bool:
        """True when :meth:`write` would write nothing."""

    @property
    def writing_paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` once when the write buffer drains below its low-water
        mark (on the next loop iteration if it is not over its high-water mark now;
        never after the connection is lost). ``None`` cancels."""


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        digits = "".join(char for char in part if char.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def tested(package: str, versions: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    """True when ``package`` is installed in the ``>= low, < high`` range."""
    try:
        installed = _version(version(package))
    except PackageNotFoundError:
        return False
    low, high = versions
    return low <= installed < high


def default_ws_protocol() -> str:
    """What ``nexios run --ws auto`` uses: the compiled wire, else the hardened fallback,
    else uvicorn's ``websockets-sansio``."""
    if not tested("uvicorn", TESTED_UVICORN):
        return "websockets-sansio"
    if tested("picows", TESTED_PICOWS) and _loads("picows.picows"):
        return PICOWS_PROTOCOL
    return SANSIO_PROTOCOL


def _loads(module: str) -> bool:
    """True if ``module`` imports (a compiled extension can be installed yet not load)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def default_http_protocol() -> str:
    """What ``nexios run --http auto`` uses: the guarded httptools protocol, else uvicorn's
    ``httptools``, else ``h11``."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    return HTTP_PROTOCOL if tested("uvicorn", TESTED_UVICORN) else "httptools"
