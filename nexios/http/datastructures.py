"""Small values shared by HTTP requests and WebSocket connections.

``Headers`` (case-insensitive, multi-valued, read-only) and its ``MutableHeaders``
sibling for responses; ``QueryParams`` and ``FormData`` (multi-dicts where ``get``
returns the last value and ``getlist`` all of them); ``URL``, ``Address`` and
``State``; ``UploadFile`` for files in a form; ``parse_cookies``; ``route_path``;
and the ASGI type aliases.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "URL",
    "ASGIApp",
    "Address",
    "FormData",
    "Headers",
    "ImmutableMultiDict",
    "Message",
    "MutableHeaders",
    "QueryParams",
    "Receive",
    "Scope",
    "Send",
    "State",
    "UploadFile",
    "parse_cookies",
    "route_path",
]

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
# Received messages are typed loosely so that servers and clients typed the Starlette
# way (MutableMapping messages) and our own dict-typed callables both fit.
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: ASGI apps typed with MutableMapping messages (Starlette) fit too.
ASGIApp = Callable[..., Awaitable[None]]

_V = TypeVar("_V")
_R = TypeVar("_R")

RawHeaders = list[tuple[bytes, bytes]]
HeadersInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


def _encode(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def route_path(scope: Scope) -> str:
    """The part of ``scope["path"]`` below ``scope["root_path"]`` (ASGI: path includes it)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest or rest[0] == "/":
            return rest
    return path


_COOKIE_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))")


def _unescape(found: re.Match[str]) -> str:
    return chr(int(found[1], 8)) if found[1] else found[2]


def parse_cookies(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` header into a dict, tolerantly.

    Pairs are split on ``;`` and the first ``=``; double-quoted values are unquoted
    with the escapes ``http.cookies`` writes. Fragments without a name are skipped
    rather than failing the request; a repeated name keeps its last value.
    """
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, _, value = chunk.partition("=")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _COOKIE_ESCAPE.sub(_unescape, value[1:-1])
        cookies[name] = value
    return cookies


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers; ``getlist`` returns repeated values.

    Build it from ASGI raw headers (``Headers(raw=scope["headers"])``), a mapping, or
    ``(name, value)`` pairs. Values are latin-1 text, as HTTP defines them.
    """

    __slots__ = ("_raw",)

    def __init__(
        self,
        headers: HeadersInput | None = None,
        *,
        raw: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if raw is not None:
            self._raw: RawHeaders = [(name.lower(), value) for name, value in raw]
        elif headers is None:
            self._raw = []
        else:
            items = headers.items() if isinstance(headers, Mapping) else headers
            self._raw = [(_encode(name).lower(), _encode(value)) for name, value in items]

    @property
    def raw(self) -> RawHeaders:
        """The headers as ASGI ``(name, value)`` byte pairs, names lower-cased."""
        return self._raw

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in order (empty when absent)."""
        name = key.lower().encode("latin-1")
        return [value.decode("latin-1") for k, value in self._raw if k == name]

    def __getitem__(self, key: str) -> str:
        name = key.lower().encode("latin-1")
        for k, value in self._raw:
            if k == name:
                return value.decode("latin-1")
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = key.lower().encode("latin-1")
        return any(k == name for k, _ in self._raw)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.decode("latin-1") for k, _ in self._raw))

    def __len__(self) -> int:
        return len({k for k, _ in self._raw})

    def multi_items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs, repeats included."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self._raw) == sorted(other._raw)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.multi_items()!r})"


class MutableHeaders(Headers):
    """Headers that can be changed; ``response.headers`` is one, over the response's list."""

    __slots__ = ()

    def __setitem__(self, key: str, value: str) -> None:
        """Replace every value of ``key`` with ``value``."""
        name = key.lower().encode("latin-1")
        self._raw[:] = [(k, v) for k, v in self._raw if k != name]
        self._raw.append((name, value.encode("latin-1")))

    def __delitem__(self, key: str) -> None:
        name = key.lower().encode("latin-1")
        if name not in (k for k, _ in self._raw):
            raise KeyError(key)
        self._raw[:] = [(k, v) for k, v in self._raw if k != name]

    def append(self, key: str, value: str) -> None:
        """Add a value without removing existing ones (e.g. a second ``set-cookie``)."""
        self._raw.append((key.lower().encode("latin-1"), value.encode("latin-1")))

    def setdefault(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless present; return the value in effect."""
        if key in self:
            return self[key]
        self.append(key, value)
        return value

    @classmethod
    def wrap(cls, raw: RawHeaders) -> MutableHeaders:
        """A view that edits ``raw`` in place (names must already be lower-case)."""
        headers = cls()
        headers._raw = raw
        return headers


class ImmutableMultiDict(Mapping[str, _V], Generic[_V]):
    """A read-only multi-dict: ``d[key]``/``get`` give the last value, ``getlist`` all."""

    __slots__ = ("_dict", "_list")

    def __init__(self, items: Iterable[tuple[str, _V]] | Mapping[str, _V] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        self._list: list[tuple[str, _V]] = pairs
        self._dict: dict[str, _V] = dict(pairs)

    def getlist(self, key: str) -> list[_V]:
        """Every value of ``key``, in order (empty when absent)."""
        return [v for k, v in self._list if k == key]

    def multi_items(self) -> list[tuple[str, _V]]:
        """All ``(key, value)`` pairs, repeats included, in order."""
        return list(self._list)

    def __getitem__(self, key: str) -> _V:
        return self._dict[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ImmutableMultiDict):
            return sorted(self._list, key=repr) == sorted(other._list, key=repr)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._list!r})"


class QueryParams(ImmutableMultiDict[str]):
    """Query-string parameters: ``QueryParams("a=1&a=2")``, ``QueryParams({"a": "1"})``.

    Blank values are kept (``?flag=`` gives ``""``); ``str()`` re-encodes them.
    """

    __slots__ = ()

    def __init__(
        self, query: str | bytes | Mapping[str, str] | Iterable[tuple[str, str]] = ""
    ) -> None:
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        if isinstance(query, str):
            super().__init__(parse_qsl(query, keep_blank_values=True))
        else:
            super().__init__(query)

    def __str__(self) -> str:
        return urlencode(self._list)


class UploadFile:
    """A file from a multipart form.

    ``file`` is the underlying binary file: an in-memory buffer for small uploads, a
    temporary file on disk once an upload passed the form's ``spool_max_size``. The
    async methods run in the thread pool when the data is on disk, so they never block
    the event loop; ``size`` counts the bytes written.
    """

    __slots__ = ("_max_memory", "content_type", "file", "filename", "headers", "size")

    def __init__(
        self,
        file: BinaryIO | bytes,
        *,
        size: int | None = None,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        headers: Headers | None = None,
        max_memory: int | None = None,
    ) -> None:
        if isinstance(file, bytes | bytearray | memoryview):
            data = bytes(file)
            file = io.BytesIO(data)
            size = len(data) if size is None else size
        self.file: BinaryIO = file
        self.filename = filename
        self.content_type = content_type
        self.headers = headers if headers is not None else Headers()
        self.size = size
        self._max_memory = max_memory

    @property
    def in_memory(self) -> bool:
        """Whether the data is held in memory (else it is on disk)."""
        if isinstance(self.file, io.BytesIO):
            return True
        return self._max_memory is not None and (self.size or 0) <= self._max_memory

    async def _io(self, func: Callable[..., _R], *args: Any) -> _R:
        if self.in_memory:
            return func(*args)
        return await asyncio.to_thread(func, *args)

    async def write(self, data: bytes) -> None:
        """Append ``data`` (the form parser writes uploads with this)."""
        if self.size is not None:
            self.size += len(data)
        await self._io(self.file.write, data)

    async def read(self, size: int = -1) -> bytes:
        """Read ``size`` bytes (all that is left by default)."""
        return await self._io(self.file.read, size)

    async def seek(self, offset: int) -> None:
        """Move to ``offset`` (``await file.seek(0)`` reads it again)."""
        await self._io(self.file.seek, offset)

    async def close(self) -> None:
        """Release the buffer or delete the temporary file."""
        await self._io(self.file.close)

    def __repr__(self) -> str:
        return (
            f"UploadFile(filename={self.filename!r}, content_type={self.content_type!r}, "
            f"size={self.size})"
        )


class FormData(ImmutableMultiDict[str | UploadFile]):
    """Parsed form fields: text values as ``str``, files as :class:`UploadFile`."""

    __slots__ = ()

    async def close(self) -> None:
        """Close every uploaded file."""
        for _, value in self._list:
            if isinstance(value, UploadFile):
                await value.close()


class Address(NamedTuple):
    """A peer's ``(host, port)``."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class URL:
    """The request URL: ``scheme``, ``netloc``, ``path`` and ``query`` (no leading ``?``)."""

    scheme: str = "http"
    netloc: str = ""
    path: str = "/"
    query: str = ""

    @classmethod
    def from_scope(cls, scope: Scope) -> URL:
        """Rebuild the URL the client asked for from an ASGI ``http``/``websocket`` scope."""
        scheme: str = scope.get("scheme") or ("ws" if scope.get("type") == "websocket" else "http")
        netloc = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"host":
                netloc = value.decode("latin-1")
                break
        else:
            server = scope.get("server")
            if server:
                host, port = server[0], server[1]
                default = {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(scheme)
                netloc = host if port is None or port == default else f"{host}:{port}"
        return cls(
            scheme=scheme,
            netloc=netloc,
            path=scope.get("path", "/"),
            query=scope.get("query_string", b"").decode("latin-1"),
        )

    @property
    def hostname(self) -> str:
        """The host without the port."""
        host = self.netloc.rpartition("@")[2]
        if host.startswith("["):
            return host[1:].partition("]")[0]
        return host.partition(":")[0]

    @property
    def port(self) -> int | None:
        """The explicit port, if any."""
        host = self.netloc.rpartition("@")[2]
        if host.startswith("["):
            host = host.partition("]")[2]
        _, _, port = host.rpartition(":")
        return int(port) if port.isdigit() else None

    def __str__(self) -> str:
        url = f"{self.scheme}://{self.netloc}{self.path}" if self.netloc else self.path
        return f"{url}?{self.query}" if self.query else url


class State:
    """Free-form attributes for a request or connection (``request.state.user = ...``)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {} if data is None else data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"state has no attribute {name!r}; set it first (state.{name} = ...)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"State({self._data!r})"
