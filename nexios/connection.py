"""The WebSocket connection: an ASGI ``websocket`` scope behind a small, strict API.

State machine (``WebSocket.connection_state``)::

    CONNECTING --accept()--> CONNECTED --close()-----------> CLOSED
        |                        |
        +--close()/deny()--> CLOSED (handshake refused: HTTP 403, or the deny status)
                                 +--peer closes / drops---> DISCONNECTED

Every operation checks the state first; a wrong one raises
:class:`~nexios.exceptions.WebSocketStateError` saying what was expected and what to
do. Once the peer is gone, every receive and send raises
:class:`~nexios.exceptions.WebSocketDisconnect` with the close code.

The receive/send path is kept lean: one state check, the ASGI call, and the decode or
encode the frame needs — no logging, no helper objects. With limits on (see
:mod:`nexios.limits`), each received message also goes through one
:meth:`MessageLimiter.check <nexios.limits.MessageLimiter.check>` call; a broken limit
sends the close frame with the limit's code (1009 size, 1008 rate), logs one warning
and raises ``WebSocketDisconnect(code)`` from the receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from nexios import encoding
from nexios.exceptions import (
    InvalidJSONError,
    WebSocketDisconnect,
    WebSocketMessageTypeError,
    WebSocketStateError,
)
from nexios.http.datastructures import URL, Headers, QueryParams
from nexios.http.request import parse_cookies

if TYPE_CHECKING:
    from nexios.framing import Frame
    from nexios.limits import MessageLimiter

__all__ = [
    "CLOSE_TIMEOUT",
    "MemberConnection",
    "OutgoingQueue",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketState",
]

Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class OutgoingQueue(Protocol):
    """Messages queued for this socket by the channels runtime (a member's sender)."""

    @property
    def pending(self) -> bool:
        """True while queued messages have not been handed to the server yet."""

    async def drain(self) -> None:
        """Return once what was queued before the call has been handed to the server."""

    def put(self, frame: Frame) -> bool:
        """Queue ``frame`` after what is queued. False when it was not queued."""


class WebSocketState(enum.Enum):
    """Where a connection is in its life. See the module docstring for transitions."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    DISCONNECTED = "disconnected"


_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED
_CLOSED = WebSocketState.CLOSED
_DISCONNECTED = WebSocketState.DISCONNECTED

_RECEIVE = "websocket.receive"
_DISCONNECT = "websocket.disconnect"
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`WebSocket.end` waits to hand a close frame to a peer that may not read."""

logger = logging.getLogger("nexios.websockets")


class MemberConnection(Protocol):
    """What the channels runtime needs of a group member's connection.

    A :class:`WebSocket`, or a Server-Sent Events stream
    (:class:`~nexios.eventstream.EventStream`). The member's sender hands it messages
    with :meth:`transmit`; the runtime ends it with :meth:`end`; the member leaves its
    groups when the callbacks given to :meth:`on_close` run.
    """

    sender: OutgoingQueue | None
    """The member's queue, set by the runtime at its first join."""

    @property
    def scope(self) -> Mapping[str, Any]:
        """The ASGI scope of the connection."""

    @property
    def connection_state(self) -> WebSocketState:
        """Where the connection is in its life (see the module docstring)."""

    async def transmit(self, message: Message) -> None:
        """Hand an ASGI send message to the server, as is."""

    def end(self, code: int, reason: str = "") -> None:
        """End the connection from outside its handler (eviction, expiry, shutdown)."""

    async def wait_ended(self) -> None:
        """Wait until what :meth:`end` sends was handed on (or its bound passed)."""

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` when the connection's handler ends."""


class WebSocket:
    """One WebSocket connection, handed to a route handler.

    >>> @app.ws_route("/ws")
    ... async def echo(ws: WebSocket) -> None:
    ...     await ws.accept()
    ...     async for text in ws.iter_text():
    ...         await ws.send_text(text)
    """

    __slots__ = (
        "__weakref__",
        "_cleanup",
        "_connect_received",
        "_ending",
        "_headers",
        "_kicked",
        "_limits",
        "_query_params",
        "_receive",
        "_receiving",
        "_send",
        "_state_obj",
        "_task",
        "_transmit",
        "close_code",
        "close_reason",
        "connection_state",
        "scope",
        "sender",
    )

    def __init__(
        self,
        scope: Mapping[str, Any],
        receive: Receive,
        send: Send,
        *,
        transmit: Send | None = None,
    ) -> None:
        if scope.get("type") != "websocket":
            raise WebSocketStateError(
                f"WebSocket needs an ASGI 'websocket' scope, got {scope.get('type')!r}."
            )
        self.scope: dict[str, Any] = scope  # type: ignore[assignment]
        self._receive = receive
        self._send = send
        # What the member's sender hands broadcasts to: ``send`` itself unless the app
        # counts direct sends (metrics), which broadcasts must not pass through twice.
        self._transmit = send if transmit is None else transmit
        self.connection_state = _CONNECTING
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._connect_received = False
        self._receiving = False
        self._kicked: tuple[int, str] | None = None
        self.sender: OutgoingQueue | None = None
        """Broadcasts queued for this socket (set by the channels runtime when the socket
        joins a group): a direct send waits for them, so program order is delivery order."""
        self._ending: asyncio.Task[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cleanup: list[Callable[[], Any]] | None = None
        self._headers: Any = None
        self._query_params: Any = None
        self._state_obj: Any = None
        self._limits: MessageLimiter | None = None

    # ------------------------------------------------------------------ handshake

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[str | bytes, str | bytes]] | Mapping[str, str] | None = None,
    ) -> None:
        """Complete the handshake. Must be called once, before any receive or send."""
        if self.connection_state is not _CONNECTING:
            raise WebSocketStateError(
                f"accept() called on a {self.connection_state.value} WebSocket: accept() "
                "completes the handshake and may be called only once, first."
            )
        await self._await_connect()
        message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = _encode_headers(headers)
        await self._send_or_disconnect(message)
        self.connection_state = _CONNECTED

    async def deny(self, status_code: int = 403, body: bytes | str = b"") -> None:
        """Refuse the handshake with an HTTP status (401, 403, 429...).

        Uses the ASGI ``websocket.http.response`` extension when the server offers it;
        otherwise the server answers 403.
        """
        if self.connection_state is not _CONNECTING:
            raise WebSocketStateError(
                "deny() refuses the handshake, so it must be called before accept(); "
                f"this WebSocket is {self.connection_state.value}. Use close(code) after accept()."
            )
        await self._await_connect()
        if "websocket.http.response" in self.scope.get("extensions", {}):
            payload = body.encode() if isinstance(body, str) else body
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": status_code,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": payload})
        else:
            await self._send({"type": "websocket.close", "code": 1008, "reason": ""})
        self.connection_state = _CLOSED
        self.close_code = status_code

    async def _await_connect(self) -> None:
        if self._connect_received:
            return
        message = await self._receive()
        self._connect_received = True
        if message["type"] == _DISCONNECT:
            self._mark_disconnected(message)
            raise WebSocketDisconnect(self.close_code or 1006, self.close_reason)
        if message["type"] != "websocket.connect":
            raise WebSocketStateError(
                f"Expected the ASGI 'websocket.connect' message first, got {message['type']!r}."
            )

    # ------------------------------------------------------------------ receive

    # receive() and receive_text() await the server themselves rather than through a
    # shared helper coroutine: one coroutine frame less per message, and per idle
    # connection (it stays suspended there). See bench/findings.md.

    async def receive(self) -> Message:
        """The next ASGI ``websocket.receive`` message (with ``text`` or ``bytes``)."""
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_receive()
        self._receiving = True
        try:
            message: Message = await self._receive()
        except asyncio.CancelledError as cancelled:
            raise self._kicked_or(cancelled) from None
        finally:
            self._receiving = False
        if message["type"] != _RECEIVE:
            self._raise_not_a_frame(message)
        if self._limits is not None and self._limits.check(message):
            await self._limit_exceeded(self._limits)
        return message

    async def receive_text(self) -> str:
        """The next text frame. A binary frame raises WebSocketMessageTypeError."""
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_receive()
        self._receiving = True
        try:
            message: Message = await self._receive()
        except asyncio.CancelledError as cancelled:
            raise self._kicked_or(cancelled) from None
        finally:
            self._receiving = False
        if message["type"] != _RECEIVE:
            self._raise_not_a_frame(message)
        if self._limits is not None and self._limits.check(message):
            await self._limit_exceeded(self._limits)
        text = message.get("text")
        if text is None:
            raise WebSocketMessageTypeError(
                f"Expected a text frame but received a binary frame "
                f"({len(message.get('bytes') or b'')} bytes). Use receive_bytes() for binary "
                "frames, or receive() to accept both."
            )
        return text  # type: ignore[no-any-return]

    async def receive_bytes(self) -> bytes:
        """The next binary frame. A text frame raises WebSocketMessageTypeError."""
        message = await self.receive()
        data = message.get("bytes")
        if data is None:
            raise WebSocketMessageTypeError(
                "Expected a binary frame but received a text frame. Use receive_text() for "
                "text frames, or receive() to accept both."
            )
        return data  # type: ignore[no-any-return]

    async def receive_json(self, mode: str = "text") -> Any:
        """The next frame parsed as JSON (``mode="text"`` or ``"binary"`` frames).

        Invalid JSON raises :class:`~nexios.exceptions.InvalidJSONError` (a
        ``ValueError``); the connection stays usable.
        """
        if mode not in ("text", "binary"):
            raise ValueError(f'receive_json mode must be "text" or "binary", got {mode!r}')
        message = await self.receive()
        raw = message.get("text") if mode == "text" else message.get("bytes")
        if raw is None:
            expected, got = ("text", "binary") if mode == "text" else ("binary", "text")
            raise WebSocketMessageTypeError(
                f'receive_json(mode="{mode}") expected a {expected} frame but received a '
                f'{got} frame. Call receive_json(mode="{got}") to read {got} JSON frames.'
            )
        try:
            return encoding.loads(raw)
        except encoding.JSONDecodeError as error:
            raise InvalidJSONError(f"Invalid JSON: {error}") from None

    def _kicked_or(self, cancelled: asyncio.CancelledError) -> BaseException:
        """A kick arrives as a cancellation: turn it into the disconnect it stands for."""
        if self._kicked is None:
            return cancelled
        if self._task is not None:
            self._task.uncancel()
        return WebSocketDisconnect(*self._kicked)

    def _raise_not_a_frame(self, message: Message) -> None:
        if message["type"] == _DISCONNECT:
            self._mark_disconnected(message)
            raise WebSocketDisconnect(self.close_code or 1005, self.close_reason)
        raise WebSocketStateError(f"Unexpected ASGI message {message['type']!r}.")

    async def _limit_exceeded(self, limits: MessageLimiter) -> None:
        """Close with the broken limit's code, log it once, raise WebSocketDisconnect."""
        code, detail = limits.violation or (1008, "limit exceeded")
        client = self.scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else "unknown client"
        logger.warning(
            "WebSocket %s from %s: %s; closing with %d",
            self.scope.get("path"),
            where,
            detail,
            code,
            extra={
                "path": self.scope.get("path"),
                "client": where,
                "close_code": code,
                "reason": "size" if code == 1009 else "rate",
            },
        )
        reason = "message too big" if code == 1009 else "rate limit exceeded"
        self.end(code, reason)
        await self.wait_ended()
        raise WebSocketDisconnect(code, reason)

    def _raise_cannot_receive(self) -> None:
        if self.connection_state is _CONNECTING:
            raise WebSocketStateError(
                "Cannot receive before the handshake is complete: call `await ws.accept()` first."
            )
        if self.connection_state is _DISCONNECTED:
            raise WebSocketDisconnect(self.close_code or 1005, self.close_reason)
        raise WebSocketStateError(
            "Cannot receive: this WebSocket was closed by the application "
            f"(close code {self.close_code}). Return from the handler instead."
        )

    # ------------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message: ``websocket.send``, ``websocket.accept`` or ``websocket.close``.

        Accept and close go through :meth:`accept` and :meth:`close`, so the state
        machine sees them.
        """
        kind = message.get("type")
        if kind == "websocket.accept":
            await self.accept(message.get("subprotocol"), message.get("headers"))
            return
        if kind == "websocket.close":
            await self.close(message.get("code", 1000), message.get("reason"))
            return
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_send()
        await self._send_or_disconnect(message)

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_send()
        if data.__class__ is not str and not isinstance(data, str):
            raise TypeError(
                f"send_text() takes a str, got {type(data).__name__}; use send_bytes() for "
                "bytes or send_json() for other values."
            )
        sender = self.sender
        if sender is not None and sender.pending:
            await sender.drain()
        try:
            await self._send({"type": "websocket.send", "text": data})
        except OSError as error:  # uvicorn raises ClientDisconnected, an OSError
            raise self._disconnected(error) from None

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary frame."""
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_send()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"send_bytes() takes bytes, got {type(data).__name__}; use send_text() for str "
                "or send_json() for other values."
            )
        await self._send_or_disconnect({"type": "websocket.send", "bytes": bytes(data)})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON in a text frame (``mode="text"``) or binary frame.

        History entries and lists of them serialise as ``{"seq", "payload", "created"}``.
        """
        if mode not in ("text", "binary"):
            raise ValueError(f'send_json mode must be "text" or "binary", got {mode!r}')
        if self.connection_state is not _CONNECTED:
            self._raise_cannot_send()
        encoded = encoding.dumps(data)
        message = (
            {"type": "websocket.send", "text": encoded.decode()}
            if mode == "text"
            else {"type": "websocket.send", "bytes": encoded}
        )
        sender = self.sender
        if sender is not None and sender.pending:
            await sender.drain()
        try:
            await self._send(message)
        except OSError as error:  # uvicorn raises ClientDisconnected, an OSError
            raise self._disconnected(error) from None

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection (before accept: refuse the handshake with HTTP 403).

        Closing a socket that is already closed or disconnected does nothing.
        """
        if self.connection_state is _CLOSED or self.connection_state is _DISCONNECTED:
            return
        if self.connection_state is _CONNECTING:
            await self._await_connect()
        await self._send_or_disconnect(
            {"type": "websocket.close", "code": code, "reason": reason or ""}
        )
        self.connection_state = _CLOSED
        self.close_code = code
        self.close_reason = reason or ""

    async def _send_or_disconnect(self, message: Message) -> None:
        sender = self.sender
        if sender is not None and sender.pending:
            await sender.drain()
        try:
            await self._send(message)
        except OSError as error:  # uvicorn raises ClientDisconnected, an OSError
            raise self._disconnected(error) from None

    async def transmit(self, message: Message) -> None:
        """Hand an ASGI send message to the server as is, without waiting for queued
        broadcasts (the member's sender uses this; handlers use the ``send_*`` methods).
        """
        try:
            await self._transmit(message)
        except OSError as error:  # uvicorn raises ClientDisconnected, an OSError
            raise self._disconnected(error) from None

    def _disconnected(self, error: OSError) -> WebSocketDisconnect:
        self.connection_state = _DISCONNECTED
        self.close_code = self.close_code or 1006
        return WebSocketDisconnect(self.close_code, str(error) or "")

    def _raise_cannot_send(self) -> None:
        if self.connection_state is _CONNECTING:
            raise WebSocketStateError(
                "Cannot send before the handshake is complete: call `await ws.accept()` first."
            )
        if self.connection_state is _DISCONNECTED:
            raise WebSocketDisconnect(self.close_code or 1005, self.close_reason)
        raise WebSocketStateError(
            f"Cannot send: this WebSocket was already closed by the application (close code "
            f"{self.close_code}). Send everything before calling close()."
        )

    def _mark_disconnected(self, message: Message) -> None:
        self.connection_state = _DISCONNECTED
        self.close_code = message.get("code", 1005)
        self.close_reason = message.get("reason") or ""

    # ------------------------------------------------------------------ iteration

    async def iter_text(self) -> AsyncIterator[str]:
        """Yield text frames until the client disconnects.

        A binary frame ends the iteration: the connection is closed with **1003**
        (unsupported data) and one info line is logged. Use ``receive()`` to take both.
        """
        # receive_text() inlined: an idle `async for` connection holds one frame less.
        receive = self._receive
        try:
            while True:
                if self.connection_state is not _CONNECTED:
                    self._raise_cannot_receive()
                self._receiving = True
                try:
                    message: Message = await receive()
                except asyncio.CancelledError as cancelled:
                    raise self._kicked_or(cancelled) from None
                finally:
                    self._receiving = False
                if message["type"] != _RECEIVE:
                    self._raise_not_a_frame(message)
                if self._limits is not None and self._limits.check(message):
                    await self._limit_exceeded(self._limits)
                text = message.get("text")
                if text is None:
                    await self._close_unexpected("a binary frame", 1003, "expected text frames")
                    return
                yield text
        except WebSocketDisconnect:
            return

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Yield binary frames until the client disconnects; a text frame closes the
        connection with **1003** and ends the iteration."""
        try:
            while True:
                try:
                    data = await self.receive_bytes()
                except WebSocketMessageTypeError:
                    await self._close_unexpected("a text frame", 1003, "expected binary frames")
                    return
                yield data
        except WebSocketDisconnect:
            return

    async def iter_json(self, mode: str = "text") -> AsyncIterator[Any]:
        """Yield JSON values until the client disconnects.

        A frame that is not valid JSON ends the iteration: the connection is closed with
        **1007** (invalid frame payload data) and one info line is logged — the client
        broke the protocol; the handler is not an error. A frame of the other type
        (binary for ``mode="text"``) closes it with **1003**. (``receive_json`` instead raises
        ``InvalidJSONError`` and leaves the connection open, for handlers that answer
        bad input themselves.)
        """
        try:
            while True:
                try:
                    value = await self.receive_json(mode)
                except InvalidJSONError as error:
                    await self._close_unexpected(f"invalid JSON ({error})", 1007, "invalid JSON")
                    return
                except WebSocketMessageTypeError:
                    other = "binary" if mode == "text" else "text"
                    await self._close_unexpected(
                        f"a {other} frame", 1003, f"expected {mode} frames"
                    )
                    return
                yield value
        except WebSocketDisconnect:
            return

    async def _close_unexpected(self, what: str, code: int, reason: str) -> None:
        """The client broke the iteration's protocol: close with ``code``, one info line."""
        client = self.scope.get("client")
        logger.info(
            "WebSocket %s from %s sent %s; closing with %d",
            self.scope.get("path"),
            f"{client[0]}:{client[1]}" if client else "unknown client",
            what[:200],
            code,
        )
        with contextlib.suppress(WebSocketDisconnect):
            await self.close(code, reason)

    # ------------------------------------------------------------------ eviction

    def kick(self, code: int, reason: str = "") -> None:
        """End the connection from outside the handler (eviction, shutdown, limits).

        The handler's pending or next receive raises ``WebSocketDisconnect(code)``;
        the caller is responsible for sending the close frame.
        """
        if self.connection_state is _DISCONNECTED or self._kicked is not None:
            return
        self._kicked = (code, reason)
        self.connection_state = _DISCONNECTED
        self.close_code = code
        self.close_reason = reason
        if self._receiving and self._task is not None and not self._task.done():
            self._task.cancel()

    def end(self, code: int, reason: str = "") -> None:
        """End the connection from outside its handler: the one way the framework closes
        a socket it does not own the flow of (eviction, expiry, idle time, limits,
        shutdown).

        The handler's pending or next receive raises ``WebSocketDisconnect(code)``, and a
        close frame with ``code`` is sent in the background; a peer that does not take it
        within :data:`CLOSE_TIMEOUT` is left to the server. :meth:`wait_ended` waits for
        that frame. Does nothing unless the socket is connected.
        """
        if self.connection_state is not _CONNECTED:
            return
        self.kick(code, reason)
        self._ending = asyncio.get_running_loop().create_task(
            self._send_close_frame(code, reason), name="nexios-close"
        )

    async def _send_close_frame(self, code: int, reason: str) -> None:
        message = {"type": "websocket.close", "code": code, "reason": reason[:120]}
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._send(message)

    async def wait_ended(self) -> None:
        """Wait until the close frame of :meth:`end` was handed on (or its bound passed)."""
        ending = self._ending
        if ending is not None and ending is not asyncio.current_task():
            await asyncio.wait({ending})

    @property
    def closing(self) -> bool:
        """True while a close frame sent by :meth:`end` is on its way."""
        return self._ending is not None and not self._ending.done()

    @property
    def kicked(self) -> bool:
        """True once :meth:`kick` ended this connection."""
        return self._kicked is not None

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (sync, or returning an awaitable) when the handler ends."""
        if self._cleanup is None:
            self._cleanup = []
        self._cleanup.append(callback)

    # ------------------------------------------------------------------ request data

    @property
    def path_params(self) -> dict[str, Any]:
        """Converted path parameters of the matched route."""
        return self.scope.get("path_params", {})  # type: ignore[no-any-return]

    @property
    def url(self) -> Any:
        """The full request URL (``ws.url.path`` is the path)."""
        return URL.from_scope(self.scope)

    @property
    def headers(self) -> Any:
        """Request headers (case-insensitive)."""
        if self._headers is None:
            self._headers = Headers(raw=self.scope.get("headers", []))
        return self._headers

    @property
    def query_params(self) -> Any:
        """Query string parameters."""
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent with the handshake."""
        return parse_cookies(self.headers.get("cookie", ""))

    @property
    def client(self) -> tuple[str, int] | None:
        """``(host, port)`` of the peer, when the server reports it."""
        client = self.scope.get("client")
        return (client[0], client[1]) if client else None

    @property
    def user(self) -> Any:
        """What the handshake's auth hook returned (``scope["user"]``), or None."""
        return self.scope.get("user")

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered."""
        return list(self.scope.get("subprotocols", []))

    @property
    def state(self) -> Any:
        """Per-connection namespace for your own data (``ws.state.user = ...``)."""
        if self._state_obj is None:
            self._state_obj = SimpleNamespace(**self.scope.get("state", {}))
        return self._state_obj

    def __repr__(self) -> str:
        return f"<WebSocket {self.scope.get('path')!r} {self.connection_state.value}>"


def _encode_headers(
    headers: Iterable[tuple[str | bytes, str | bytes]] | Mapping[str, str],
) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (
            name.lower().encode("latin-1") if isinstance(name, str) else name.lower(),
            value.encode("latin-1") if isinstance(value, str) else value,
        )
        for name, value in items
    ]
