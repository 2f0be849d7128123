"""The fallback wire: uvicorn's sans-I/O ``websockets`` protocol, hardened, with a frame sink.

Used by ``nexios run`` when picows is not available (and, per connection, for clients
that negotiate per-message deflate). What it adds to uvicorn's
``WebSocketsSansIOProtocol``:

- the ``nexios.frames`` scope extension (:class:`FrameSink`), offered only when
  per-message deflate was *not* negotiated (a compressed connection has its own deflate
  context, so one frame cannot fit all);
- **1001** (going away) at shutdown instead of uvicorn's 1012;
- **read backpressure**: reading pauses while the write buffer is over its high-water
  mark, so a client that sends pings without reading the pongs cannot grow the server's
  memory; frames per message (close 1009) and pings/pongs per second (close 1008) are
  bounded (see :mod:`nexios.wire.settings`);
- a handshake request websockets refuses (a request line over 8 KiB: 414, too many or
  too long headers: 431) is answered and the socket closed — uvicorn leaves both open;
- invalid UTF-8 closes 1007 with one throttled warning line, not an error traceback per
  message.

Ordering of the sink: a frame written through it goes out after every
``websocket.send`` that has returned and before every one that starts later. A send
still waiting on uvicorn's write flow control is concurrent with it and may come after.

Pinned range: the protocol reads uvicorn internals (``transport``, ``handshake_complete``,
``close_sent``, ``disconnected``, ``initial_response``, ``conn``, ``scope``,
``read_paused``, ``queue``, ``frames``) that are not public API. It is tested with
uvicorn ``>=0.54,<0.55``; outside that range ``nexios run`` uses uvicorn's own
``websockets-sansio`` protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request

from nexios.wire import FRAMES_EXTENSION
from nexios.wire.guards import (
    CONTROL_CLOSE_CODE,
    FRAGMENTS_CLOSE_CODE,
    control_frame_allowed,
    guard_for,
    peer,
    refuse,
)

__all__ = ["FrameSink", "NexiosWebSocketProtocol"]

_SLICE = 4 * 1024  # bytes parsed between two checks (see _parse_slices)
_SLICE_TIME = 0.002  # seconds of parsing per connection and event-loop iteration


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
        """Write ``frame`` (from ``build_frame``). False, writing nothing, when closed.

        Closed means: the handshake is not complete, a close frame was sent, the peer
        disconnected, or the transport is closing.
        """
        if self.closed:
            return False
        self._transport.write(frame)
        return True

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the kernel: the peer's backlog."""
        return self._transport.get_write_buffer_size()

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

    @property
    def writing_paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return not self._protocol.writable.is_set()

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` once, when the write buffer drains below its low-water mark.

        If the buffer is not over its high-water mark now, it is called on the next
        event-loop iteration instead. Never called once the connection is lost (the
        app's receive says so). ``None`` cancels.
        """
        protocol = self._protocol
        protocol.writable_callback = callback
        if callback is not None and protocol.writable.is_set():
            protocol.loop.call_soon(protocol.writable_now, callback)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FrameSink {state} buffered={self.buffered()}>"


class NexiosWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, hardened, offering a :class:`FrameSink`.

    Use it with ``uvicorn --ws nexios.server:NexiosWebSocketProtocol``.
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard_for(config, server_state)
        self.writable_callback: Callable[[], None] | None = None
        self.reading_held = False  # paused while the write buffer is over its high-water mark
        self.unparsed: memoryview | None = None  # read but held back while reading is paused
        self.slicing = False  # the next slice of `unparsed` is scheduled
        self.control_window = 0.0
        self.control_count = 0

    # ------------------------------------------------------------------ handshake

    def data_received(self, data: bytes) -> None:
        if len(data) <= _SLICE and self.unparsed is None:
            self._parse(data)
        elif self.unparsed is not None:  # parse in order, after what is held back
            self.unparsed = memoryview(bytes(self.unparsed) + data)
            self._schedule_rest()
        else:
            self._parse_slices(memoryview(data))

    def _parse_slices(self, view: memoryview) -> None:
        """Parse a large read in slices, for at most ``_SLICE_TIME`` per loop iteration.

        websockets parses a whole read before uvicorn sees a message (64-256 KiB: tens
        of thousands of tiny frames from a flood). Slice by slice, the rest is held back
        (reading paused) when the time is up, the app must catch up or the write buffer
        is full: other connections are served in between, and a flood is closed after a
        slice rather than after the whole read. Big frames parse fast and still go
        through in one iteration.
        """
        deadline = time.perf_counter() + _SLICE_TIME
        while True:
            self._parse(bytes(view[:_SLICE]))
            view = view[_SLICE:]  # a view: the rest is not copied
            if not view or self.transport.is_closing():
                return
            if self.read_paused or self.reading_held or time.perf_counter() > deadline:
                break
        self.unparsed = view
        self.transport.pause_reading()
        self._schedule_rest()

    def _schedule_rest(self) -> None:
        if not self.slicing and not self.read_paused and not self.reading_held:
            self.slicing = True
            self.loop.call_soon(self._parse_rest)

    def _parse_rest(self) -> None:
        self.slicing = False
        unparsed = self.unparsed
        if unparsed is None or self.read_paused or self.reading_held:
            return  # the resume that unpauses reading calls again
        self.unparsed = None
        if self.transport.is_closing():
            return
        self._parse_slices(unparsed)
        self._resume_reading()

    def _parse(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and not self.close_sent:
            refusal = self.conn.data_to_send()  # 414/431 written by websockets' parser
            if refusal:
                self.close_sent = True
                self.handshake_complete = True
                refuse(self.transport, b"".join(refusal))

    def _resume_reading(self) -> None:
        """Read again — after what was held back is parsed — unless paused for a reason."""
        if self.unparsed is not None:
            self._schedule_rest()
        elif not self.read_paused and not self.reading_held and not self.transport.is_closing():
            self.transport.resume_reading()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.close_sent:  # handshake refused by websockets: no scope, no app
            return
        if not self.conn.extensions:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[FRAMES_EXTENSION] = FrameSink(self)

    # ------------------------------------------------------------------ frames

    def handle_cont(self, event: Frame) -> None:
        if self.close_sent:
            return
        cap = self.guard.max_fragments
        if cap is not None and len(self.frames) >= cap:
            self._fail(
                FRAGMENTS_CLOSE_CODE,
                f"message split into more than {cap} frames (--ws-max-fragments)",
            )
            return
        super().handle_cont(event)

    def handle_ping(self) -> None:
        if self._control_allowed():
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self._control_allowed():
            super().handle_pong(event)

    def _control_allowed(self) -> bool:
        if self.close_sent:
            return False
        limit = self.guard.max_control_frames
        if control_frame_allowed(self, limit, self.loop.time()):
            return True
        self._fail(
            CONTROL_CLOSE_CODE,
            f"more than {limit} pings/pongs in a second (--ws-max-control-frames)",
        )
        return False

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            # The app is past `websocket.close`: discard the message rather than queueing
            # it, so reads stay active until the peer's close reply arrives.
            return
        if self.curr_msg_data_type == "text":
            try:
                message: dict[str, Any] = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(message)  # type: ignore[arg-type]
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` for something the peer did; one throttled log line."""
        client = self.client
        self.guard.log.warning(
            f"close{code}",
            "WebSocket from %s: %s; closing with %d",
            peer(client),
            reason,
            code,
        )
        self.frames = []
        self.conn.fail(code, reason[:120])
        self.handle_parser_exception()

    # ------------------------------------------------------------------ flow control

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self._resume_reading()
        return message

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self.reading_held:
            self.reading_held = True
            if not self.read_paused:
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.reading_held:
            self.reading_held = False
            self._resume_reading()
        self.writable_now(self.writable_callback)

    def writable_now(self, callback: Callable[[], None] | None) -> None:
        """Run the frame sink's ``on_writable`` callback if it is still the registered one."""
        if callback is not None and callback is self.writable_callback and self.writable.is_set():
            self.writable_callback = None
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable_callback = None  # the app learns of the loss from its receive
        super().connection_lost(exc)

    # ------------------------------------------------------------------ shutdown

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
