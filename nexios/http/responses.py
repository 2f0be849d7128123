"""HTTP responses: ASGI callables built from a body, a status and headers.

``to_response`` turns what a handler returns into one of them: a ``Response`` as is,
``dict``/``list`` as JSON, ``str`` as plain text, ``bytes`` as an octet stream and
``None`` as ``204 No Content``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from datetime import datetime
from email.utils import format_datetime, formatdate
from http.cookies import SimpleCookie
from typing import Any, BinaryIO, Literal
from urllib.parse import quote

from nexios.encoding import dumps
from nexios.exceptions import HTTPException
from nexios.http.datastructures import MutableHeaders, Receive, Scope, Send

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "to_response",
]

_NO_BODY_STATUS = frozenset({204, 304})


class Response:
    """A complete response. ``await response(scope, receive, send)`` sends it.

    ``content`` may be ``bytes`` or ``str`` (encoded as UTF-8). ``media_type`` sets
    ``content-type`` unless ``headers`` already do; text types get ``charset=utf-8``.
    """

    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = b"",
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
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

    def _build_headers(self, headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        names = {name for name, _ in raw}
        if b"content-length" not in names and self._has_body_headers():
            raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        media_type = self.media_type
        if media_type is not None and b"content-type" not in names:
            if media_type.startswith("text/") and "charset=" not in media_type:
                media_type += f"; charset={self.charset}"
            raw.append((b"content-type", media_type.encode("latin-1")))
        return raw

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
        self, url: str, status_code: int = 307, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(b"", status_code, headers)
        self.headers["location"] = quote(str(url), safe=":/%#?=@[]!$&'()*+,;~")


class FileResponse(Response):
    """Stream a file from disk in chunks; a missing file is HTTP 404.

    The media type is guessed from ``filename`` or ``path``. With ``filename`` the
    file is offered as a download (``content-disposition: attachment``). HEAD
    requests get the headers only.
    """

    chunk_size = 64 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
        filename: str | None = None,
        *,
        stat_result: os.stat_result | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.filename = filename
        if media_type is None:
            media_type = (
                mimetypes.guess_type(filename or self.path)[0] or "application/octet-stream"
            )
        super().__init__(b"", status_code, headers, media_type)
        # The body is streamed: content-length comes from stat, not from ``self.body``.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        if filename is not None:
            quoted = quote(filename)
            disposition = (
                f'attachment; filename="{filename}"'
                if quoted == filename
                else f"attachment; filename*=utf-8''{quoted}"
            )
            self.headers.setdefault("content-disposition", disposition)
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
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            remaining = int(self.headers["content-length"])
            while remaining > 0:
                chunk = await loop.run_in_executor(None, file.read, min(self.chunk_size, remaining))
                if not chunk:  # the file shrank since stat: end the body here
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            file.close()


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
