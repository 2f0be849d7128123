"""The middleware stack's parts: the ``Middleware`` spec, the outermost error layer,
function middleware, and ``build_stack``. Users import them from :mod:`nexios.middleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from nexios.exceptions import ConfigurationError
from nexios.http.datastructures import ASGIApp, Message, Receive, Scope, Send
from nexios.http.errors import (
    ExceptionHandlers,
    call_handler,
    internal_error_response,
    to_error_response,
)
from nexios.http.request import DEFAULT_MAX_BODY_SIZE, Request
from nexios.http.responses import Response

__all__ = [
    "CallNext",
    "FunctionMiddleware",
    "Middleware",
    "MiddlewareFunction",
    "ServerErrors",
    "build_stack",
]

CallNext = Callable[[Request], Awaitable[Response]]
"""What function middleware gets: ``response = await call_next(request)``."""
MiddlewareFunction = Callable[[Request, CallNext], Awaitable[Response]]


class Middleware:
    """A middleware class with its options, kept until the stack is built.

    ``Middleware(GZipMiddleware, minimum_size=500)``; iterating it gives
    ``(cls, args, kwargs)`` as Starlette's does.
    """

    __slots__ = ("args", "cls", "kwargs")

    def __init__(self, cls: Callable[..., ASGIApp], /, *args: Any, **kwargs: Any) -> None:
        if not callable(cls):
            raise ConfigurationError(
                f"add_middleware() takes a middleware class (called as cls(app, **options)), "
                f"got {type(cls).__name__} {cls!r}. For a function `async def mw(request, "
                "call_next)`, use the @app.middleware('http') decorator."
            )
        self.cls = cls
        self.args = args
        self.kwargs = kwargs

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Build the middleware around ``app``."""
        return self.cls(app, *self.args, **self.kwargs)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.cls, self.args, self.kwargs))

    def __repr__(self) -> str:
        options = [repr(arg) for arg in self.args]
        options += [f"{name}={value!r}" for name, value in self.kwargs.items()]
        name = getattr(self.cls, "__name__", repr(self.cls))
        return f"Middleware({', '.join([name, *options])})"


def build_stack(
    app: ASGIApp, middleware: list[Middleware], handlers: ExceptionHandlers
) -> ServerErrors:
    """``ServerErrors(middleware[0](middleware[1](... app)))``: the first is the outermost."""
    for item in reversed(middleware):
        app = item.wrap(app)
    return ServerErrors(app, handlers)


class ServerErrors:
    """The outermost layer for HTTP: an exception nothing handled becomes a response.

    If the response has not started, the handler registered for ``500`` (or
    ``Exception``) answers, else a plain 500 ``{"detail": "Internal Server Error"}``;
    then the exception is re-raised, as Starlette does, so that the server logs it and
    ``TestClient(raise_server_exceptions=True)`` raises it in the test.
    """

    __slots__ = ("app", "handlers")

    def __init__(self, app: ASGIApp, handlers: ExceptionHandlers) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if not started:
                response = await self._response_for(scope, receive, exc)
                await response(scope, receive, send)
            raise

    async def _response_for(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        handler = self.handlers.server_error_handler()
        if handler is None:
            return internal_error_response()
        try:
            result = await call_handler(handler, Request(scope, receive), exc)
            return to_error_response(result, handler)
        except Exception as handler_error:
            # The handler failed too: answer the plain 500, keep both errors for the log.
            exc.__context__ = handler_error
            return internal_error_response()


class FunctionMiddleware:
    """``async def middleware(request, call_next) -> Response`` as an ASGI middleware.

    ``call_next(request)`` runs the rest of the stack and returns its response as soon
    as it starts (the body follows as it is produced, so streaming and Server-Sent
    Events pass through); change its headers or return another response. A body the
    middleware read with ``await request.body()`` (or ``json()``) is handed on to the
    app; one it consumed with ``stream()`` or a multipart ``form()`` is gone. WebSocket
    and lifespan scopes pass through untouched (see ``app.add_ws_middleware`` for
    WebSocket middleware).
    """

    __slots__ = ("app", "dispatch", "max_body_size")

    def __init__(
        self,
        app: ASGIApp,
        dispatch: MiddlewareFunction,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.app = app
        self.dispatch = dispatch
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, max_body_size=self.max_body_size)
        downstream = _Downstream(self.app)
        try:
            response = await self.dispatch(request, downstream.call)
            if response is None:
                raise TypeError(
                    f"Middleware {getattr(self.dispatch, '__qualname__', self.dispatch)!r} "
                    "returned None; return the response of `await call_next(request)` "
                    "(or another Response)."
                )
            await response(scope, receive, send)
        finally:
            await downstream.finish()


_END: Message = {"type": "nexios.end"}


class _Downstream:
    """One run of the rest of the stack for ``call_next``, in its own task."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None
        # One message in flight: the app waits while the client is slow (backpressure).
        self.messages: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)

    async def call(self, request: Request) -> Response:
        if self.task is not None:
            raise RuntimeError("call_next() can be called only once per request.")
        # request.receive replays a body the middleware already read.
        self.task = asyncio.get_running_loop().create_task(
            self._run(request.scope, request.receive), name="nexios-call-next"
        )
        message = await self.messages.get()
        if message is _END:
            await self.task  # raises what the app raised
            raise RuntimeError(
                "The app returned without sending a response (no http.response.start)."
            )
        return _ForwardedResponse(message, self)

    async def _run(self, scope: Scope, receive: Receive) -> None:
        try:
            await self.app(scope, receive, self.messages.put)
        except asyncio.CancelledError:
            raise  # by finish(): nobody reads the messages any more
        except BaseException:
            await self.messages.put(_END)
            raise
        await self.messages.put(_END)

    async def finish(self) -> None:
        """Stop the downstream app if its response was not (fully) used; collect it.

        Its exception, if any, already reached the middleware through ``call_next`` or
        the forwarded response; if the middleware answered otherwise, it chose to drop it.
        """
        task = self.task
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class _ForwardedResponse(Response):
    """The downstream response: its start message now, its body as it comes."""

    sized = False

    def __init__(self, start: Message, downstream: _Downstream) -> None:
        self.status_code = start["status"]
        self.raw_headers = [(bytes(name), bytes(value)) for name, value in start.get("headers", ())]
        self.background = None
        self.body = b""
        self._downstream = downstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        messages = self._downstream.messages
        while True:
            message = await messages.get()
            if message is _END:
                break
            if message["type"] == "http.response.body":
                await send(message)
        task = self._downstream.task
        assert task is not None
        await task  # the app's exception, if it raised after starting the response
        if self.background is not None:
            await self.background()
