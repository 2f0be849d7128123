"""HTTP responses: ASGI callables built from a body, a status and headers.

``to_response`` turns what a handler returns into one of them: a ``Response`` as is,
``dict``/``list`` as JSON, ``str`` as plain text, ``bytes`` as an octet stream and
``None`` as ``204 No Content``.

Every response takes ``background=`` (see :mod:`nexios.http.background`): work run
after the last byte is sent. ``StreamingResponse`` sends a body as an iterator yields
it and stops, closing the iterator, when the client disconnects; ``FileResponse``
answers ``Range`` requests with 206 (one range, or several as ``multipart/byteranges``).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import secrets
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from email.utils import format_datetime, formatdate
from http.cookies import SimpleCookie
from typing import Any, BinaryIO, Literal
from urllib.parse import quote

from nexios._utils import iterate_in_thread
from nexios.encoding import dumps
from nexios.exceptions import HTTPException
from nexios.http.datastructures import Headers, MutableHeaders, Receive, Scope, Send

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
    "to_response",
]

_NO_BODY_STATUS = frozenset({204, 304})

Background = Callable[[], Awaitable[Any]]
"""What ``background=`` takes: a ``BackgroundTask``/``BackgroundTasks`` or any
``async`` callable without arguments."""


class Response:
    """A complete response. ``await response(scope, receive, send)`` sends it.

    ``content`` may be ``bytes`` or ``str`` (encoded as UTF-8). ``media_type`` sets
    ``content-type`` unless ``headers`` already do; text types get ``charset=utf-8``.
    ``background`` runs after the response is sent.
    """

    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = b"",
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Background | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.body = self.render(content)
        self.raw_headers = self._build_headers(headers)

    def render(self, content: Any) -> bytes:
        """Turn ``content`` into the body bytes."""
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode(self.charset)
        if isinstance(content, bytearray | memoryview):
            return bytes(content)
        raise TypeError(
            f"{type(self).__name__} content must be bytes or str, got {type(content).__name__}; "
            "use JSONResponse for dicts and lists."
        )

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        names = {name for name, _ in raw}
        if b"content-length" not in names and self._has_body_headers() and self.sized:
            raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        media_type = self.media_type
        if media_type is not None and b"content-type" not in names:
            if media_type.startswith("text/") and "charset=" not in media_type:
                media_type += f"; charset={self.charset}"
            raw.append((b"content-type", media_type.encode("latin-1")))
        return raw

    sized = True
    """Whether ``content-length`` is ``len(body)`` (False for bodies sent in chunks)."""

    def _has_body_headers(self) -> bool:
        return self.status_code >= 200 and self.status_code not in _NO_BODY_STATUS

    @property
    def headers(self) -> MutableHeaders:
        """The response headers; changes go straight into the response."""
        return MutableHeaders.wrap(self.raw_headers)

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header. ``expires`` may be a datetime or seconds from now."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = max_age
        if expires is not None:
            morsel["expires"] = (
                format_datetime(expires, usegmt=True) if isinstance(expires, datetime) else expires
            )
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("lax", "strict", "none"):
                raise ValueError(f"samesite must be 'lax', 'strict' or 'none', got {samesite!r}.")
            morsel["samesite"] = samesite
        self.raw_headers.append((b"set-cookie", morsel.OutputString().encode("latin-1")))

    def delete_cookie(
        self,
        key: str,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Tell the client to drop cookie ``key`` (same ``path``/``domain`` as when set)."""
        self.set_cookie(
            key,
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        # A HEAD answer keeps the GET headers (content-length included) but no body.
        body = b"" if scope.get("method") == "HEAD" else self.body
        await send({"type": "http.response.body", "body": body})
        if self.background is not None:
            await self.background()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code})"


class JSONResponse(Response):
    """``content`` serialised with :func:`nexios.encoding.dumps` (orjson)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class HTMLResponse(Response):
    """An HTML page (``text/html; charset=utf-8``)."""

    media_type = "text/html"


class PlainTextResponse(Response):
    """Plain text (``text/plain; charset=utf-8``)."""

    media_type = "text/plain"


class RedirectResponse(Response):
    """Redirect to ``url`` (307 by default, so the method and body are kept)."""

    def __init__(
        self,
        url: str,
        status_code: int = 307,
        headers: Mapping[str, str] | None = None,
        background: Background | None = None,
    ) -> None:
        super().__init__(b"", status_code, headers, background=background)
        self.headers["location"] = quote(str(url), safe=":/%#?=@[]!$&'()*+,;~")


class StreamingResponse(Response):
    """A body sent as ``content`` yields it: an async iterable, or a sync one (iterated
    in the thread pool), of ``bytes`` or ``str`` chunks.

    The response ends when the iterator does. When the client disconnects first, the
    iterator is stopped where it waits (``CancelledError`` inside it; its ``finally``
    blocks run) and nothing more is sent. ``background`` runs in both cases.
    """

    sized = False
    idle_interval: float | None = None
    """Seconds without a chunk after which :meth:`on_idle` runs (``None``: never)."""

    def __init__(
        self,
        content: AsyncIterable[str | bytes] | Iterable[str | bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Background | None = None,
    ) -> None:
        if isinstance(content, str | bytes | bytearray | memoryview):
            raise TypeError(
                "StreamingResponse takes an iterator of chunks, got a whole body; use "
                "Response (or PlainTextResponse, HTMLResponse) for content known up front."
            )
        if isinstance(content, AsyncIterable):
            self.body_iterator: AsyncIterable[str | bytes] = content
        elif isinstance(content, Iterable):
            self.body_iterator = iterate_in_thread(content)
        else:
            raise TypeError(
                "StreamingResponse content must be an async iterable (an async generator) or "
                f"an iterable of bytes/str chunks, got {type(content).__name__}."
            )
        super().__init__(b"", status_code, headers, media_type, background)
        self._send_lock: asyncio.Lock | None = None
        self._last_write = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") == "HEAD":
            await _close_iterator(self.body_iterator)
            await send({"type": "http.response.body", "body": b""})
        elif await self._stream_until_disconnect(receive, send):
            await send({"type": "http.response.body", "body": b""})
        if self.background is not None:
            await self.background()

    async def _stream_until_disconnect(self, receive: Receive, send: Send) -> bool:
        """Send the chunks while a second task watches for ``http.disconnect``.

        True when the iterator ended; False when the client went away first.
        """
        task = asyncio.current_task()
        assert task is not None
        left = asyncio.Event()
        if self.idle_interval is not None:
            self._send_lock = asyncio.Lock()  # chunks and on_idle() writes take turns
        watcher = asyncio.get_running_loop().create_task(
            self._watch(receive, send, task, left), name="nexios-stream-watch"
        )
        try:
            await self._send_chunks(send)
        except asyncio.CancelledError:
            if left.is_set() and task.uncancel() == 0:
                return False  # our own cancellation, from _watch: the client left
            raise
        except OSError:  # ASGI 2.4 servers raise from send() once the client is gone
            return False
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await _close_iterator(self.body_iterator)
        return not left.is_set()

    async def _send_chunks(self, send: Send) -> None:
        charset = self.charset
        loop = asyncio.get_running_loop()
        self._last_write = loop.time()
        async for chunk in self.body_iterator:
            if isinstance(chunk, str):
                chunk = chunk.encode(charset)
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            if self._send_lock is None:
                await send(message)
            else:
                async with self._send_lock:
                    await send(message)
            self._last_write = loop.time()

    async def _watch(
        self, receive: Receive, send: Send, streamer: asyncio.Task[Any], left: asyncio.Event
    ) -> None:
        """Wait for the client to leave (then stop ``streamer``); call on_idle when due."""
        interval = self.idle_interval
        loop = asyncio.get_running_loop()
        try:
            while True:
                if interval is None:
                    message = await receive()
                else:
                    due = self._last_write + interval
                    try:
                        async with asyncio.timeout_at(due):
                            message = await receive()
                    except TimeoutError:
                        if loop.time() >= self._last_write + interval:
                            async with self._send_lock:  # type: ignore[union-attr]
                                await self.on_idle(send)
                            self._last_write = loop.time()
                        continue
                if message["type"] == "http.disconnect":
                    break
        except OSError:
            pass  # the client is gone: a ping could not be written
        except Exception:
            return  # receive() itself failed: leave the stream alone
        left.set()
        streamer.cancel()

    async def on_idle(self, send: Send) -> None:
        """Called every ``idle_interval`` seconds without a chunk (e.g. a keep-alive)."""


async def _close_iterator(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class FileResponse(Response):
    """Stream a file from disk in chunks; a missing file is HTTP 404.

    The media type is guessed from ``filename`` or ``path``. With ``filename`` the
    file is offered as a download (``content-disposition: attachment``). HEAD
    requests get the headers only. A GET with a ``Range: bytes=...`` header (and a
    matching ``If-Range``, if any) gets ``206 Partial Content``; several ranges come as
    ``multipart/byteranges``; ranges wholly past the end get ``416``.
    """

    chunk_size = 64 * 1024
    sized = False
    max_ranges = 16
    """More ranges than this in one request and the whole file is sent instead."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        filename: str | None = None,
        *,
        stat_result: os.stat_result | None = None,
        background: Background | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.filename = filename
        if media_type is None:
            media_type = (
                mimetypes.guess_type(filename or self.path)[0] or "application/octet-stream"
            )
        super().__init__(b"", status_code, headers, media_type, background)
        if filename is not None:
            quoted = quote(filename)
            disposition = (
                f'attachment; filename="{filename}"'
                if quoted == filename
                else f"attachment; filename*=utf-8''{quoted}"
            )
            self.headers.setdefault("content-disposition", disposition)
        self.headers.setdefault("accept-ranges", "bytes")
        self.stat_result = stat_result
        if stat_result is not None:
            self._set_stat_headers(stat_result)

    def _set_stat_headers(self, stat: os.stat_result) -> None:
        headers = self.headers
        headers.setdefault("content-length", str(stat.st_size))
        headers.setdefault("last-modified", formatdate(stat.st_mtime, usegmt=True))
        headers.setdefault("etag", f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"')

    def _open(self) -> tuple[BinaryIO, os.stat_result]:
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - closed by __call__
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise HTTPException(404) from None
        try:
            stat = os.fstat(file.fileno())
        except BaseException:
            file.close()
            raise
        return file, stat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        # Open (and stat) before sending anything, so a missing file can still be a 404.
        file, stat = await loop.run_in_executor(None, self._open)
        try:
            if self.stat_result is None:
                self._set_stat_headers(stat)
            size = int(self.headers["content-length"])
            ranges = self._requested_ranges(scope, size)
            if ranges is None:
                await self._send_whole(scope, send, file, size)
            elif not ranges:
                await self._send_unsatisfiable(send, size)
            else:
                await self._send_ranges(scope, send, file, size, ranges)
        finally:
            file.close()
        if self.background is not None:
            await self.background()

    def _requested_ranges(self, scope: Scope, size: int) -> list[tuple[int, int]] | None:
        """The ranges to send (``[]``: unsatisfiable), or ``None`` for the whole file."""
        if self.status_code != 200 or scope.get("method") not in ("GET", "HEAD"):
            return None
        headers = Headers(raw=scope.get("headers", ()))
        header = headers.get("range")
        if not header:
            return None
        if_range = headers.get("if-range")
        if if_range is not None and if_range not in (
            self.headers.get("etag"),
            self.headers.get("last-modified"),
        ):
            return None  # the client's copy is stale: it needs the whole new file
        ranges = parse_range(header, size)
        if ranges is not None and len(ranges) > self.max_ranges:
            return None
        return ranges

    async def _send_whole(self, scope: Scope, send: Send, file: BinaryIO, size: int) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") != "HEAD":
            await self._send_file_part(send, file, 0, size)
        await send({"type": "http.response.body", "body": b""})

    async def _send_unsatisfiable(self, send: Send, size: int) -> None:
        headers = {"content-range": f"bytes */{size}", "content-type": "text/plain; charset=utf-8"}
        body = b"Requested range not satisfiable"
        headers["content-length"] = str(len(body))
        raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 416, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _send_ranges(
        self,
        scope: Scope,
        send: Send,
        file: BinaryIO,
        size: int,
        ranges: list[tuple[int, int]],
    ) -> None:
        headers = MutableHeaders.wrap(list(self.raw_headers))
        if len(ranges) == 1:
            [(start, end)] = ranges
            headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
            headers["content-length"] = str(end - start)
            parts = [(b"", start, end)]
            closing = b""
        else:
            boundary = secrets.token_hex(16)
            content_type = headers.get("content-type", "application/octet-stream")
            parts = [
                (
                    f"--{boundary}\r\ncontent-type: {content_type}\r\n"
                    f"content-range: bytes {start}-{end - 1}/{size}\r\n\r\n".encode("latin-1"),
                    start,
                    end,
                )
                for start, end in ranges
            ]
            closing = f"--{boundary}--\r\n".encode()
            length = sum(len(head) + end - start + 2 for head, start, end in parts) + len(closing)
            headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
            headers["content-length"] = str(length)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if scope.get("method") != "HEAD":
            multipart = len(parts) > 1
            for head, start, end in parts:
                if head:
                    await send({"type": "http.response.body", "body": head, "more_body": True})
                await self._send_file_part(send, file, start, end)
                if multipart:
                    await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})
        await send({"type": "http.response.body", "body": closing})

    async def _send_file_part(self, send: Send, file: BinaryIO, start: int, end: int) -> None:
        loop = asyncio.get_running_loop()
        if start:
            await loop.run_in_executor(None, file.seek, start)
        remaining = end - start
        while remaining > 0:
            chunk = await loop.run_in_executor(None, file.read, min(self.chunk_size, remaining))
            if not chunk:  # the file shrank since stat: end the body here
                return
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Parse a ``Range`` header for a ``size``-byte file (RFC 9110, 14.1.2).

    Returns ``(start, end)`` pairs (``end`` exclusive), sorted and merged where they
    overlap or touch; ``[]`` when no range overlaps the file (answer 416); ``None``
    when the header is not a valid ``bytes=`` range set (ignore it: send the whole file).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    wanted: list[tuple[int, int]] = []
    for item in spec.split(","):
        first, dash, last = item.strip().partition("-")
        if not dash:
            return None
        first, last = first.strip(), last.strip()
        if not first:  # "-N": the last N bytes
            if not last.isdigit():
                return None
            if int(last) > 0 and size > 0:
                wanted.append((max(0, size - int(last)), size))
            continue
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        if last and int(last) < start:
            return None
        if start < size:
            wanted.append((start, min(int(last) + 1, size) if last else size))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(wanted):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def to_response(value: Any, *, source: str = "HTTP handler") -> Response:
    """Turn a handler's return value into a :class:`Response`.

    ``Response`` → itself; ``dict``/``list`` → JSON; ``str`` → plain text;
    ``bytes`` → ``application/octet-stream``; ``None`` → 204 No Content.
    Anything else raises ``TypeError`` naming ``source`` and the type it returned.
    """
    if isinstance(value, Response):
        return value
    if isinstance(value, dict | list):
        return JSONResponse(value)
    if isinstance(value, str):
        return PlainTextResponse(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return Response(value, media_type="application/octet-stream")
    if value is None:
        return Response(b"", 204)
    raise TypeError(
        f"{source} returned {type(value).__name__}, which nexios cannot send. Return a dict "
        "or list (JSON), a str (text), bytes, None (204 No Content) or a Response."
    )
