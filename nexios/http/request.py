"""The HTTP request handed to a route handler.

Everything is read lazily from the ASGI scope and cached: a handler that only looks at
``path_params`` costs one small object.

The body is bounded by ``max_body_size`` (1 MiB by default; set it per app with
``NexiosApp(max_body_size=...)`` or per route with ``@app.post(path,
max_body_size=...)``, ``None`` for no limit). A ``Content-Length`` over the limit is
refused before anything is read; a body that grows over it while it streams in is
refused as soon as it does — HTTP 413 in both cases, whichever way it is read:
``body()``, ``json()``, ``form()``, ``stream()`` or the ``receive`` channel itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from python_multipart.multipart import parse_options_header

from nexios.encoding import JSONDecodeError, loads
from nexios.exceptions import HTTPException
from nexios.http.datastructures import (
    URL,
    Address,
    FormData,
    Headers,
    QueryParams,
    Receive,
    Scope,
    State,
    parse_cookies,
)
from nexios.http.forms import FormLimits, parse_multipart

# parse_cookies lives in datastructures (WebSocket shares it); re-exported here too.
__all__ = ["DEFAULT_MAX_BODY_SIZE", "Request", "parse_cookies"]

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""Largest request body read by default, in bytes (1 MiB). Larger bodies get 413."""

_MISSING: Any = object()
_DEFAULT_FORM = FormLimits()


async def _no_receive() -> MutableMapping[str, Any]:
    raise RuntimeError("This Request was built without a receive channel; it has no body.")


class Request:
    """An HTTP request: ``method``, ``url``, params, headers, cookies and the body."""

    __slots__ = (
        "_body",
        "_cookies",
        "_form",
        "_headers",
        "_json",
        "_query_params",
        "_receive",
        "_received",
        "_replayed",
        "_streamed",
        "_url",
        "max_body_size",
        "scope",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive = _no_receive,
        *,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if scope.get("type") != "http":
            raise TypeError(f"Request needs an ASGI 'http' scope, got {scope.get('type')!r}.")
        self.scope = scope
        self.max_body_size = max_body_size
        self._receive = receive
        self._received = -1  # body bytes received so far; -1: Content-Length not checked yet
        self._streamed = False
        self._replayed = False
        self._body: bytes | None = None
        self._json: Any = _MISSING
        self._form: FormData | None = None
        self._headers: Headers | None = None
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._url: URL | None = None

    @property
    def method(self) -> str:
        """The HTTP method, upper-case."""
        method: str = self.scope["method"]
        return method

    @property
    def url(self) -> URL:
        """The URL the client asked for."""
        if self._url is None:
            self._url = URL.from_scope(self.scope)
        return self._url

    @property
    def path_params(self) -> dict[str, Any]:
        """Converted path parameters of the matched route."""
        params: dict[str, Any] = self.scope.get("path_params", {})
        return params

    @property
    def query_params(self) -> QueryParams:
        """Query-string parameters."""
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def headers(self) -> Headers:
        """Request headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(raw=self.scope.get("headers", ()))
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies from every ``Cookie`` header."""
        if self._cookies is None:
            self._cookies = parse_cookies("; ".join(self.headers.getlist("cookie")))
        return self._cookies

    @property
    def client(self) -> Address | None:
        """The peer's ``(host, port)``, when the server tells us."""
        client = self.scope.get("client")
        return Address(client[0], client[1]) if client else None

    @property
    def state(self) -> State:
        """Per-request attributes (shared with the scope, so middleware can set them).

        Starts as a copy of what the app's ``lifespan`` yielded (``request.state.db``).
        """
        return State(self.scope.setdefault("state", {}))

    @property
    def app(self) -> Any:
        """The application serving this request (``scope["app"]``)."""
        return self.scope.get("app")

    def url_for(self, name: str, /, **path_params: Any) -> URL:
        """The absolute URL of the route (or mount) called ``name``, with ``path_params``.

        Raises :class:`~nexios.exceptions.NoMatchFound` when no route has that name and
        those parameters.
        """
        # The router that matched, else (in app middleware, before routing) the app.
        router = self.scope.get("router") or self.scope.get("app")
        if router is None or not hasattr(router, "url_path_for"):
            raise RuntimeError("url_for() needs the request to come through a NexiosApp.")
        path = self.scope.get("root_path", "") + router.url_path_for(name, **path_params)
        base = self.url
        return URL(scheme=base.scheme, netloc=base.netloc, path=path)

    @property
    def receive(self) -> Receive:
        """The ASGI receive channel, with the body-size limit applied (HTTP 413).

        A body already read with ``body()`` (or ``json()``, ``form()``) comes first, so
        an ASGI app this channel is handed to (``call_next``) still gets the whole body.
        """
        return self._receive_for_app

    async def _receive_for_app(self) -> MutableMapping[str, Any]:
        if self._body is not None and not self._replayed:
            self._replayed = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        return await self._bounded_receive()

    async def _bounded_receive(self) -> MutableMapping[str, Any]:
        limit = self.max_body_size
        if limit is not None and self._received < 0:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large(limit)
            self._received = 0
        message = await self._receive()
        if limit is not None and message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > limit:
                raise self._too_large(limit)
        return message

    @staticmethod
    def _too_large(limit: int) -> HTTPException:
        return HTTPException(
            413,
            f"Request body is larger than the limit of {limit} bytes. The server sets it "
            "with NexiosApp(max_body_size=...) or per route with max_body_size=.",
        )

    async def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk as it arrives, without buffering it (bounded, 413).

        The body can be streamed once; after ``await request.body()`` this yields the
        cached body instead.
        """
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._streamed:
            raise RuntimeError(
                "The request body was already streamed; it can be read only once. Call "
                "`await request.body()` first to keep a copy."
            )
        self._streamed = True
        while True:
            message = await self._bounded_receive()
            if message["type"] == "http.disconnect":
                raise HTTPException(400, "The client disconnected before sending the whole body.")
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self) -> bytes:
        """The whole body, read once and cached. Over ``max_body_size`` → HTTP 413."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.stream()])
        return self._body

    async def json(self) -> Any:
        """The body parsed as JSON. Invalid JSON → HTTP 400 ``Invalid JSON body: ...``."""
        if self._json is _MISSING:
            body = await self.body()
            try:
                self._json = loads(body)
            except JSONDecodeError as exc:
                raise HTTPException(400, f"Invalid JSON body: {exc}") from None
        return self._json

    async def form(
        self,
        *,
        max_files: int = _DEFAULT_FORM.max_files,
        max_fields: int = _DEFAULT_FORM.max_fields,
        max_part_size: int = _DEFAULT_FORM.max_part_size,
        spool_max_size: int = _DEFAULT_FORM.spool_max_size,
    ) -> FormData:
        """The body parsed as a form (urlencoded or multipart), cached.

        Text fields are ``str``, files are :class:`UploadFile` (kept in memory up to
        ``spool_max_size`` bytes each, then on disk; closed after the response). Counts
        and text-field sizes are bounded; over a bound, or malformed, is HTTP 400. Any
        other content type gives an empty form.
        """
        if self._form is None:
            content_type, options = parse_options_header(self.headers.get("content-type"))
            if content_type == b"multipart/form-data":
                boundary = options.get(b"boundary")
                if not boundary:
                    raise HTTPException(400, "Invalid form body: multipart without a boundary.")
                limits = FormLimits(max_files, max_fields, max_part_size, spool_max_size)
                self._form = await parse_multipart(self.stream(), boundary, limits)
            elif content_type == b"application/x-www-form-urlencoded":
                self._form = FormData(_parse_urlencoded(await self.body(), max_fields))
            else:
                self._form = FormData()
        return self._form

    async def close(self) -> None:
        """Close the uploaded files of the form, if one was read (the router does this)."""
        if self._form is not None:
            await self._form.close()

    async def is_disconnected(self) -> bool:
        """Whether the client has gone away, without waiting (call it after reading the body)."""
        try:
            async with asyncio.timeout(0):
                message = await self._receive()
        except TimeoutError:
            return False
        return bool(message["type"] == "http.disconnect")

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"


def _parse_urlencoded(body: bytes, max_fields: int) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:
        raise HTTPException(
            400, f"Invalid form body: more than {max_fields} fields (max_fields)."
        ) from None
