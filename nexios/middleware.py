"""The app's ASGI middleware stack: what wraps routing, for HTTP and WebSocket alike.

>>> from starlette.middleware.gzip import GZipMiddleware
>>> app.add_middleware(GZipMiddleware, minimum_size=500)   # any pure-ASGI middleware
>>> @app.middleware("http")
... async def timing(request: Request, call_next: CallNext) -> Response:
...     started = time.perf_counter()
...     response = await call_next(request)
...     response.headers["server-timing"] = f"app;dur={1000 * (time.perf_counter() - started):.1f}"
...     return response

A middleware class is called as ``cls(app, **options)`` and must be an ASGI app
itself; every scope (``http``, ``websocket``, ``lifespan``) passes through it, so
Starlette's ``CORSMiddleware``, ``GZipMiddleware`` and ``TrustedHostMiddleware`` work
unchanged. The last middleware added is the outermost (in ``NexiosApp(middleware=[...])``
the first listed is). The stack is built on the first ASGI call; adding middleware after
that is an error.

Order of a request, outside in: :class:`ServerErrors` (unhandled exceptions become the
500 response, then are re-raised for the server to log), the user's middleware, the
app's dispatch (HTTP routing with its exception handlers, or the WebSocket lifecycle).
Without user middleware a WebSocket goes straight to the dispatch (no extra frame per
connection).

The parts live in :mod:`nexios.http.middleware`; this is where to import them from.
"""

from __future__ import annotations

from nexios.http.middleware import (
    CallNext,
    FunctionMiddleware,
    Middleware,
    MiddlewareFunction,
    ServerErrors,
    build_stack,
)

__all__ = [
    "CallNext",
    "FunctionMiddleware",
    "Middleware",
    "MiddlewareFunction",
    "ServerErrors",
    "build_stack",
]
