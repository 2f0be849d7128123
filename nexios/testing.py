"""In-process test clients: real ASGI messages, no sockets.

>>> with TestClient(app) as client:            # runs lifespan startup/shutdown
...     assert client.get("/health").json() == {"ok": True}
...     with client.websocket_connect("/ws") as ws:
...         ws.send_text("hi")
...         assert ws.receive_text() == "Message received: hi"

``TestClient`` runs the app on an event loop in a background thread, so tests stay
synchronous. ``AsyncTestClient`` does the same inside the test's own event loop
(``async with AsyncTestClient(app) as client``).

HTTP responses stream: ``with client.stream("GET", "/events") as response:`` reads an
endless body (Server-Sent Events) chunk by chunk, and leaving the block disconnects,
as a browser closing the page would. As with Starlette's client,
``raise_server_exceptions=True`` (the default) raises an exception the app did not
handle in the test, instead of returning the 500 the server would send; pass ``False``
to see that 500. The lifespan's state reaches every request's ``request.state``.

When the app closes a WebSocket,
the next receive raises :class:`~nexios.exceptions.WebSocketDisconnect` carrying the
close code; a refused handshake raises :class:`WebSocketDenied` (a
``WebSocketDisconnect``) with the HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx

from nexios import encoding
from nexios.application import NexiosApp
from nexios.exceptions import WebSocketDisconnect

__all__ = [
    "AsyncTestClient",
    "AsyncWebSocketSession",
    "TestClient",
    "WebSocketDenied",
    "WebSocketTestSession",
]

ASGIApp = Callable[..., Awaitable[None]]
_T = TypeVar("_T")
_TIMEOUT = 10.0


class WebSocketDenied(WebSocketDisconnect):
    """The app refused the handshake: ``status_code`` is the HTTP status (403 by default)."""

    def __init__(self, status_code: int, body: bytes = b"") -> None:
        super().__init__(1008, f"handshake refused with HTTP {status_code}")
        self.status_code = status_code
        self.body = body


def _websocket_scope(
    url: str,
    subprotocols: Sequence[str],
    headers: dict[str, str] | None,
    client: tuple[str, int],
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    parts = urlsplit(url)
    raw_headers = [(b"host", (parts.netloc or "testserver").encode())]
    for name, value in (headers or {}).items():
        raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if subprotocols:
        raw_headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "wss" if parts.scheme in ("https", "wss") else "ws",
        "server": (parts.hostname or "testserver", parts.port or 80),
        "client": client,
        "root_path": "",
        "path": unquote(parts.path or "/"),
        "raw_path": (parts.path or "/").encode(),
        "query_string": parts.query.encode(),
        "headers": raw_headers,
        "subprotocols": list(subprotocols),
        "state": dict(state or {}),
        "extensions": {"websocket.http.response": {}},
    }


class AsyncWebSocketSession:
    """A WebSocket conversation with the app, driven from the app's own event loop."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], timeout: float = _TIMEOUT) -> None:
        self._app = app
        self.scope = scope
        self.timeout = timeout
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.accepted_subprotocol: str | None = None
        self.accepted_headers: list[tuple[bytes, bytes]] = []
        self.close_code: int | None = None
        self.close_reason: str = ""

    async def __aenter__(self) -> AsyncWebSocketSession:
        self._task = asyncio.get_running_loop().create_task(self._run_app())
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._next()
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.accepted_headers = list(message.get("headers", []))
            return self
        if message["type"] == "websocket.close":
            await self._finish()
            raise WebSocketDenied(403)
        if message["type"] == "websocket.http.response.start":
            status = message["status"]
            body = b""
            while True:
                part = await self._next()
                body += part.get("body", b"")
                if not part.get("more_body"):
                    break
            await self._finish()
            raise WebSocketDenied(status, body)
        await self._finish()
        raise AssertionError(f"Unexpected first message from the app: {message!r}")

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            await self._to_app.put({"type": "websocket.disconnect", "code": 1000, "reason": ""})
        await self._finish()

    async def _run_app(self) -> None:
        try:
            await self._app(self.scope, self._to_app.get, self._from_app.put)
        finally:
            await self._from_app.put({"type": "_app_finished"})

    async def _finish(self) -> None:
        if self._task is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._task
        except TimeoutError:
            self._task.cancel()
            raise AssertionError(
                f"The app did not finish within {self.timeout}s after the client disconnected"
            ) from None

    async def _next(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                message = await self._from_app.get()
        except TimeoutError:
            raise TimeoutError(
                f"No message from the app within {self.timeout}s on {self.scope['path']!r}"
            ) from None
        if message["type"] == "_app_finished":
            await self._from_app.put(message)  # stays finished for later calls
            if self._task is not None and self._task.done() and self._task.exception():
                raise self._task.exception()  # type: ignore[misc]
            raise WebSocketDisconnect(self.close_code or 1006, "the app ended without closing")
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self._to_app.put(message)

    async def send_text(self, data: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.put({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        encoded = encoding.dumps(data)
        if mode == "text":
            await self.send_text(encoded.decode())
        else:
            await self.send_bytes(encoded)

    async def receive(self) -> dict[str, Any]:
        """The next ``websocket.send`` message; a close raises WebSocketDisconnect."""
        message = await self._next()
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason") or ""
            await self._from_app.put({"type": "websocket.close", **message})
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        return message

    async def receive_text(self) -> str:
        message = await self.receive()
        if message.get("text") is None:
            raise AssertionError(f"Expected a text frame, got {message!r}")
        return message["text"]  # type: ignore[no-any-return]

    async def receive_bytes(self) -> bytes:
        message = await self.receive()
        if message.get("bytes") is None:
            raise AssertionError(f"Expected a binary frame, got {message!r}")
        return message["bytes"]  # type: ignore[no-any-return]

    async def receive_json(self, mode: str = "text") -> Any:
        message = await self.receive()
        raw = message.get("text") if mode == "text" else message.get("bytes")
        if raw is None:
            raise AssertionError(f"Expected a {mode} frame, got {message!r}")
        return encoding.loads(raw)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Disconnect as a client would (the app's receive raises WebSocketDisconnect)."""
        await self._to_app.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        await self._finish()

    async def wait_closed(self) -> int:
        """Wait for the app to close the socket; return the close code."""
        while True:
            try:
                await self.receive()
            except WebSocketDisconnect as disconnect:
                return disconnect.code


class WebSocketTestSession:
    """The synchronous face of :class:`AsyncWebSocketSession` (used by TestClient)."""

    def __init__(self, client: TestClient, session: AsyncWebSocketSession) -> None:
        self._client = client
        self._session = session

    def __enter__(self) -> WebSocketTestSession:
        self._client._call(self._session.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._client._call(self._session.__aexit__())

    @property
    def close_code(self) -> int | None:
        return self._session.close_code

    @property
    def accepted_subprotocol(self) -> str | None:
        return self._session.accepted_subprotocol

    @property
    def accepted_headers(self) -> list[tuple[bytes, bytes]]:
        return self._session.accepted_headers

    def send(self, message: dict[str, Any]) -> None:
        self._client._call(self._session.send(message))

    def send_text(self, data: str) -> None:
        self._client._call(self._session.send_text(data))

    def send_bytes(self, data: bytes) -> None:
        self._client._call(self._session.send_bytes(data))

    def send_json(self, data: Any, mode: str = "text") -> None:
        self._client._call(self._session.send_json(data, mode))

    def receive(self) -> dict[str, Any]:
        return self._client._call(self._session.receive())

    def receive_text(self) -> str:
        return self._client._call(self._session.receive_text())

    def receive_bytes(self) -> bytes:
        return self._client._call(self._session.receive_bytes())

    def receive_json(self, mode: str = "text") -> Any:
        return self._client._call(self._session.receive_json(mode))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._client._call(self._session.close(code, reason))

    def wait_closed(self) -> int:
        return self._client._call(self._session.wait_closed())


class _Lifespan:
    """Drives the app's lifespan scope: startup on enter, shutdown on exit.

    An app that raises on the lifespan scope before answering anything does not support
    it (a bare router, say): as uvicorn does by default, the client goes on without.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.state: dict[str, Any] = {}  # what the app's lifespan yields lands here

    async def startup(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        try:
            message = await self._reply()
        except _LifespanUnsupported:
            self._task = None
            return
        if message["type"] != "lifespan.startup.complete":
            # The app may re-raise after "startup.failed": collect that error here so it
            # is not reported again as "Task exception was never retrieved".
            error: BaseException | None = None
            try:
                async with asyncio.timeout(_TIMEOUT):
                    await self._task
            except Exception as raised:
                error = raised
            self._task = None
            raise RuntimeError(f"Lifespan startup failed: {message.get('message')}") from error

    async def _run(self, scope: dict[str, Any]) -> None:
        await self._app(scope, self._to_app.get, self._from_app.put)

    async def shutdown(self) -> None:
        if self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            message = await self._reply()
        except _LifespanUnsupported as failed:
            raise RuntimeError("Lifespan shutdown failed") from failed.__cause__
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"Lifespan shutdown failed: {message.get('message')}")
        await self._task

    async def _reply(self) -> dict[str, Any]:
        assert self._task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done and self._task.exception() is not None:
            raise _LifespanUnsupported from self._task.exception()
        raise TimeoutError("The app did not answer the lifespan message in time")


class _LifespanUnsupported(Exception):
    """The app raised on the lifespan scope before sending anything."""


class _HTTPExchange:
    """One HTTP request run through the app: the body streams out as the app sends it.

    The request body is sent in one ``http.request`` message; after it, ``receive``
    waits until the client closes the response (or the response is complete and the
    client has read it), then answers ``http.disconnect``. As an ASGI 2.4 server does,
    ``send`` raises ``OSError`` once the client has disconnected.
    """

    def __init__(self, app: ASGIApp, scope: dict[str, Any], body: bytes, timeout: float) -> None:
        self.app = app
        self.scope = scope
        self.timeout = timeout
        self._body: bytes | None = body
        self._gone = asyncio.Event()
        # A few chunks ahead at most: an endless stream waits for the reader.
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self._started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._complete = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Run the app until it starts the response; its status and headers."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nexios-test-http")
        waiting: set[asyncio.Future[Any]] = {self._started, self._task}
        done, _ = await asyncio.wait(
            waiting, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self._started in done:
            message = self._started.result()
            return message["status"], list(message.get("headers", ()))
        if self._task in done:
            self._task.result()  # the app's exception, if it raised
            raise AssertionError(
                f"The app returned without starting a response for {self.scope['path']!r}"
            )
        await self._abandon()
        raise TimeoutError(
            f"No response from the app within {self.timeout}s for {self.scope['path']!r}"
        )

    async def _run(self) -> None:
        await self.app(self.scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if self._gone.is_set():
            raise OSError("the test client closed the response")
        if message["type"] == "http.response.start":
            if self._started.done():
                raise AssertionError(f"The app started the response twice: {message!r}")
            self._started.set_result(message)
        elif message["type"] == "http.response.body":
            if not self._started.done() or self._complete:
                raise AssertionError(f"Unexpected body message from the app: {message!r}")
            body = message.get("body", b"")
            if body:
                await self._chunks.put(bytes(body))
            if not message.get("more_body", False):
                self._complete = True
                await self._chunks.put(None)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body; ``None`` at its end."""
        assert self._task is not None
        getter = asyncio.ensure_future(self._chunks.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            if not self._chunks.empty():
                return self._chunks.get_nowait()
            self._task.result()  # the app's exception, if it raised
            return None  # the app ended the task without ending the body
        raise TimeoutError(
            f"The app sent no more of the body within {self.timeout}s on {self.scope['path']!r}; "
            "for an endless stream, read it with client.stream() and leave the block."
        )

    async def close(self) -> None:
        """Disconnect (the app sees ``http.disconnect``) and wait for the app to finish."""
        self._gone.set()
        task = self._task
        if task is None:
            return
        while not self._chunks.empty():  # unblock a send waiting for room
            self._chunks.get_nowait()
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(task)
        except TimeoutError:
            await self._abandon()
            raise AssertionError(
                f"The app did not finish within {self.timeout}s after the client disconnected "
                f"from {self.scope['path']!r}"
            ) from None
        task.result()

    async def _abandon(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _http_scope(
    request: httpx.Request, client: tuple[str, int], root_path: str, state: dict[str, Any]
) -> dict[str, Any]:
    url = request.url
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    headers = [(name.lower(), value) for name, value in request.headers.raw]
    if not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", url.netloc))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "server": (url.host, url.port or default_port),
        "client": client,
        "root_path": root_path,
        "path": unquote(url.path),
        "raw_path": url.raw_path.split(b"?", 1)[0],
        "query_string": url.query,
        "headers": headers,
        "state": dict(state),
        "extensions": {},
    }


class _ExchangeStream(httpx.SyncByteStream):
    """The body of a TestClient response, pulled from the app's loop chunk by chunk."""

    def __init__(self, client: TestClient, exchange: _HTTPExchange, raise_errors: bool) -> None:
        self._client = client
        self._exchange = exchange
        self._raise = raise_errors
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._client._call(self._guard(self._exchange.next_chunk()))
            if chunk is None:
                return
            yield chunk

    async def _guard(self, step: Awaitable[_T]) -> _T | None:
        return await _guarded(step, self._raise)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client._call(self._guard(self._exchange.close()))


class _AsyncExchangeStream(httpx.AsyncByteStream):
    """The body of an AsyncTestClient response."""

    def __init__(self, exchange: _HTTPExchange, raise_errors: bool) -> None:
        self._exchange = exchange
        self._raise = raise_errors
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await _guarded(self._exchange.next_chunk(), self._raise)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await _guarded(self._exchange.close(), self._raise)


async def _guarded(step: Awaitable[_T], raise_errors: bool) -> _T | None:
    """``await step``; the app's own exception is raised only with ``raise_errors``."""
    try:
        return await step
    except (TimeoutError, AssertionError):
        raise
    except Exception:
        if raise_errors:
            raise
        return None


async def _exchange(
    app: ASGIApp, request: httpx.Request, body: bytes, options: _HTTPOptions
) -> tuple[int, list[tuple[bytes, bytes]], _HTTPExchange | None]:
    """Start the request; ``(status, headers, exchange)``, the exchange ``None`` when the
    app failed before responding (and ``raise_server_exceptions`` is off)."""
    scope = _http_scope(request, options.client, options.root_path, options.state())
    exchange = _HTTPExchange(app, scope, body, options.timeout)
    try:
        status, headers = await exchange.start()
    except (TimeoutError, AssertionError):
        raise
    except Exception:
        if options.raise_server_exceptions:
            raise
        # What a server answers when the app fails before responding.
        return 500, [(b"content-type", b"text/plain; charset=utf-8")], None
    return status, headers, exchange


_ERROR_BODY = b"Internal Server Error"


@dataclass
class _HTTPOptions:
    client: tuple[str, int]
    root_path: str
    timeout: float
    raise_server_exceptions: bool
    state: Callable[[], dict[str, Any]]


class _Transport(httpx.BaseTransport):
    """Runs each request through the app on the TestClient's loop thread."""

    def __init__(self, client: TestClient, app: ASGIApp, options: _HTTPOptions) -> None:
        self._client = client
        self._app = app
        self._options = options

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        status, headers, exchange = self._client._call(
            _exchange(self._app, request, body, self._options)
        )
        if exchange is None:
            return httpx.Response(status, headers=headers, content=_ERROR_BODY, request=request)
        stream = _ExchangeStream(self._client, exchange, self._options.raise_server_exceptions)
        return httpx.Response(status, headers=headers, stream=stream, request=request)


class _AsyncTransport(httpx.AsyncBaseTransport):
    """Runs each request through the app in the test's own event loop."""

    def __init__(self, app: ASGIApp, options: _HTTPOptions) -> None:
        self._app = app
        self._options = options

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        status, headers, exchange = await _exchange(self._app, request, body, self._options)
        if exchange is None:
            return httpx.Response(status, headers=headers, content=_ERROR_BODY, request=request)
        stream = _AsyncExchangeStream(exchange, self._options.raise_server_exceptions)
        return httpx.Response(status, headers=headers, stream=stream, request=request)


class TestClient(httpx.Client):
    """Synchronous in-process client: ``get/post/...``, ``stream`` and ``websocket_connect``.

    Use it as a context manager to run the app's startup and shutdown.
    ``raise_server_exceptions``: an exception the app did not handle is raised in the
    test (default) rather than answered 500. ``timeout`` bounds each wait for the app.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("testclient", 50000),
        timeout: float = _TIMEOUT,
        *,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.client_address = client
        self.ws_timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lifespan: _Lifespan | None = None
        options = _HTTPOptions(
            client, root_path, timeout, raise_server_exceptions, self._lifespan_state
        )
        super().__init__(
            base_url=base_url,
            transport=_Transport(self, app, options),
            follow_redirects=kwargs.pop("follow_redirects", True),
            **kwargs,
        )

    def _lifespan_state(self) -> dict[str, Any]:
        return self._lifespan.state if self._lifespan is not None else {}

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="nexios-testclient", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> WebSocketTestSession:
        """Open a WebSocket to ``path``; use as ``with client.websocket_connect(path) as ws``."""
        url = str(self.base_url.join(path))
        scope = _websocket_scope(
            url, subprotocols or (), headers, self.client_address, self._lifespan_state()
        )
        session = self._call(_make_session(self.app, scope, self.ws_timeout))
        return WebSocketTestSession(self, session)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the app's event loop, as the app would (``ChannelBox``
        calls act on this app's channels): ``client.run(ChannelBox.presence("room"))``."""
        return self._call(_in_app(self.app, coro))

    def __enter__(self) -> TestClient:
        super().__enter__()
        lifespan = self._call(_make_lifespan(self.app))
        try:
            self._call(lifespan.startup())
        except BaseException:
            self.close()  # __exit__ will not run: stop the loop thread now
            raise
        self._lifespan = lifespan
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        lifespan, self._lifespan = self._lifespan, None
        try:
            if lifespan is not None:
                self._call(lifespan.shutdown())
        finally:
            self._stop_loop()
            super().__exit__(exc_type, exc, tb)

    def close(self) -> None:
        """Close the client and stop its event-loop thread (leaving ``with`` does this)."""
        try:
            super().close()
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


async def _in_app(app: ASGIApp, coro: Coroutine[Any, Any, _T]) -> _T:
    if not isinstance(app, NexiosApp):
        return await coro
    token = app.channels.activate()
    try:
        return await coro
    finally:
        app.channels.deactivate(token)


async def _make_session(app: ASGIApp, scope: dict[str, Any], limit: float) -> AsyncWebSocketSession:
    return AsyncWebSocketSession(app, scope, limit)


async def _make_lifespan(app: ASGIApp) -> _Lifespan:
    return _Lifespan(app)


class AsyncTestClient(httpx.AsyncClient):
    """The async twin of :class:`TestClient`, running in the test's own event loop.

    Inside ``async with AsyncTestClient(app)``, ``ChannelBox`` calls made by the test
    act on ``app``'s channels, as they would in one of its handlers.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("testclient", 50000),
        timeout: float = _TIMEOUT,
        *,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.client_address = client
        self.ws_timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self._lifespan: _Lifespan | None = None
        self._activation: Any = None
        options = _HTTPOptions(
            client, root_path, timeout, raise_server_exceptions, self._lifespan_state
        )
        super().__init__(
            base_url=base_url,
            transport=_AsyncTransport(app, options),
            follow_redirects=kwargs.pop("follow_redirects", True),
            **kwargs,
        )

    def _lifespan_state(self) -> dict[str, Any]:
        return self._lifespan.state if self._lifespan is not None else {}

    @contextlib.asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[AsyncWebSocketSession]:
        url = str(self.base_url.join(path))
        scope = _websocket_scope(
            url, subprotocols or (), headers, self.client_address, self._lifespan_state()
        )
        async with AsyncWebSocketSession(self.app, scope, self.ws_timeout) as session:
            yield session

    async def __aenter__(self) -> AsyncTestClient:
        await super().__aenter__()
        lifespan = _Lifespan(self.app)
        try:
            await lifespan.startup()
        except BaseException:
            await super().__aexit__(None, None, None)  # __aexit__ will not run
            raise
        self._lifespan = lifespan
        if isinstance(self.app, NexiosApp):
            self._activation = self.app.channels.activate()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        lifespan, self._lifespan = self._lifespan, None
        activation, self._activation = self._activation, None
        try:
            if lifespan is not None:
                await lifespan.shutdown()
        finally:
            if activation is not None and isinstance(self.app, NexiosApp):
                self.app.channels.deactivate(activation)
            await super().__aexit__(exc_type, exc, tb)
