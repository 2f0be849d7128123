"""The HTTP half of :class:`~nexios.NexiosApp`: routes, middleware, errors, state.

:class:`HTTPApp` is a base class of ``NexiosApp``; it holds

- the HTTP router (``app.http``) and its decorators (``@app.get(path)`` ...),
  ``url_path_for``;
- the middleware stack (:mod:`nexios.middleware`): ``add_middleware``, the
  ``@app.middleware("http")`` decorator and ``add_cors``;
- the exception handlers (:mod:`nexios.http.errors`): ``exception_handler`` and
  ``add_exception_handler``, applied to HTTP and to WebSocket handshakes;
- ``app.state``, and the lifespan's yielded state handed to every request's
  ``request.state`` (through the ASGI lifespan ``state``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from starlette.middleware.cors import CORSMiddleware

from nexios.exceptions import ConfigurationError
from nexios.http.datastructures import ASGIApp, Receive, Scope, Send, State
from nexios.http.errors import ExceptionHandler, ExceptionHandlers, HandlerKey
from nexios.http.middleware import (
    FunctionMiddleware,
    Middleware,
    MiddlewareFunction,
    build_stack,
)
from nexios.http.request import DEFAULT_MAX_BODY_SIZE
from nexios.http.routing import INHERIT, Handler, HTTPRouter, Mount, Route

__all__ = ["HTTPApp"]

_H = TypeVar("_H", bound=Handler)
_E = TypeVar("_E", bound=ExceptionHandler)
_M = TypeVar("_M", bound=MiddlewareFunction)


class _Core:
    """The innermost layer of the stack: back into the app, past the stack."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # a middleware may have built a fresh scope
        await self.app(scope, receive, send)


class HTTPApp:
    """HTTP routing, middleware, exception handlers and state, for ``NexiosApp``."""

    http: HTTPRouter
    state: State
    exception_handlers: ExceptionHandlers
    user_middleware: list[Middleware]

    def _init_http(
        self,
        *,
        middleware: Sequence[Middleware] | None = None,
        exception_handlers: Mapping[HandlerKey, ExceptionHandler] | None = None,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if max_body_size is not None and (not isinstance(max_body_size, int) or max_body_size < 0):
            raise ConfigurationError(
                f"max_body_size is a number of bytes (int >= 0) or None, got {max_body_size!r}."
            )
        self.exception_handlers = ExceptionHandlers(exception_handlers)
        self.http = HTTPRouter(
            max_body_size=max_body_size, exception_handlers=self.exception_handlers
        )
        self.user_middleware = []
        for item in middleware or ():
            if not isinstance(item, Middleware):
                raise ConfigurationError(
                    f"NexiosApp(middleware=[...]) takes Middleware(cls, **options) items, "
                    f"got {item!r}."
                )
            self.user_middleware.append(item)
        self.state = State()
        self._stacks: tuple[ASGIApp, ASGIApp | None] | None = None
        self._lifespan_scope_state: dict[str, Any] | None = None

    @property
    def max_body_size(self) -> int | None:
        """The default request-body limit in bytes (routes may override it); 413 over it."""
        return self.http.max_body_size

    # ------------------------------------------------------------------ middleware

    def add_middleware(self, cls: Callable[..., ASGIApp], /, *args: Any, **options: Any) -> None:
        """Wrap the app in ``cls(app, *args, **options)``, an ASGI middleware.

        The last one added is the outermost. It sees ``http``, ``websocket`` and
        ``lifespan`` scopes alike.
        """
        self._check_not_started("add_middleware()")
        self.user_middleware.insert(0, Middleware(cls, *args, **options))

    def middleware(self, kind: str = "http") -> Callable[[_M], _M]:
        """Decorator for ``async def mw(request, call_next) -> Response`` (HTTP only)."""
        if kind != "http":
            raise ConfigurationError(
                f"@app.middleware({kind!r}): function middleware is for 'http'; for "
                "WebSockets use app.add_ws_middleware(), or add_middleware() with an ASGI "
                "middleware class."
            )

        def register(func: _M) -> _M:
            if not callable(func):
                raise ConfigurationError(f"@app.middleware('http') needs a function, got {func!r}.")
            self.add_middleware(FunctionMiddleware, dispatch=func, max_body_size=self.max_body_size)
            return func

        return register

    def add_cors(
        self,
        allow_origins: Sequence[str] = (),
        *,
        allow_methods: Sequence[str] = ("GET", "POST", "PUT", "PATCH", "DELETE"),
        allow_headers: Sequence[str] = (),
        allow_credentials: bool = False,
        allow_origin_regex: str | None = None,
        expose_headers: Sequence[str] = (),
        max_age: int = 600,
    ) -> None:
        """Answer CORS preflights and add CORS headers, with Starlette's ``CORSMiddleware``.

        ``app.add_cors(["https://app.example.com"])``; ``["*"]`` allows any origin
        (without credentials). This is for HTTP; WebSocket handshakes are checked by
        ``allowed_origins``.
        """
        if isinstance(allow_origins, str):
            allow_origins = [allow_origins]
        if not allow_origins and allow_origin_regex is None:
            raise ConfigurationError(
                "add_cors() needs the origins to allow, e.g. "
                "app.add_cors(['https://app.example.com']) (or ['*'] for any origin)."
            )
        self.add_middleware(
            CORSMiddleware,
            allow_origins=list(allow_origins),
            allow_methods=list(allow_methods),
            allow_headers=list(allow_headers),
            allow_credentials=allow_credentials,
            allow_origin_regex=allow_origin_regex,
            expose_headers=list(expose_headers),
            max_age=max_age,
        )

    def _check_not_started(self, what: str) -> None:
        if self._stacks is not None:
            raise ConfigurationError(
                f"{what} after the app started serving: the middleware stack is built on the "
                "first request. Add middleware before the server starts."
            )

    def _entry(self, scope: Scope) -> ASGIApp | None:
        """The stack to enter for a scope arriving from the server, or ``None`` to
        dispatch it directly (no middleware: WebSockets skip the HTTP error layer)."""
        stacks = self._stacks
        if stacks is None:
            core = _Core(self)  # type: ignore[arg-type]
            full = build_stack(core, self.user_middleware, self.exception_handlers)
            stacks = self._stacks = (full, full if self.user_middleware else None)
        if scope["type"] == "lifespan":
            self._lifespan_scope_state = scope.get("state")
        return stacks[0] if scope["type"] == "http" else stacks[1]

    def _publish_lifespan_state(self, state: Any) -> None:
        """Hand what the ``lifespan`` context yielded to every request's ``request.state``."""
        if state is None:
            return
        if not isinstance(state, Mapping):
            raise ConfigurationError(
                f"The lifespan context yielded {type(state).__name__}; yield None or a dict "
                "of values for request.state (e.g. `yield {'db': pool}`)."
            )
        target = self._lifespan_scope_state
        if target is None:
            raise ConfigurationError(
                "The lifespan yielded state, but the server gives no ASGI lifespan 'state' to "
                "pass it to requests; run the app with a server that does (uvicorn, nexios run)."
            )
        target.update(state)

    # ------------------------------------------------------------------ exception handlers

    def add_exception_handler(self, key: HandlerKey, handler: ExceptionHandler) -> None:
        """Answer an exception class, or an HTTP status, with ``handler(request, exc)``."""
        self._check_not_started("add_exception_handler()")
        self.exception_handlers.add(key, handler)

    def exception_handler(self, key: HandlerKey) -> Callable[[_E], _E]:
        """Decorator form of :meth:`add_exception_handler`."""

        def register(handler: _E) -> _E:
            self.add_exception_handler(key, handler)
            return handler

        return register

    # ------------------------------------------------------------------ HTTP routes

    def route(
        self,
        path: str,
        methods: Iterable[str] | str = ("GET",),
        name: str | None = None,
        *,
        max_body_size: int | None = INHERIT,
    ) -> Callable[[_H], _H]:
        """Register an HTTP handler for ``path`` and ``methods``."""
        return self.http.route(path, methods, name, max_body_size=max_body_size)

    def get(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a GET (and HEAD) handler."""
        return self.http.route(path, ("GET",), name, max_body_size=max_body_size)

    def post(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a POST handler."""
        return self.http.route(path, ("POST",), name, max_body_size=max_body_size)

    def put(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a PUT handler."""
        return self.http.route(path, ("PUT",), name, max_body_size=max_body_size)

    def patch(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a PATCH handler."""
        return self.http.route(path, ("PATCH",), name, max_body_size=max_body_size)

    def delete(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a DELETE handler."""
        return self.http.route(path, ("DELETE",), name, max_body_size=max_body_size)

    def add_route(self, route: Route | Mount) -> None:
        """Register an HTTP :class:`~nexios.http.routing.Route` (or ``Mount``)."""
        self.http.add_route(route)

    def mount(self, prefix: str, app: ASGIApp, name: str | None = None) -> None:
        """Serve an ASGI app (e.g. ``StaticFiles(directory=...)``) under ``prefix``."""
        self.http.mount(prefix, app, name)

    def url_path_for(self, name: str, /, **path_params: Any) -> str:
        """The path of the HTTP route (or mount) called ``name`` (``request.url_for``
        gives the absolute URL). ``NoMatchFound`` when there is none."""
        return self.http.url_path_for(name, **path_params)

    url_for = url_path_for
