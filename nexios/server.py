"""The protocol classes ``nexios run`` gives uvicorn, importable by path, and ``build_frame``.

========================================================  =====================================
path                                                      what (details: :mod:`nexios.wire`)
========================================================  =====================================
``nexios.server:PicowsWebSocketProtocol`` (``--ws``)      default: picows's compiled parser
``nexios.server:NexiosWebSocketProtocol`` (``--ws``)      fallback: uvicorn's sans-I/O, hardened
``nexios.server:GuardedHttpToolsProtocol`` (``--http``)   httptools with timeout and caps
========================================================  =====================================

Both WebSocket protocols offer the frame sink ``scope["extensions"]["nexios.frames"]``
(:class:`nexios.wire.FrameSink`) when no per-message deflate is active: sending one
message to N members then costs one frame, built once by :func:`build_frame`, and N
``write`` calls, instead of N trips through a frame serializer::

    sink = scope["extensions"].get("nexios.frames")
    if sink is not None and sink.write(build_frame(b"hi", text=True)):
        ...  # written, in order with the app's own sends
    if sink.buffered() > cap:
        sink.abort()  # a peer that never reads: drop it, the app then sees a disconnect
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexios.framing import build_frame
from nexios.wire import (
    FRAMES_EXTENSION,
    SANSIO_PROTOCOL,
    TESTED_UVICORN,
    FrameSink,
    default_http_protocol,
    default_ws_protocol,
    tested,
)
from nexios.wire.http import GuardedHttpToolsProtocol
from nexios.wire.sansio import NexiosWebSocketProtocol

if TYPE_CHECKING:
    from nexios.wire.native import PicowsWebSocketProtocol

__all__ = [
    "FRAMES_EXTENSION",
    "TESTED_UVICORN",
    "FrameSink",
    "GuardedHttpToolsProtocol",
    "NexiosWebSocketProtocol",
    "PicowsWebSocketProtocol",
    "build_frame",
    "default_http_protocol",
    "default_ws_protocol",
    "frame_once_protocol_path",
]


def frame_once_protocol_path() -> str | None:
    """The hardened sans-I/O protocol's path if the installed uvicorn is tested, else None.

    Kept for callers of the first release; ``nexios run`` uses :func:`default_ws_protocol`.
    """
    return SANSIO_PROTOCOL if tested("uvicorn", TESTED_UVICORN) else None


def __getattr__(name: str) -> Any:
    # The compiled wire imports picows, an optional speed-up: only when asked for.
    if name == "PicowsWebSocketProtocol":
        from nexios.wire.native import PicowsWebSocketProtocol

        return PicowsWebSocketProtocol
    raise AttributeError(f"module 'nexios.server' has no attribute {name!r}")
