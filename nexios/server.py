"""A uvicorn WebSocket protocol that lets the app write frames it built once.

Why: sending one message to N members through ASGI costs N ``websocket.send`` dicts,
N trips through websockets' frame serializer and N ``join``s of its output, although
every member gets the same bytes. Without compression a server frame is just a header
and the payload (servers never mask), so the hub can build it once with
:func:`build_frame` and hand the same ``bytes`` object to each member's transport.

:class:`NexiosWebSocketProtocol` is uvicorn's sans-I/O ``websockets`` protocol plus one
ASGI scope extension, offered only when per-message deflate was *not* negotiated (a
compressed connection has its own deflate context, so one frame cannot fit all)::

    sink = scope["extensions"].get("nexios.frames")
    if sink is not None and sink.write(build_frame(b"hi", text=True)):
        ...  # written, in order with the app's own sends
    if sink.buffered() > cap:
        sink.abort()  # a peer that never reads: drop it, the app then sees a disconnect

Ordering: a frame written through the sink goes out after every ``websocket.send`` that
has returned and before every one that starts later. A send still waiting on uvicorn's
write flow control (``pause_writing``) is concurrent with it and may come after it.

Pinned range: the protocol reads uvicorn internals (``transport``, ``handshake_complete``,
``close_sent``, ``disconnected``, ``initial_response``, ``conn``, ``scope``) that are not
public API. It is tested with uvicorn ``>=0.54,<0.55``; outside that range
:func:`frame_once_protocol_path` returns None and ``nexios run`` uses uvicorn's own
``websockets-sansio`` protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from nexios.framing import build_frame

__all__ = [
    "FRAMES_EXTENSION",
    "TESTED_UVICORN",
    "FrameSink",
    "NexiosWebSocketProtocol",
    "build_frame",
    "frame_once_protocol_path",
]

FRAMES_EXTENSION = "nexios.frames"
"""Key of the scope extension: ``scope["extensions"][FRAMES_EXTENSION]`` is the sink
itself (not a dict around it: one object less per connection)."""

TESTED_UVICORN = ((0, 54), (0, 55))
"""uvicorn versions the protocol is tested with: ``>= first, < second``."""

_PROTOCOL_PATH = "nexios.server:NexiosWebSocketProtocol"


class FrameSink:
    """Writes pre-built frames straight to one connection's transport.

    Found at ``scope["extensions"]["nexios.frames"]``. Called once per member per
    broadcast, so :meth:`write` is a few attribute reads and one ``transport.write``.
    """

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: NexiosWebSocketProtocol) -> None:
        self._protocol = protocol
        self._transport: asyncio.Transport = protocol.transport

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` (from :func:`build_frame`). False, writing nothing, when closed.

        Closed means: the handshake is not complete, a close frame was sent, the peer
        disconnected, or the transport is closing.
        """
        protocol = self._protocol
        if (
            protocol.close_sent
            or not protocol.handshake_complete
            or protocol.disconnected
            or protocol.initial_response is not None
            or self._transport.is_closing()
        ):
            return False
        self._transport.write(frame)
        return True

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the kernel: the peer's backlog."""
        return self._transport.get_write_buffer_size()

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once, when the transport's buffer drained after it was full
        (``resume_writing``); None cancels it."""
        self._protocol.writable_callback = callback

    def abort(self) -> None:
        """Drop the connection now, discarding the backlog (for peers that never read).

        No close frame is sent; the app's ``receive`` then gets ``websocket.disconnect``.
        """
        self._transport.abort()

    @property
    def closed(self) -> bool:
        """True when :meth:`write` would write nothing."""
        protocol = self._protocol
        return bool(
            protocol.close_sent
            or not protocol.handshake_complete
            or protocol.disconnected
            or protocol.initial_response is not None
            or self._transport.is_closing()
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FrameSink {state} buffered={self.buffered()}>"


class NexiosWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering a :class:`FrameSink`.

    Use it with ``uvicorn --ws nexios.server:NexiosWebSocketProtocol`` (``nexios run``
    does so by default when the installed uvicorn is in :data:`TESTED_UVICORN`).
    """

    writable_callback: Callable[[], None] | None = None

    def resume_writing(self) -> None:
        super().resume_writing()
        callback, self.writable_callback = self.writable_callback, None
        if callback is not None:
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable_callback = None
        super().connection_lost(exc)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.close_sent:  # handshake refused by websockets: no scope, no app
            return
        if not self.conn.extensions:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[FRAMES_EXTENSION] = FrameSink(self)

    def shutdown(self) -> None:
        """Close an open connection with 1001 (going away) rather than uvicorn's 1012.

        uvicorn calls this on every connection when the server stops, before the
        lifespan shutdown. The handler's receive gets ``websocket.disconnect`` with the
        same 1001 the client sees, so channel cleanup runs as for any disconnect.
        """
        if self.close_sent or not self.handshake_complete:
            super().shutdown()  # handshake pending or refused, or already closing
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})
        self.conn.send_close(1001, "server shutdown")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        digits = "".join(char for char in part if char.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def frame_once_protocol_path() -> str | None:
    """``"nexios.server:NexiosWebSocketProtocol"`` if the installed uvicorn is tested.

    None otherwise: use uvicorn's ``websockets-sansio`` instead.
    """
    low, high = TESTED_UVICORN
    return _PROTOCOL_PATH if low <= _version(uvicorn.__version__) < high else None
