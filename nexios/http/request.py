"""The HTTP request handed to a route handler.

Everything is read lazily from the ASGI scope and cached: a handler that only looks at
``path_params`` costs one small object. The body is read once, bounded by
``max_body_size`` (1 MiB by default); a larger body is refused with HTTP 413 before it
is buffered. ``json()`` and ``form()`` parse that cached body, so they share the bound.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
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
    UploadFile,
    parse_cookies,
)

# parse_cookies lives in datastructures (WebSocket shares it); re-exported here too.
__all__ = ["DEFAULT_MAX_BODY_SIZE", "Request", "parse_cookies"]

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""Largest request body read by default, in bytes (1 MiB). Larger bodies get 413."""

_MISSING: Any = object()


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
        """Per-request attributes (shared with the scope, so middleware can set them)."""
        return State(self.scope.setdefault("state", {}))

    @property
    def receive(self) -> Receive:
        """The ASGI receive channel (for streaming the body yourself)."""
        return self._receive

    async def body(self) -> bytes:
        """The whole body, read once and cached. Over ``max_body_size`` → HTTP 413."""
        if self._body is not None:
            return self._body
        limit = self.max_body_size
        if limit is not None:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise HTTPException(400, "The client disconnected before sending the whole body.")
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise self._too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    @staticmethod
    def _too_large(limit: int) -> HTTPException:
        return HTTPException(413, f"Request body is larger than the limit of {limit} bytes.")

    async def json(self) -> Any:
        """The body parsed as JSON. Invalid JSON → HTTP 400 ``Invalid JSON body: ...``."""
        if self._json is _MISSING:
            body = await self.body()
            try:
                self._json = loads(body)
            except JSONDecodeError as exc:
                raise HTTPException(400, f"Invalid JSON body: {exc}") from None
        return self._json

    async def form(self) -> FormData:
        """The body parsed as a form (urlencoded or multipart), cached.

        Text fields are ``str``, files are :class:`UploadFile`. Any other content type
        gives an empty form; a malformed body gives HTTP 400.
        """
        if self._form is None:
            content_type, options = parse_options_header(self.headers.get("content-type"))
            if content_type == b"multipart/form-data":
                boundary = options.get(b"boundary")
                if not boundary:
                    raise HTTPException(400, "Invalid form body: multipart without a boundary.")
                body = await self.body()
                try:
                    self._form = _parse_multipart(body, boundary)
                except (FormParserError, UnicodeDecodeError) as exc:
                    raise HTTPException(400, f"Invalid form body: {exc}") from None
            elif content_type == b"application/x-www-form-urlencoded":
                body = await self.body()
                self._form = FormData(QueryParams(body).multi_items())
            else:
                self._form = FormData()
        return self._form

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"


def _parse_multipart(body: bytes, boundary: bytes) -> FormData:
    """Parse a buffered multipart/form-data body with python-multipart."""
    items: list[tuple[str, str | UploadFile]] = []
    raw_headers: list[tuple[bytes, bytes]] = []
    field = bytearray()
    value = bytearray()
    data = bytearray()

    def on_part_begin() -> None:
        raw_headers.clear()
        data.clear()

    def on_header_field(buffer: bytes, start: int, end: int) -> None:
        field.extend(buffer[start:end])

    def on_header_value(buffer: bytes, start: int, end: int) -> None:
        value.extend(buffer[start:end])

    def on_header_end() -> None:
        raw_headers.append((bytes(field).lower(), bytes(value)))
        field.clear()
        value.clear()

    def on_part_data(buffer: bytes, start: int, end: int) -> None:
        data.extend(buffer[start:end])

    def on_part_end() -> None:
        headers = Headers(raw=raw_headers)
        _, options = parse_options_header(headers.get("content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise FormParserError("a multipart part has no name in its Content-Disposition")
        filename = options.get(b"filename")
        if filename is None:
            items.append((name.decode(), data.decode()))
        else:
            upload = UploadFile(
                bytes(data),
                filename=filename.decode(errors="replace"),
                content_type=headers.get("content-type", "application/octet-stream"),
                headers=headers,
            )
            items.append((name.decode(), upload))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return FormData(items)
