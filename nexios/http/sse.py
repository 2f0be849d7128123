"""Server-Sent Events: a one-way stream of events a browser reads with ``EventSource``.

>>> @app.get("/clock")
... async def clock(request: Request) -> EventSourceResponse:
...     async def ticks() -> AsyncIterator[ServerSentEvent]:
...         n = int(last_event_id(request) or 0)
...         while True:
...             n += 1
...             yield ServerSentEvent({"tick": n}, id=str(n))
...             await asyncio.sleep(1)
...     return EventSourceResponse(ticks())

What the stream does for you:

- **Keep-alive**: a comment line (``: ping``) after ``ping_interval`` seconds without
  an event, so proxies and load balancers do not close an idle stream.
- **Disconnect detection**: when the client goes away the iterator is cancelled where
  it waits (its ``finally`` blocks run) and nothing more is sent.
- **Resuming**: a reconnecting ``EventSource`` sends the ``id`` of the last event it
  saw as the ``Last-Event-ID`` header; :func:`last_event_id` reads it.
- Proxy buffering is switched off (``X-Accel-Buffering: no``) and the stream is not
  cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Mapping
from typing import Any

from nexios.encoding import dumps
from nexios.http.datastructures import Send
from nexios.http.request import Request
from nexios.http.responses import Background, StreamingResponse

__all__ = [
    "DEFAULT_PING_INTERVAL",
    "EventSourceResponse",
    "ServerSentEvent",
    "last_event_id",
    "stream_headers",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
DEFAULT_PING_INTERVAL = 15.0
"""Seconds without an event after which a keep-alive comment is sent."""


def stream_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """An event stream's headers: not cached, not buffered by proxies, plus ``headers``."""
    merged = {"cache-control": "no-store", "x-accel-buffering": "no"}
    merged.update({name.lower(): value for name, value in (headers or {}).items()})
    return merged


class ServerSentEvent:
    """One event: ``data`` plus the optional ``event`` (type), ``id`` and ``retry`` fields.

    ``data`` that is ``str`` is sent as is (one ``data:`` line per line of text),
    ``bytes`` as UTF-8 text, anything else as JSON. ``id`` is what the browser sends
    back as ``Last-Event-ID`` after a reconnect; ``retry`` (milliseconds) tells it how
    long to wait before reconnecting. An event with only ``comment`` is a comment line,
    ignored by ``EventSource``.
    """

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        self.data = data
        self.event = _single_line("event", event)
        self.id = _single_line("id", None if id is None else str(id))
        if self.id is not None and "\x00" in self.id:
            raise ValueError("A Server-Sent Event id cannot contain NUL characters.")
        if retry is not None and (not isinstance(retry, int) or retry < 0):
            raise ValueError(f"retry is a number of milliseconds (int >= 0), got {retry!r}.")
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        """The event in the wire format, ending with the blank line that dispatches it."""
        lines: list[str] = []
        if self.comment is not None:
            lines.extend(f": {line}" for line in _LINE_BREAK.split(self.comment))
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        if self.data is not None:
            lines.extend(f"data: {line}" for line in _LINE_BREAK.split(_text(self.data)))
        lines.append("\n")
        return "\n".join(lines).encode()

    def __repr__(self) -> str:
        fields = ("data", "event", "id", "retry", "comment")
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in fields if getattr(self, name) is not None
        )
        return f"ServerSentEvent({shown})"


def _single_line(field: str, value: str | None) -> str | None:
    if value is not None and _LINE_BREAK.search(value):
        raise ValueError(f"A Server-Sent Event {field} must be one line, got {value!r}.")
    return value


def _text(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode()
    return dumps(data).decode()


def last_event_id(request: Request) -> str | None:
    """The ``id`` of the last event a reconnecting ``EventSource`` received, if any.

    Browsers send it as the ``Last-Event-ID`` header; some polyfills, which cannot set
    headers, as a ``lastEventId`` query parameter, which is read when the header is absent.
    """
    value = request.headers.get("last-event-id")
    if value is None:
        value = request.query_params.get("lastEventId")
    return value or None


class EventSourceResponse(StreamingResponse):
    """Stream ``content`` as Server-Sent Events (``text/event-stream``).

    ``content`` is an async (or sync) iterable of :class:`ServerSentEvent`; any other
    item is the ``data`` of an event (``str`` as is, other values as JSON). A comment
    (``: ping``) is sent after ``ping_interval`` seconds without an event (``None``:
    never); ``retry`` (milliseconds) is sent first, to set the browser's reconnection
    delay.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[Any] | Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        retry: int | None = None,
        background: Background | None = None,
    ) -> None:
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError(f"ping_interval must be > 0 seconds or None, got {ping_interval!r}.")
        super().__init__(content, status_code, stream_headers(headers), background=background)
        self.idle_interval = ping_interval
        self.retry = retry
        self.body_iterator = self._encode(self.body_iterator)

    async def _encode(self, items: AsyncIterable[Any]) -> AsyncIterable[bytes]:
        if self.retry is not None:
            yield ServerSentEvent(retry=self.retry).encode()
        async for item in items:
            event = item if isinstance(item, ServerSentEvent) else ServerSentEvent(item)
            yield event.encode()

    async def on_idle(self, send: Send) -> None:
        """Send the keep-alive comment."""
        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
