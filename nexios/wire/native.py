"""The default WebSocket wire of ``nexios run``: picows's compiled frame parser under ASGI.

uvicorn parses the HTTP request and hands the upgrade to this protocol class
(``--ws nexios.server:PicowsWebSocketProtocol``). The handshake runs as in uvicorn's
sans-I/O protocol — the request is validated by websockets' ``ServerProtocol``, the app
gets ``websocket.connect`` and answers ``websocket.accept``, ``websocket.close`` (403) or
``websocket.http.response.*`` — and once the app accepts, the connection is handed to
picows (Cython): it writes the 101, and from then on parses, unmasks and frames in C.
Per message, Python runs one callback that turns a frame into the ASGI message (or
resolves the waiting ``receive``) and one ``send`` that hands the payload to picows,
which writes it with one ``send()`` system call.

What stays as it was, on the same ASGI semantics as uvicorn's protocols:

- **Frame sink**: ``scope["extensions"]["nexios.frames"]`` is this object (see
  :class:`nexios.wire.FrameSink`): ``write``, ``buffered``, ``abort``, ``closed`` and
  ``on_writable``.
- **Limits**: ``--ws-max-size`` (close 1009, per frame by picows and per message
  here), frames per message and control frames per second (see
  :mod:`nexios.wire.settings`), invalid UTF-8 (1007), protocol errors (1002) — each
  closing only the offender, logged at most once per 10 s per kind.
- **Keepalive**: a ping every ``--ws-ping-interval``, close 1011 when no pong arrives
  within ``--ws-ping-timeout`` (one sweep per server, no timer per connection).
- **Close handshakes** both ways, **1001** to every socket at shutdown.
- **Backpressure**: the app's ``send`` waits while the transport is over its high-water
  mark, reading pauses meanwhile (a peer that does not read its pongs can't grow the
  buffer), and reading pauses while received messages wait for the app.
- **Per-message deflate** (``--ws-per-message-deflate``): a client that negotiates it is
  served by :class:`~nexios.wire.sansio.NexiosWebSocketProtocol` instead (one frame cannot
  be shared across deflate contexts anyway). So is a connection over a UNIX socket
  (``--uds``, ``--fd`` of one): picows drives TCP sockets only.

Pinned range: this module creates picows's ``WSProtocol`` itself (its server does, but
the class is not in picows's public API), so it is selected only for the picows
versions in :data:`nexios.wire.TESTED_PICOWS` (see :func:`nexios.wire.default_ws_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote
from weakref import WeakKeyDictionary

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from nexios.wire import FRAMES_EXTENSION
from nexios.wire.guards import (
    CONTROL_CLOSE_CODE,
    FRAGMENTS_CLOSE_CODE,
    KEEPALIVE_CLOSE_CODE,
    control_frame_allowed,
    guard_for,
    peer,
    refuse,
)
from nexios.wire.sansio import NexiosWebSocketProtocol

__all__ = ["PicowsWebSocketProtocol"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE
_RECEIVE = "websocket.receive"
_SEND = "websocket.send"
_DISCONNECT = "websocket.disconnect"

# Connection states.
_CONNECTING = 0  # handshake: the app has not answered yet
_OPEN = 1  # accepted, frames flow both ways
_CLOSING = 2  # a close frame was sent (or the transport is closing)
_CLOSED = 3  # the transport is gone

# Why reading is paused (bits).
_PAUSED_FOR_APP = 1  # received messages wait for the app's receive()
_PAUSED_FOR_WRITES = 2  # the write buffer is over its high-water mark

_CLOSE_TIMEOUT = 10.0  # seconds a closing handshake may take before the socket is dropped
_EARLY_DATA_LIMIT = 64 * 1024  # bytes a client may send before its handshake is answered
_READ_LIMIT = 64 * 1024  # bytes per read (see _BoundedReads)
_CODE = struct.Struct("!H")
_PICOWS_PARSER_ERROR = "WS parser error: %s, initiate disconnect"  # picows 2.3's wording

logger = logging.getLogger("uvicorn.error")  # uvicorn's own lines: same logger, same filters
_wire_logger = logging.getLogger("nexios.wire")


class _BoundedReads(WSProtocol):  # type: ignore[misc]
    """picows's protocol, reading at most ``_READ_LIMIT`` bytes at a time.

    picows doubles its read buffer whenever a read fills it, so a client that floods a
    connection would grow it to the size of the kernel's socket buffers (tens of MiB),
    and every frame of one read is handled before reading can pause. Bounded reads
    keep both at ``_READ_LIMIT`` (the buffer still grows to fit a large frame).
    """

    __slots__ = ()

    def get_buffer(self, size_hint: int) -> memoryview:
        buffer: memoryview = super().get_buffer(size_hint)
        return buffer if len(buffer) <= _READ_LIMIT else buffer[:_READ_LIMIT]


def _valid_close_code(code: int) -> bool:
    """Close codes a peer may send (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _ConnectionLog:
    """picows's logger for one connection.

    picows reports a protocol error it finds (a frame over ``--ws-max-size``, a bad
    length, a second close frame...) only through its logger, just before it sends its
    own close frame: this object passes that to the connection, which closes with the
    right code and logs one throttled line with the client's address. picows's
    per-connection info lines are dropped. (picows would also make a child
    ``logging.Logger`` per connection, never freed, for a ``logging.Logger``.)
    """

    __slots__ = ("wire",)

    def __init__(self, wire: PicowsWebSocketProtocol | None) -> None:
        self.wire = wire

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and _wire_logger.isEnabledFor(level)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        pass

    info = debug

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            return
        wire = self.wire
        if kwargs.get("exc_info") or wire is None:
            _wire_logger.log(level, msg, *args, **kwargs)  # a bug, not a client: keep it all
        elif msg == _PICOWS_PARSER_ERROR and args and len(args[0]) == 2:
            code, reason = args[0]
            wire.refused_by_picows(int(code), str(reason))
        else:
            wire.throttled_log("picows", "WebSocket from %s: " + str(msg), *args)


class _Server:
    """What every connection of one server shares (one object, not copies per connection)."""

    __slots__ = (
        "app",
        "asgi_version",
        "config",
        "connections",
        "guard",
        "loop",
        "max_size",
        "root_path",
        "state",
        "tasks",
    )

    def __init__(self, config: Any, server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = config.loaded_app
        self.loop = loop
        self.state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.root_path: str = config.root_path
        self.asgi_version: str = config.asgi_version
        self.max_size: int = config.ws_max_size
        self.guard = guard_for(config, server_state)


_servers: WeakKeyDictionary[Any, _Server] = WeakKeyDictionary()


def _server_for(config: Any, server_state: Any, loop: asyncio.AbstractEventLoop) -> _Server:
    server = _servers.get(server_state)
    if server is None:
        server = _servers[server_state] = _Server(config, server_state, loop)
    return server


class _Handshake:
    """Handshake-only state, dropped once the app has answered."""

    __slots__ = ("app_state", "conn", "delegate", "early", "request", "response")

    def __init__(self, app_state: dict[str, Any]) -> None:
        self.app_state = app_state
        self.conn = ServerProtocol(max_size=None, logger=logger)
        self.request: Request | None = None
        self.early = bytearray()
        self.response: tuple[int, list[tuple[str, str]], bytes] | None = None
        self.delegate: NexiosWebSocketProtocol | None = None


class _Fragments:
    """A message arriving in several frames."""

    __slots__ = ("parts", "size", "text")

    def __init__(self, text: bool, first: bytes) -> None:
        self.text = text
        self.parts = [first]
        self.size = len(first)


class PicowsWebSocketProtocol(WSListener, asyncio.Protocol):
    """uvicorn WebSocket protocol on picows's frame parser; see the module docstring.

    The object is also the connection's frame sink (``scope["extensions"]["nexios.frames"]``).
    """

    __slots__ = (
        "_app_closed",
        "_close_timer",
        "_disconnect",
        "_drain",
        "_fragments",
        "_log",
        "_paused",
        "_pending_ping",
        "_pings",
        "_pre",
        "_queue",
        "_server",
        "_state",
        "_waiter",
        "_writable_callback",
        "_ws",
        "control_count",
        "control_window",
        "scope",
        "transport",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover
        loop = _loop or asyncio.get_running_loop()
        self._server = _server_for(config, server_state, loop)
        self._pre: _Handshake | None = _Handshake(app_state)
        self._state = _CONNECTING
        self._ws: WSTransport | None = None
        self._queue: deque[dict[str, Any]] | None = None
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._paused = 0
        self._drain: list[asyncio.Future[None]] | None = None
        self._writable_callback: Callable[[], None] | None = None
        self._fragments: _Fragments | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._pending_ping = 0  # the number of the ping awaiting its pong; 0: none
        self._pings = 0
        self._log: _ConnectionLog | None = None
        self._app_closed = False
        self.control_window = 0.0
        self.control_count = 0
        self.scope: dict[str, Any] = {}
        self.transport: asyncio.Transport = None  # type: ignore[assignment]

    # ================================================================ transport (handshake)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        pre = self._pre
        if pre is None:  # pragma: no cover - picows owns the transport by then
            return
        if pre.delegate is not None:
            pre.delegate.data_received(data)
            return
        if pre.request is not None:
            # Sent before the 101: kept for picows, within bounds.
            pre.early += data
            if len(pre.early) > _EARLY_DATA_LIMIT:
                self._pause_reading(_PAUSED_FOR_APP)
            return
        conn = pre.conn
        conn.receive_data(data)
        events = conn.events_received()
        if not events:
            refusal = conn.data_to_send()  # 414/431 for an oversized request line or head
            if refusal:
                self._refuse(b"".join(refusal))
            return
        request = events[0]
        assert isinstance(request, Request)
        pre.request = request
        deflate = self._server.config.ws_per_message_deflate and _offers_deflate(request)
        if deflate or not _is_tcp(self.transport):
            self._delegate(pre, data)
            return
        self._handle_request(pre, conn, request)

    def eof_received(self) -> bool | None:
        pre = self._pre
        if pre is not None and pre.delegate is not None:
            pre.delegate.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        pre = self._pre
        if pre is not None and pre.delegate is not None:
            pre.delegate.connection_lost(exc)
            return
        # Lost during the handshake (picows reports later losses to on_ws_disconnected).
        self._lost(1006)

    def _refuse(self, response: bytes) -> None:
        """Answer the handshake with an HTTP response and close."""
        self._state = _CLOSED
        refuse(self.transport, response)

    def _delegate(self, pre: _Handshake, data: bytes) -> None:
        """Per-message deflate negotiated, or a UNIX socket (picows drives TCP sockets
        only): the sans-I/O protocol serves this connection."""
        server = self._server
        delegate = NexiosWebSocketProtocol(server.config, server.state, pre.app_state)
        server.connections.discard(self)
        pre.delegate = delegate
        self._state = _CLOSED
        delegate.connection_made(self.transport)
        delegate.data_received(data)

    def _handle_request(self, pre: _Handshake, conn: ServerProtocol, request: Request) -> None:
        response = conn.accept(request)
        if response.status_code != 101:
            conn.send_response(response)
            self._refuse(b"".join(conn.data_to_send()))
            return
        server = self._server
        transport = self.transport
        headers = [
            (name.encode("ascii"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ]
        raw_path, _, query_string = request.path.partition("?")
        subprotocols: list[str] = []
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in header.split(","))
        root_path = server.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": server.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": get_remote_addr(transport),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": pre.app_state.copy(),
            "extensions": {"websocket.http.response": {}, FRAMES_EXTENSION: self},
        }
        self._queue = deque([{"type": "websocket.connect"}])
        task = server.loop.create_task(server.app(self.scope, self.receive, self.send))
        task.add_done_callback(self._app_done)
        server.tasks.add(task)

    # ================================================================ ASGI

    async def receive(self) -> dict[str, Any]:
        """The ASGI receive callable."""
        queue = self._queue
        if queue:
            message = queue.popleft()
            if not queue:
                self._queue = None  # an idle connection keeps no deque (~600 bytes)
                if self._paused & _PAUSED_FOR_APP:
                    self._resume_reading(_PAUSED_FOR_APP)
            return message
        if self._disconnect is not None:
            return self._disconnect
        waiter: asyncio.Future[dict[str, Any]] = self._server.loop.create_future()
        self._waiter = waiter
        return await waiter

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI send callable."""
        if self._paused & _PAUSED_FOR_WRITES:
            await self._writable()
        state = self._state
        if state == _OPEN:
            if self.transport.is_closing():
                # picows writes with send(2) on the socket's descriptor: once the transport
                # is closing that descriptor may already be closed, even reused.
                raise ClientDisconnected()
            kind = message["type"]
            ws = self._ws
            assert ws is not None
            if kind == _SEND:
                text = message.get("text")
                if text is not None:
                    ws.send(_TEXT, text)
                    return
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("'websocket.send' needs 'text' or 'bytes'.")
                ws.send(_BINARY, data)
                return
            if kind == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                self._app_closed = True
                self._close(code, reason, initiated=True)
                self._deliver_disconnect(code, reason)
                return
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
            )
        if state == _CONNECTING:
            self._handshake_message(message)
            return
        if self._app_closed and state == _CLOSING:
            raise RuntimeError(
                f"Unexpected ASGI message {message['type']!r}, after sending 'websocket.close'."
            )
        raise ClientDisconnected()

    def _handshake_message(self, message: dict[str, Any]) -> None:
        pre = self._pre
        assert pre is not None
        kind = message["type"]
        if pre.response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got {kind!r}."
                )
            status, headers, body = pre.response
            body += message.get("body", b"")
            pre.response = (status, headers, body)
            if not message.get("more_body", False):
                self._send_http_response(pre, status, headers, body)
            return
        if kind == "websocket.accept":
            self._log_handshake("[accepted]")
            self._accept(pre, message)
        elif kind == "websocket.close":
            self._log_handshake("403")
            self._deliver_disconnect(1006, "")
            conn = pre.conn
            conn.send_response(conn.reject(403, ""))
            self._refuse(b"".join(conn.data_to_send()))
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self._log_handshake(str(status))
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            pre.response = (status, headers, b"")
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start' but got {kind!r}."
            )

    def _log_handshake(self, outcome: str) -> None:
        logger.info(
            '%s - "WebSocket %s" ' + outcome,
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
        )

    def _send_http_response(
        self, pre: _Handshake, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        response_headers = Headers(headers)
        response_headers.setdefault("Connection", "close")
        response_headers.setdefault("Content-Length", str(len(body)))
        response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        conn = pre.conn
        conn.send_response(Response(status, _reason(status), response_headers, body))
        self._deliver_disconnect(1006, "")
        self._refuse(b"".join(conn.data_to_send()))

    def _accept(self, pre: _Handshake, message: dict[str, Any]) -> None:
        """Hand the transport to picows, which writes the 101 and parses from now on."""
        if self.transport.is_closing():
            raise ClientDisconnected()
        server = self._server
        extra = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in (*server.state.default_headers, *message.get("headers", ()))
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            extra.append(("Sec-WebSocket-Protocol", subprotocol))
        response = WSUpgradeResponse.create_101_response(extra)
        request = pre.request
        assert request is not None
        key = request.headers["Sec-WebSocket-Key"]
        early = pre.early
        self._pre = None
        with_listener = WSUpgradeResponseWithListener(response, self)

        def listener_factory(_: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
            return with_listener

        protocol = _BoundedReads(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # server side
            listener_factory,
            self._connection_log(),
            True,  # an exception in our callbacks closes 1011 rather than leaving it open
            None,  # handshake timeout: the HTTP layer's
            False,  # auto ping: the server guard's sweep does it
            1.0,
            1.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # auto pong: ours, to count control frames
            server.max_size,
            None,
            0,  # read buffer: picows's minimum (2 KiB), grown on demand
        )
        transport = self.transport
        _write_frames_joined(transport)
        protocol.connection_made(transport)
        # picows completes the handshake from a request: give it a minimal one with the
        # client's key (already validated), then whatever the client sent after it.
        _feed(protocol, _MINIMAL_REQUEST % key.encode("ascii") + bytes(early))
        transport.set_protocol(protocol)
        if self._state != _OPEN:  # pragma: no cover - picows refused what websockets accepted
            logger.error("WebSocket handshake failed in picows; closing the connection")
            transport.close()
            self._lost(1006)
            return
        if self._paused & _PAUSED_FOR_APP and not self._queue:
            self._resume_reading(_PAUSED_FOR_APP)
        server.guard.keepalive_started()

    def _connection_log(self) -> _ConnectionLog:
        log = self._log = _ConnectionLog(self)
        return log

    def _app_done(self, task: asyncio.Task[None]) -> None:
        self._server.tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            if not isinstance(error, ClientDisconnected):
                logger.error("Exception in ASGI application\n", exc_info=error)
        elif not task.cancelled():
            if self._state == _CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")
            elif task.result() is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", task.result())
        state = self._state
        if state == _CONNECTING:
            self._reject_500()
        elif state == _OPEN:
            self._close(1000, "", initiated=False)
        elif state == _CLOSING and self._close_timer is None:
            self._close_transport()

    def _reject_500(self) -> None:
        """The app failed before answering the handshake (uvicorn answers 500 too)."""
        pre = self._pre
        if pre is None or pre.response is not None:  # a response was begun: just close
            self._refuse(b"")
            return
        conn = pre.conn
        conn.send_response(conn.reject(500, "Internal Server Error"))
        self._refuse(b"".join(conn.data_to_send()))

    # ================================================================ picows listener

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._state = _OPEN

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if self._state != _OPEN or transport.is_close_frame_sent:
            # After our close frame the peer's data is discarded. picows sends its own
            # close on a protocol error (e.g. a frame over --ws-max-size) and may still
            # complete that frame: it must not reach the app.
            if msg_type is _CLOSE and self._state != _OPEN:
                self._on_close_frame(frame)
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._fail(1002, "reserved bits set without an extension")
            return
        if msg_type is _TEXT:
            if frame.fin and self._fragments is None:
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8 in a text message")
                    return
                self._deliver({"type": _RECEIVE, "text": text})
                return
            self._start_fragments(frame, text=True)
        elif msg_type is _BINARY:
            if frame.fin and self._fragments is None:
                self._deliver({"type": _RECEIVE, "bytes": frame.get_payload_as_bytes()})
                return
            self._start_fragments(frame, text=False)
        elif msg_type is _CONTINUATION:
            self._continue_fragments(frame)
        elif msg_type is _PING:
            if self._control_allowed():
                transport.send(_PONG, frame.get_payload_as_bytes())
        elif msg_type is _PONG:
            if self._control_allowed():
                self._pending_ping = 0
        else:
            self._on_close_frame(frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        code = 1005
        handshake = transport.close_handshake
        if handshake is not None and handshake.sent is not None:
            code = handshake.sent.code.value  # picows closed it (a protocol error it found)
        self._lost(code)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: hold sends, stop reading."""
        self._pause_reading(_PAUSED_FOR_WRITES)

    def resume_writing(self) -> None:
        """The buffer drained below its low-water mark: sends, reads and the sink go on."""
        self._resume_reading(_PAUSED_FOR_WRITES)
        self._wake_writers()

    # ================================================================ messages and frames

    def _deliver(self, message: dict[str, Any]) -> None:
        """Hand a received message to the app's pending receive, or queue it and stop
        reading until the app catches up."""
        if not self._resolve(message):
            self._enqueue(message)
            if not self._paused & _PAUSED_FOR_APP:
                self._pause_reading(_PAUSED_FOR_APP)

    def _deliver_disconnect(self, code: int, reason: str) -> None:
        if self._disconnect is None:
            message = self._disconnect = {"type": _DISCONNECT, "code": code, "reason": reason}
            if not self._resolve(message):
                self._enqueue(message)  # the last message: nothing left to hold back

    def _resolve(self, message: dict[str, Any]) -> bool:
        waiter = self._waiter
        if waiter is None:
            return False
        self._waiter = None
        if waiter.done():  # the receiving task was cancelled
            return False
        waiter.set_result(message)
        return True

    def _enqueue(self, message: dict[str, Any]) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)

    def _start_fragments(self, frame: WSFrame, *, text: bool) -> None:
        if self._fragments is not None:
            self._fail(1002, "a new message began before the fragmented one ended")
            return
        self._fragments = _Fragments(text, frame.get_payload_as_bytes())

    def _continue_fragments(self, frame: WSFrame) -> None:
        fragments = self._fragments
        if fragments is None:
            self._fail(1002, "a continuation frame with no message to continue")
            return
        fragments.size += frame.payload_size
        parts = fragments.parts
        parts.append(frame.get_payload_as_bytes())
        server = self._server
        if fragments.size > server.max_size:
            self._fail(1009, f"message of more than {server.max_size} bytes (--ws-max-size)")
            return
        cap = server.guard.max_fragments
        if cap is not None and len(parts) > cap:
            self._fail(
                FRAGMENTS_CLOSE_CODE,
                f"message split into more than {cap} frames (--ws-max-fragments)",
            )
            return
        if not frame.fin:
            return
        self._fragments = None
        data = b"".join(parts)
        if fragments.text:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return
            self._deliver({"type": _RECEIVE, "text": text})
        else:
            self._deliver({"type": _RECEIVE, "bytes": data})

    def _control_allowed(self) -> bool:
        guard = self._server.guard
        if control_frame_allowed(self, guard.max_control_frames, self._server.loop.time()):
            return True
        self._fail(
            CONTROL_CLOSE_CODE,
            f"more than {guard.max_control_frames} pings/pongs in a second "
            "(--ws-max-control-frames)",
        )
        return False

    def _on_close_frame(self, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        if not payload:
            code, reason = 1005, ""
        else:
            code = _CODE.unpack_from(payload)[0]
            if not _valid_close_code(code):
                self._fail(1002, f"invalid close code {code}")
                return
            reason = payload[2:].decode()  # picows checked it is UTF-8
        if self._state == _OPEN:  # the peer closes: answer with its code, then go
            self._state = _CLOSING
            self._send_close(code, reason)
            self._deliver_disconnect(code, reason)
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol or a limit: close with ``code``, log once."""
        self.throttled_log(f"close{code}", "WebSocket from %s: %s; closing with %d", reason, code)
        self._fragments = None
        if self._state == _OPEN:
            self._close(code, reason[:120], initiated=False)
            self._deliver_disconnect(code, reason)
        self._close_transport()

    def _close(self, code: int, reason: str, *, initiated: bool) -> None:
        """Send a close frame; with ``initiated``, wait (bounded) for the peer's answer."""
        self._state = _CLOSING
        self._send_close(code, reason)
        if self._paused & _PAUSED_FOR_APP:
            self._resume_reading(_PAUSED_FOR_APP)  # to see the peer's close frame
        if initiated:
            self._close_timer = self._server.loop.call_later(_CLOSE_TIMEOUT, self._close_transport)
        else:
            self._close_transport()

    def _send_close(self, code: int, reason: str) -> None:
        """Our close frame, through picows, which then sends nothing more (its own close
        on a protocol error included). 1005 (the peer's close had no code) is answered
        with 1000: a close frame may not carry 1005."""
        ws = self._ws
        if ws is not None and not self.transport.is_closing() and not ws.is_close_frame_sent:
            ws.send_close(WSCloseCode(1000 if code == 1005 else code), reason.encode()[:123])

    def refused_by_picows(self, code: int, reason: str) -> None:
        """picows found a protocol error and is about to close with ``code``."""
        ws = self._ws
        if self._state != _OPEN or ws is None:
            return
        handshake = ws.close_handshake
        first = handshake.recv if handshake is not None else None
        if first is not None:
            # A close frame, then more frames in the same read (picows parses one frame
            # ahead): the peer closed cleanly; answer that close, ignore the rest.
            self._state = _CLOSING
            code, reason = first.code.value or 1005, first.reason or ""
            self._send_close(code, reason)
            self._deliver_disconnect(code, reason)
        else:
            self.throttled_log(
                f"close{code}", "WebSocket from %s: %s; closing with %d", reason, code
            )
            self._state = _CLOSING
            self._deliver_disconnect(code, reason)
        # picows closes the transport right after; a peer that doesn't read is dropped.
        self._close_timer = self._server.loop.call_later(_CLOSE_TIMEOUT, self.transport.abort)

    def throttled_log(self, kind: str, message: str, *args: Any) -> None:
        """One line per 10 s per ``kind``; the client's address is the first argument."""
        self._server.guard.log.warning(kind, message, peer(self.scope.get("client")), *args)

    def _write_frame(self, msg_type: WSMsgType, payload: bytes) -> None:
        ws = self._ws
        if ws is not None and not self.transport.is_closing():
            ws.send(msg_type, payload)

    def _close_transport(self) -> None:
        """Close after flushing; drop the socket if the peer doesn't take the rest in time."""
        transport = self.transport
        if transport.is_closing():
            return
        timer = self._close_timer
        if timer is not None:
            timer.cancel()
            self._close_timer = None
        transport.close()
        if transport.get_write_buffer_size():
            self._close_timer = self._server.loop.call_later(_CLOSE_TIMEOUT, transport.abort)

    def _lost(self, code: int) -> None:
        """The transport is gone: tell the app (once), free waiters and timers."""
        self._state = _CLOSED
        self._server.connections.discard(self)
        if self._log is not None:
            self._log.wire = None  # picows keeps its logger: no cycle back to us
        timer = self._close_timer
        if timer is not None:
            timer.cancel()
            self._close_timer = None
        self._fragments = None
        self._writable_callback = None  # the app learns of the loss from its receive
        self._deliver_disconnect(code, "")
        self._wake_writers()

    # ================================================================ flow control

    def _pause_reading(self, reason: int) -> None:
        if not self._paused and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused |= reason

    def _resume_reading(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _writable(self) -> None:
        waiter: asyncio.Future[None] = self._server.loop.create_future()
        if self._drain is None:
            self._drain = []
        self._drain.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters, self._drain = self._drain, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        callback = self._writable_callback
        if callback is not None:
            self._writable_callback = None
            callback()

    # ================================================================ keepalive (the guard's sweep)

    def keepalive_ping(self) -> int:
        """Send a keepalive ping; its number, or 0 when none went out (closed, or one
        still awaits its pong)."""
        if self._state != _OPEN or self._pending_ping:
            return 0
        self._pings += 1
        self._pending_ping = self._pings
        self._write_frame(_PING, b"")
        return self._pings

    def keepalive_expired(self, ping: int) -> None:
        """``ws_ping_timeout`` after ping number ``ping``: close if its pong has not
        arrived. A later ping's wait is its own: the pong of this one did arrive."""
        if self._pending_ping == ping and self._state == _OPEN:
            self._fail(KEEPALIVE_CLOSE_CODE, "keepalive ping timeout")

    # ================================================================ server shutdown

    def shutdown(self) -> None:
        """uvicorn stops: close with 1001 (going away); the app sees the same code."""
        if self._state == _CONNECTING:
            self._reject_500()
            self.transport.close()
        elif self._state == _OPEN:
            self._deliver_disconnect(1001, "server shutdown")
            self._close(1001, "server shutdown", initiated=False)
        else:
            self._close_transport()

    # ================================================================ frame sink

    def write(self, frame: bytes) -> bool:
        """Write a pre-built frame; False, writing nothing, once the connection is closing."""
        if self._state != _OPEN:
            return False
        transport = self.transport
        if transport.is_closing() or self._ws.is_close_frame_sent:  # type: ignore[union-attr]
            return False
        transport.write(frame)
        return True

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        """Drop the connection now, discarding the backlog; the app then sees a disconnect."""
        if self._state == _OPEN:
            self._state = _CLOSING
        self.transport.abort()

    @property
    def closed(self) -> bool:
        """True when :meth:`write` would write nothing."""
        return (
            self._state != _OPEN
            or self.transport.is_closing()
            or self._ws is None
            or self._ws.is_close_frame_sent
        )

    @property
    def writing_paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return bool(self._paused & _PAUSED_FOR_WRITES)

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` once, when the write buffer drains below its low-water mark.

        If the buffer is not over its high-water mark now, it is called on the next
        event-loop iteration instead. Never called once the connection is lost (the
        app's receive says so). ``None`` cancels.
        """
        self._writable_callback = callback
        if callback is not None and not self._paused & _PAUSED_FOR_WRITES:
            self._server.loop.call_soon(self._writable_now, callback)

    def _writable_now(self, callback: Callable[[], None]) -> None:
        if self._writable_callback is callback and not self._paused & _PAUSED_FOR_WRITES:
            self._writable_callback = None
            callback()

    def __repr__(self) -> str:
        states = ("connecting", "open", "closing", "closed")
        buffered = self.buffered() if self.transport is not None else 0
        return f"<PicowsWebSocketProtocol {states[self._state]} buffered={buffered}>"


_MINIMAL_REQUEST = (
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %b\r\n\r\n"
)


def _write_frames_joined(transport: asyncio.Transport) -> None:
    """Make picows's ``writelines([header, payload])`` one ``write`` of the joined bytes.

    From Python 3.12 the selector transport has its own ``writelines``, which skips the
    high-water check until 3.12.9 / 3.13.2 (CPython gh-127655): sends never paused, and a
    peer that stopped reading grew the buffer without bound. Joining is what 3.11's
    transport does for every ``writelines``.
    """
    if sys.version_info < (3, 12):
        return
    write = transport.write

    def writelines(chunks: Any) -> None:
        write(b"".join(chunks))

    # uvloop's transport is read-only, and pauses on writelines
    with contextlib.suppress(AttributeError):
        setattr(transport, "writelines", writelines)  # noqa: B010 - an instance override


def _feed(protocol: Any, data: bytes) -> None:
    """Give ``data`` to a buffered protocol as if the transport had read it."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(-1)
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


def _is_tcp(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)


def _offers_deflate(request: Request) -> bool:
    return any(
        "permessage-deflate" in value.lower()
        for value in request.headers.get_all("Sec-WebSocket-Extensions")
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
