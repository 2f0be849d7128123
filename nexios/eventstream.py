"""Server-Sent Events as a group member's connection: :class:`EventStream`.

A browser's ``EventSource`` keeps one HTTP response open and reads events from it. An
:class:`EventStream` is that response, and also what a :class:`~nexios.runtime.Channel`
wraps when the member is such a page rather than a WebSocket (:mod:`nexios.sse_group`
serves a group this way in one line). The channels runtime treats both alike
(:class:`~nexios.connection.MemberConnection`): the member's bounded sender writes its
events, the runtime ends it with :meth:`EventStream.end` (evicted, expired, shutdown),
and when the response ends — the browser left, or the app ended it — the member leaves
its groups and presence.

What the page receives, framed once per message for all its SSE members
(:class:`EventStreamFramer`)::

    id: 42:9f3c2a1b0d4e5f60             a saved message: "<seq>:<epoch>"
    data: {"text":"hi"}                 JSON as is; text line by line; bytes as base64

    event: resync                       history cannot fill what the page missed, or
    id: 0:5e1d0c9b8a7f6e5d              its numbering was lost (a new epoch): reload
    data: {"type":"nexios.resync",...}  the state; the stream goes on from this id

Unsaved messages carry no ``id``: they leave the page's resume position alone (and are
not recovered). The browser sends the last ``id`` back as ``Last-Event-ID`` when it
reconnects; :func:`parse_event_id` reads it. ``parseInt(event.lastEventId)`` is the seq.

Order of writes: nothing is written before the response starts. It then sends the
*prelude* (``retry``, then what :meth:`EventStream.write_first` was given), and only
then the events the sender queued meanwhile — so what the runtime replays during a join
comes after the prelude. Keep-alive comments (``: ping``) go through the sender too,
and only when it is idle: they never overtake an event and obey the same bounds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from nexios._utils import maybe_await
from nexios.connection import CLOSE_TIMEOUT, OutgoingQueue, WebSocketState
from nexios.encoding import dumps, loads
from nexios.exceptions import ConfigurationError, WebSocketStateError
from nexios.framing import Frame, Framer, FrameSet
from nexios.http.datastructures import Receive, Scope, Send, State
from nexios.http.request import Request
from nexios.http.responses import Response
from nexios.http.sse import DEFAULT_PING_INTERVAL, stream_headers

__all__ = [
    "EVENT_FRAMER",
    "OPEN_BOUND",
    "EventFrame",
    "EventStream",
    "EventStreamFramer",
    "EventStreamResponse",
    "check_stream_options",
    "encode_event",
    "event_id",
    "parse_event_id",
]

logger = logging.getLogger("nexios.channels")

OPEN_BOUND = 10.0
"""Seconds a stream may wait for its response to be served; then it ends (and its
member leaves its groups). Only a middleware that drops the response makes it wait."""

_EVENT_ID = re.compile(r"([0-9]{1,20}):([0-9A-Za-z_-]{0,64})")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED
_CLOSED = WebSocketState.CLOSED
_DISCONNECTED = WebSocketState.DISCONNECTED


def check_stream_options(ping_interval: float | None, retry: int | None) -> None:
    """A ConfigurationError unless ``ping_interval`` is seconds > 0 (or None) and
    ``retry`` milliseconds >= 0 (or None)."""
    if ping_interval is not None and (
        isinstance(ping_interval, bool)
        or not isinstance(ping_interval, int | float)
        or ping_interval <= 0
    ):
        raise ConfigurationError(
            f"ping_interval must be > 0 seconds or None, got {ping_interval!r}."
        )
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
        raise ConfigurationError(f"retry is milliseconds (an int >= 0) or None, got {retry!r}.")


def event_id(seq: int, epoch: str) -> str:
    """The ``id`` of the event that leaves a page at ``seq`` of ``epoch``."""
    return f"{seq}:{epoch}"


def parse_event_id(value: str) -> tuple[int, str | None] | None:
    """``(seq, epoch)`` from an :func:`event_id` (epoch None when empty); None when
    ``value`` is not one."""
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        return None
    return int(match[1]), match[2] or None


def encode_event(frames: FrameSet) -> bytes:
    """One message as an event, in the wire format (see the module docstring)."""
    if frames.notice is not None:
        notice = loads(frames.data)
        position = event_id(notice.get("last_seq", 0), notice.get("epoch", ""))
        head = b"event: " + frames.notice.encode() + b"\nid: " + position.encode() + b"\n"
    elif frames.seq:
        head = b"id: " + event_id(frames.seq, frames.epoch).encode() + b"\n"
    else:
        head = b""
    data = frames.data
    if frames.kind == "bytes":
        return head + b"data: " + base64.b64encode(data) + b"\n\n"
    if b"\n" not in data and b"\r" not in data:
        return head + b"data: " + data + b"\n\n"
    return head + b"".join(b"data: " + line + b"\n" for line in _LINE_BREAK.split(data)) + b"\n"


class EventFrame(Frame):
    """An event ready for an event stream: its ASGI message is an ``http.response.body``
    chunk, shared by every stream it is sent on."""

    __slots__ = ("message",)

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload, is_text=True)
        self.message: dict[str, Any] = {
            "type": "http.response.body",
            "body": payload,
            "more_body": True,
        }

    def asgi(self) -> dict[str, Any]:
        return self.message

    def wire(self) -> bytes:
        raise TypeError("An event-stream frame is written by its ASGI message, not as a frame.")


class EventStreamFramer(Framer):
    """Frames group messages as Server-Sent Events (see the module docstring)."""

    key = "sse"

    def __call__(self, frames: FrameSet) -> Frame:
        return EventFrame(encode_event(frames))


EVENT_FRAMER = EventStreamFramer()
"""The framer of every SSE member: one event per message for all of them."""

_PING = EventFrame(b": ping\n\n")


class EventStream:
    """An open Server-Sent Events stream to one browser: a group member's connection.

    Made from the request it answers, in an ``async`` handler; ``Channel(stream,
    framer=EVENT_FRAMER)`` makes it a member, and the handler returns :attr:`response`.
    Offers the request's data as a WebSocket does (``headers``, ``cookies``,
    ``query_params``, ``path_params``, ``user``...), so auth hooks and group policies
    written for WebSockets read it unchanged. ``ping_interval``: seconds without an
    event before a keep-alive comment (``None``: never); ``retry``: the browser's
    reconnection delay in milliseconds, sent first; ``headers``: more response headers.

    >>> stream = EventStream(request)
    >>> await ChannelBox.add_channel_to_group(Channel(stream, framer=EVENT_FRAMER), "news")
    >>> return stream.response
    """

    def __init__(
        self,
        request: Request,
        *,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        retry: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        check_stream_options(ping_interval, retry)
        self.request = request
        self.response = EventStreamResponse(self, headers)
        """What the handler returns: serving it runs the stream."""
        self.sender: OutgoingQueue | None = None
        """The member's queue (set by the channels runtime when it joins a group)."""
        self.connection_state = _CONNECTING
        self.close_code: int | None = None
        self.close_reason = ""
        self.ping_interval = ping_interval
        self._prelude: list[bytes] = [] if retry is None else [f"retry: {retry}\n\n".encode()]
        self._send: Send | None = None
        self._lock = asyncio.Lock()
        self._opened = asyncio.Event()
        self._finished = asyncio.Event()
        self._ended: asyncio.Future[None] | None = None
        self._serving = False
        self._callbacks: list[Callable[[], Any]] | None = []
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._last_write = loop.time()
        self._unserved = loop.call_later(OPEN_BOUND, self._not_served)
        self._closing: asyncio.Task[None] | None = None
        """The discard of a stream nobody served (kept until it is done)."""

    # ------------------------------------------------------------------ request data

    @property
    def scope(self) -> Scope:
        """The request's ASGI scope."""
        return self.request.scope

    @property
    def headers(self) -> Any:
        """Request headers (case-insensitive)."""
        return self.request.headers

    @property
    def query_params(self) -> Any:
        return self.request.query_params

    @property
    def path_params(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def cookies(self) -> dict[str, str]:
        return self.request.cookies

    @property
    def url(self) -> Any:
        return self.request.url

    @property
    def client(self) -> Any:
        return self.request.client

    @property
    def state(self) -> State:
        return self.request.state

    @property
    def user(self) -> Any:
        """What the auth hook returned (``scope["user"]``), or None."""
        return self.scope.get("user")

    @property
    def subprotocols(self) -> list[str]:
        """Always empty: an ``EventSource`` offers no WebSocket subprotocol (a hook
        looking for a token there finds none)."""
        return []

    # ------------------------------------------------------------------ the response

    def write_first(self, event: bytes) -> None:
        """Send ``event`` (wire format) when the response starts, before anything queued."""
        if self._serving:
            raise WebSocketStateError("write_first() after the response started.")
        self._prelude.append(event)

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Run the stream (:attr:`response` does): the prelude, then until it ends."""
        self._serving = True
        self._unserved.cancel()
        self._send = send
        self._ended = asyncio.get_running_loop().create_future()
        try:
            async with self._lock:
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                if self._prelude:
                    prelude = b"".join(self._prelude)
                    await send({"type": "http.response.body", "body": prelude, "more_body": True})
                if self.connection_state is _CONNECTING:
                    self.connection_state = _CONNECTED
            self._opened.set()
            if self.connection_state is _CONNECTED:
                await self._watch(receive, self._ended)
        except OSError:  # ASGI 2.4 servers raise once the client has gone
            self._left()
        finally:
            if self.connection_state is not _CLOSED:
                self._left()  # gone, or this task was cancelled (server shutdown)
            self._opened.set()
            await self._closed()
        if self.close_code is not None:
            await self._finish(send)
        self._finished.set()

    async def _watch(self, receive: Receive, ended: asyncio.Future[None]) -> None:
        """Until the client leaves or :meth:`end`; a keep-alive after ``ping_interval``
        seconds without a write."""
        listener = asyncio.get_running_loop().create_task(_until_disconnect(receive))
        interval, clock = self.ping_interval, self._clock
        try:
            while True:
                due = None if interval is None else self._last_write + interval - clock()
                done, _ = await asyncio.wait(
                    {listener, ended},
                    timeout=None if due is None else max(due, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if listener in done:
                    self._left()
                    return
                if done:
                    return
                if interval is not None and clock() >= self._last_write + interval:
                    self._keep_alive()
        finally:
            listener.cancel()

    def _keep_alive(self) -> None:
        # Through the sender, and only when it is idle: a ping never overtakes an event,
        # and a page that does not read cannot make pings pile up.
        self._last_write = self._clock()
        sender = self.sender
        if sender is not None and not sender.pending:
            sender.put(_PING)

    def _left(self) -> None:
        if self.connection_state is not _CLOSED:
            self.connection_state = _DISCONNECTED

    async def _finish(self, send: Send) -> None:
        """End the body; bounded, as a client that stopped reading may never take it."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT), self._lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _closed(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                await maybe_await(callback())
            except Exception:
                logger.exception("Event stream close callback %r failed", callback)

    def _not_served(self) -> None:
        if self._serving:
            return
        logger.warning(
            "Event stream for %s was not served within %gs (did a middleware replace the "
            "response?); its member leaves its groups",
            self.scope.get("path"),
            OPEN_BOUND,
        )
        self._closing = asyncio.get_running_loop().create_task(self.discard())

    async def discard(self) -> None:
        """Give up a stream that will not be served (the handler refused the page after
        its channel was made): it ends, and its member leaves its groups now."""
        self._unserved.cancel()
        self.end(1011, "not served")
        self._opened.set()  # a sender waiting to write learns that it never will
        await self._closed()

    # ------------------------------------------------------------------ as a member

    async def transmit(self, message: dict[str, Any]) -> None:
        """Write an event's ASGI message (the member's sender does; waits for the
        response to start)."""
        if not self._opened.is_set():
            await self._opened.wait()
        if self.connection_state is not _CONNECTED:
            raise OSError("the event stream has ended")
        send = self._send
        assert send is not None
        async with self._lock:
            await send(message)
        self._last_write = self._clock()

    def end(self, code: int, reason: str = "") -> None:
        """End the stream from outside (eviction, expiry, shutdown): the response
        finishes, and the browser's ``EventSource`` reconnects after its retry delay."""
        if self.connection_state is not _CONNECTING and self.connection_state is not _CONNECTED:
            return
        self.connection_state = _CLOSED
        self.close_code = code
        self.close_reason = reason
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(None)

    async def wait_ended(self) -> None:
        """Wait until the response has finished (when it is being served)."""
        if self._serving:
            await self._finished.wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """End the stream and wait until the response has finished."""
        self.end(code, reason or "")
        await self.wait_ended()

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (sync, or returning an awaitable) when the stream ends."""
        if self._callbacks is None:
            raise WebSocketStateError("on_close() on an event stream that has already ended.")
        self._callbacks.append(callback)

    # -------------------------------------------------------- Channel.send / receive

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Queue ``data`` (as JSON) as one event, after what is already queued."""
        self._push(FrameSet("json", dumps(data)))

    async def send_text(self, data: str) -> None:
        """Queue ``data`` as one event (a ``data:`` line per line)."""
        self._push(FrameSet("text", data.encode()))

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` as one event, base64-encoded."""
        self._push(FrameSet("bytes", bytes(data)))

    def _push(self, frames: FrameSet) -> None:
        sender = self.sender
        if sender is None:
            raise WebSocketStateError(
                "An event stream sends through its member's queue: add its Channel to a "
                "group first (ChannelBox.add_channel_to_group)."
            )
        if self.connection_state is _CLOSED or self.connection_state is _DISCONNECTED:
            raise WebSocketStateError("Cannot send: the event stream has ended.")
        sender.put(EVENT_FRAMER(frames))

    async def receive_json(self, mode: str = "text") -> Any:
        raise self._one_way()

    async def receive_text(self) -> str:
        raise self._one_way()

    async def receive_bytes(self) -> bytes:
        raise self._one_way()

    @staticmethod
    def _one_way() -> ConfigurationError:
        return ConfigurationError(
            "An event stream only sends: a browser's EventSource cannot send on it. Take "
            "what the page sends with an HTTP route (fetch POST)."
        )

    def __repr__(self) -> str:
        return f"<EventStream {self.scope.get('path')!r} {self.connection_state.value}>"


class EventStreamResponse(Response):
    """The HTTP response of an :class:`EventStream` (``text/event-stream``)."""

    media_type = "text/event-stream"
    sized = False

    def __init__(self, stream: EventStream, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(b"", 200, stream_headers(headers))
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream.serve(scope, receive, send, self.raw_headers)


async def _until_disconnect(receive: Receive) -> None:
    with contextlib.suppress(Exception):  # a receive that fails: the client is gone too
        while (await receive())["type"] != "http.disconnect":
            pass
