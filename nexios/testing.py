"""In-process test clients: real ASGI messages, no sockets.

>>> with TestClient(app) as client:            # runs lifespan startup/shutdown
...     assert client.get("/health").json() == {"ok": True}
...     with client.websocket_connect("/ws") as ws:
...         ws.send_text("hi")
...         assert ws.receive_text() == "Message received: hi"

``TestClient`` runs the app on an event loop in a background thread, so tests stay
synchronous. ``AsyncTestClient`` does the same inside the test's own event loop
(``async with AsyncTestClient(app) as client``). When the app closes a WebSocket,
the next receive raises :class:`~nexios.exceptions.WebSocketDisconnect` carrying the
close code; a refused handshake raises :class:`WebSocketDenied` (a
``WebSocketDisconnect``) with the HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
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
    url: str, subprotocols: Sequence[str], headers: dict[str, str] | None, client: tuple[str, int]
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
        "state": {},
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
    """Drives the app's lifespan scope: startup on enter, shutdown on exit."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._reply()
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
        message = await self._reply()
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
            raise RuntimeError("Lifespan failed") from self._task.exception()
        raise TimeoutError("The app did not answer the lifespan message in time")


class _LoopTransport(httpx.BaseTransport):
    """Runs each request through ``httpx.ASGITransport`` on the client's loop thread."""

    def __init__(self, client: TestClient, app: ASGIApp, client_addr: tuple[str, int]) -> None:
        self._client = client
        self._transport = httpx.ASGITransport(app=app, client=client_addr)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def run() -> httpx.Response:
            request.stream = httpx.ByteStream(request.read())
            response = await self._transport.handle_async_request(request)
            # The raw (still encoded) body: the Response below decodes it once, by its
            # content-encoding (a gzip body decoded here would be decoded twice).
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            return httpx.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )

        return self._client._call(run())


class TestClient(httpx.Client):
    """Synchronous in-process client: ``get/post/...`` and ``websocket_connect``.

    Use it as a context manager to run the app's startup and shutdown.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("testclient", 50000),
        timeout: float = _TIMEOUT,
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.client_address = client
        self.ws_timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lifespan: _Lifespan | None = None
        super().__init__(
            base_url=base_url,
            transport=_LoopTransport(self, app, client),
            follow_redirects=kwargs.pop("follow_redirects", True),
            **kwargs,
        )

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
        scope = _websocket_scope(url, subprotocols or (), headers, self.client_address)
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
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.client_address = client
        self.ws_timeout = timeout
        self._lifespan: _Lifespan | None = None
        self._activation: Any = None
        super().__init__(
            base_url=base_url,
            transport=httpx.ASGITransport(app=app, client=client),
            follow_redirects=kwargs.pop("follow_redirects", True),
            **kwargs,
        )

    @contextlib.asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[AsyncWebSocketSession]:
        url = str(self.base_url.join(path))
        scope = _websocket_scope(url, subprotocols or (), headers, self.client_address)
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
