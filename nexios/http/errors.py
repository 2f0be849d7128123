"""Exception handlers: turn an exception into a response.

>>> @app.exception_handler(NotFoundInDatabase)
... async def missing(request: Request, exc: NotFoundInDatabase) -> Response:
...     return JSONResponse({"detail": str(exc)}, 404)
>>> @app.exception_handler(404)                 # every HTTPException(404), and unknown paths
... async def not_found(request: Request, exc: HTTPException) -> Response: ...

Handlers are keyed by exception class (the nearest class in the exception's MRO wins)
or by HTTP status (for ``HTTPException`` — nexios's or Starlette's — the status wins
over the class). They may be ``async`` or sync (run in the thread pool) and return a
``Response`` or anything a route handler may return.

Two layers, as in Starlette:

- **Around the route** (:meth:`ExceptionHandlers.find`): an ``HTTPException`` or an
  exception with a handler becomes that handler's response; an ``HTTPException``
  without one becomes ``{"detail": ...}`` with its status and headers.
- **Outermost** (:class:`nexios.middleware.ServerErrors`): anything else — raised by a
  handler or by middleware — becomes the response of the handler registered for
  ``500`` or ``Exception`` (default: 500 ``{"detail": "Internal Server Error"}``),
  then is re-raised so that the server logs it and the test client can raise it.

For a WebSocket, a handler for the exception runs when the route's handler (or its
middleware) raises before ``accept()``: it gets the WebSocket and may return a
``Response`` whose status and body refuse the handshake.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from nexios._utils import is_async_callable, run_sync
from nexios.exceptions import ConfigurationError, HTTPException
from nexios.http.responses import JSONResponse, Response, to_response

__all__ = [
    "ExceptionHandler",
    "ExceptionHandlers",
    "http_error_response",
    "http_status_of",
    "internal_error_response",
]

logger = logging.getLogger("nexios.http")

ExceptionHandler: TypeAlias = Callable[[Any, Any], Any]
"""``(request_or_websocket, exc) -> Response`` (async or sync)."""
HandlerKey: TypeAlias = type[BaseException] | int

_SERVER_ERROR_KEYS = (500, Exception)


def http_status_of(exc: BaseException) -> tuple[int, str, Mapping[str, str] | None] | None:
    """``(status, detail, headers)`` of an ``HTTPException``, nexios's or Starlette's."""
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail, exc.headers
    # Starlette's (and FastAPI's) HTTPException, recognised without importing Starlette:
    # if one was raised, its module is loaded.
    starlette = sys.modules.get("starlette.exceptions")
    if starlette is not None and isinstance(exc, starlette.HTTPException):
        return exc.status_code, str(exc.detail), exc.headers
    return None


def http_error_response(status: int, detail: Any, headers: Mapping[str, str] | None) -> Response:
    """The default response for an HTTP error: ``{"detail": ...}`` (no body for 204/304)."""
    if status in (204, 304) or status < 200:
        return Response(b"", status, headers)
    return JSONResponse({"detail": detail}, status, headers)


def internal_error_response() -> Response:
    """The default 500: no detail of what went wrong reaches the client."""
    return JSONResponse({"detail": "Internal Server Error"}, 500)


class ExceptionHandlers:
    """The handler table of an app: by exception class and by HTTP status."""

    def __init__(self, handlers: Mapping[HandlerKey, ExceptionHandler] | None = None) -> None:
        self._by_class: dict[type[BaseException], ExceptionHandler] = {}
        self._by_status: dict[int, ExceptionHandler] = {}
        for key, handler in (handlers or {}).items():
            self.add(key, handler)

    def add(self, key: HandlerKey, handler: ExceptionHandler) -> None:
        """Register ``handler`` for an exception class or an HTTP status code."""
        if isinstance(key, bool) or not (
            (isinstance(key, int) and 100 <= key <= 599)
            or (inspect.isclass(key) and issubclass(key, Exception))
        ):
            raise ConfigurationError(
                f"Exception handlers are registered for an Exception subclass or an HTTP "
                f"status code (100-599), got {key!r}."
            )
        if not callable(handler):
            raise ConfigurationError(
                f"The exception handler for {key!r} must be callable as "
                f"handler(request, exc), got {type(handler).__name__}."
            )
        if isinstance(key, int):
            self._by_status[key] = handler
        else:
            self._by_class[key] = handler

    def __bool__(self) -> bool:
        return bool(self._by_class or self._by_status)

    def find(self, exc: BaseException) -> ExceptionHandler | None:
        """The handler for ``exc`` around a route (never the 500/``Exception`` one)."""
        status = http_status_of(exc)
        if status is not None and status[0] != 500:
            handler = self._by_status.get(status[0])
            if handler is not None:
                return handler
        for cls in type(exc).__mro__:
            if cls is Exception:
                break
            handler = self._by_class.get(cls)
            if handler is not None:
                return handler
        return None

    def server_error_handler(self) -> ExceptionHandler | None:
        """The handler registered for ``500`` (else for ``Exception``), if any."""
        for key in _SERVER_ERROR_KEYS:
            handler = self._by_status.get(key) if isinstance(key, int) else self._by_class.get(key)
            if handler is not None:
                return handler
        return None

    async def response_for(self, request: Any, exc: BaseException) -> Response | None:
        """The response for ``exc`` around a route, or ``None`` when it is unhandled."""
        handler = self.find(exc)
        if handler is not None:
            return to_error_response(await call_handler(handler, request, exc), handler)
        status = http_status_of(exc)
        if status is not None:
            return http_error_response(*status)
        return None

    async def handshake_response(self, websocket: Any, exc: BaseException) -> Response | None:
        """The response refusing a WebSocket handshake for ``exc``, if any.

        ``None`` when no handler applies, or the handler returned ``None`` (it may have
        refused or closed the socket itself). A failing handler is logged and ``None``.
        """
        handler = self.find(exc)
        if handler is None:
            status = http_status_of(exc)
            return None if status is None else http_error_response(*status)
        try:
            result = await call_handler(handler, websocket, exc)
            return None if result is None else to_error_response(result, handler)
        except Exception:
            logger.exception("Exception handler %r failed for %r", handler, exc)
            return None


async def call_handler(handler: ExceptionHandler, connection: Any, exc: BaseException) -> Any:
    """Call an exception handler, a sync one in the thread pool."""
    if is_async_callable(handler):
        return await handler(connection, exc)
    result = await run_sync(handler, connection, exc)
    if inspect.isawaitable(result):
        return await result
    return result


def to_error_response(value: Any, handler: ExceptionHandler) -> Response:
    """What an exception handler returned, as a Response (``None`` is a mistake)."""
    if value is None:
        raise TypeError(
            f"Exception handler {getattr(handler, '__qualname__', handler)!r} returned None; "
            "return a Response (e.g. JSONResponse({...}, status_code=...))."
        )
    name = getattr(handler, "__qualname__", handler)
    return to_response(value, source=f"Exception handler {name!r}")
