"""WebSocket routing: ``WebsocketRoutes`` (one route) and ``WSRouter`` (a prefixed group).

Registration does the work once: the path template compiles, the handler is checked
(it must be ``async def``, or a :class:`WebSocketEndpoint` subclass such as
:class:`~nexios.websockets.consumers.WebSocketConsumer`) and its signature is read to
know which path parameters it takes as keyword arguments. Anything else fails right
there with a :class:`ConfigurationError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from nexios._utils import describe_callable, is_async_callable
from nexios.exceptions import ConfigurationError
from nexios.paths import PathTemplate, join_paths
from nexios.security import OriginPolicy, WSAuth, check_auth_hook

if TYPE_CHECKING:
    from nexios.connection import WebSocket

__all__ = [
    "WSHandler",
    "WSMiddleware",
    "WSRouteRegistry",
    "WSRouter",
    "WebSocketEndpoint",
    "WebsocketRoutes",
    "check_middleware",
    "endpoint_class",
    "find_route",
]

WSHandler = Callable[..., Awaitable[Any]]
WSMiddleware = Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[None]]
"""``async def middleware(ws, call_next)``: inspect or reject ``ws``, then ``await call_next()``."""

_H = TypeVar("_H", bound=Callable[..., Any])


class WebSocketEndpoint:
    """A class-based WebSocket endpoint: routes create one instance per connection and
    await its :meth:`dispatch`. :class:`~nexios.websockets.consumers.WebSocketConsumer`
    is the one nexios ships."""

    async def dispatch(self, ws: WebSocket) -> None:
        """Serve one connection."""
        raise NotImplementedError


def endpoint_class(handler: Any) -> type[WebSocketEndpoint] | None:
    """``handler`` if it is a :class:`WebSocketEndpoint` subclass, else None."""
    if isinstance(handler, type) and issubclass(handler, WebSocketEndpoint):
        return handler
    return None


def _check_handler(path: str, handler: Any) -> None:
    if endpoint_class(handler) is not None:
        return
    if isinstance(handler, WebsocketRoutes | WSRouter):
        kind = type(handler).__name__
        fix = (
            "app.add_ws_route(route), not app.add_ws_route(path, route)"
            if kind == "WebsocketRoutes"
            else "app.mount_ws_router(router) or app.mount_ws_router(router, prefix)"
        )
        raise ConfigurationError(f"Got a {kind} as the handler for {path!r}: use {fix}.")
    if not is_async_callable(handler):
        raise ConfigurationError(
            f"WebSocket handler for {path!r} must be an async function "
            f"(async def handler(ws): ...) or a WebSocketConsumer subclass, got "
            f"{describe_callable(handler)}."
        )


def check_middleware(middleware: Iterable[Any] | None) -> list[WSMiddleware]:
    if middleware is not None and (
        isinstance(middleware, str | bytes) or not isinstance(middleware, Iterable)
    ):
        raise ConfigurationError(
            f"middleware= takes a list of `async def middleware(ws, call_next)`, got "
            f"{middleware!r}."
        )
    checked = list(middleware or ())
    for item in checked:
        if not is_async_callable(item):
            raise ConfigurationError(
                "WebSocket middleware must be `async def middleware(ws, call_next)`, got "
                f"{describe_callable(item)}."
            )
    return checked


class WebsocketRoutes:
    """A WebSocket route: ``WebsocketRoutes("/chat/{room_id}", handler)``.

    ``allowed_origins`` and ``auth`` override the app's ``allowed_origins`` and
    ``ws_auth`` for this route (None: use the app's; ``auth=False``: no authentication).
    See :mod:`nexios.security`.
    """

    __slots__ = (
        "_kwargs",
        "allowed_origins",
        "auth",
        "handler",
        "middleware",
        "origin_policy",
        "path",
        "template",
    )

    def __init__(
        self,
        path: str,
        handler: WSHandler | type,
        middleware: Sequence[WSMiddleware] | None = None,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> None:
        self.template = PathTemplate(path)
        _check_handler(path, handler)
        self.path = path
        self.handler = handler
        self.middleware = check_middleware(middleware)
        self._kwargs = self._keyword_params(handler)
        self.allowed_origins = allowed_origins
        self.origin_policy = OriginPolicy(allowed_origins) if allowed_origins is not None else None
        self.auth = check_auth_hook(auth, f"auth= of the route {path!r}")

    def _keyword_params(self, handler: Any) -> frozenset[str] | None:
        """Which path parameters the handler names (None: it takes ``**kwargs``)."""
        if endpoint_class(handler) is not None:
            return frozenset()
        try:
            parameters = list(inspect.signature(handler).parameters.values())
        except (TypeError, ValueError):
            return frozenset()
        name = getattr(handler, "__name__", repr(handler))
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not parameters or parameters[0].kind not in (
            *positional,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            raise ConfigurationError(
                f"WebSocket handler {name!r} for {self.path!r} must take the WebSocket as its "
                "first positional argument: async def handler(ws, ...)."
            )
        rest = parameters[1:] if parameters[0].kind in positional else parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest):
            return None
        names = frozenset(
            p.name
            for p in rest
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        )
        missing = [
            p.name
            for p in rest
            if p.default is inspect.Parameter.empty
            and p.kind is not inspect.Parameter.VAR_POSITIONAL
            and (
                p.kind is inspect.Parameter.POSITIONAL_ONLY
                or p.name not in self.template.param_names
            )
        ]
        if missing:
            raise ConfigurationError(
                f"WebSocket handler {name!r} requires {', '.join(map(repr, missing))}, but path "
                f"{self.path!r} has no such parameter. Add it to the path (e.g. "
                "'/chat/{room_id}') or give it a default value."
            )
        return names

    def match(self, path: str) -> dict[str, Any] | None:
        """Converted path parameters when ``path`` matches this route, else None."""
        return self.template.match(path)

    def handler_kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        """The path parameters to pass to the handler as keyword arguments."""
        if self._kwargs is None:
            return params
        if not self._kwargs:
            return {}
        return {name: value for name, value in params.items() if name in self._kwargs}

    def with_prefix(
        self, prefix: str | None, middleware: Sequence[WSMiddleware] = ()
    ) -> WebsocketRoutes:
        """A copy of this route mounted under ``prefix``, behind extra middleware."""
        return WebsocketRoutes(
            join_paths(prefix, self.path),
            self.handler,
            [*middleware, *self.middleware],
            allowed_origins=self.allowed_origins,
            auth=self.auth,
        )

    def __repr__(self) -> str:
        name = getattr(self.handler, "__name__", repr(self.handler))
        return f"WebsocketRoutes({self.path!r}, {name})"


class WSRouteRegistry:
    """``add_ws_route`` and ``ws_route`` in both their forms, shared by app and router."""

    def _register_ws_route(self, route: WebsocketRoutes) -> None:
        raise NotImplementedError

    @overload
    def add_ws_route(self, route: WebsocketRoutes, /) -> WebsocketRoutes: ...

    @overload
    def add_ws_route(
        self,
        path: str,
        handler: WSHandler | type,
        /,
        middleware: Sequence[WSMiddleware] | None = None,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> WebsocketRoutes: ...

    def add_ws_route(
        self,
        route_or_path: WebsocketRoutes | str,
        handler: WSHandler | type | None = None,
        /,
        middleware: Sequence[WSMiddleware] | None = None,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> WebsocketRoutes:
        """Register ``add_ws_route(WebsocketRoutes(...))`` or ``add_ws_route(path, handler)``."""
        if isinstance(route_or_path, WebsocketRoutes):
            if handler is not None or allowed_origins is not None or auth is not None:
                raise ConfigurationError(
                    "add_ws_route(route) takes a WebsocketRoutes alone; give a handler, "
                    "allowed_origins or auth to WebsocketRoutes(...) or to "
                    "add_ws_route(path, handler, ...)."
                )
            route = route_or_path
        elif isinstance(route_or_path, str):
            if handler is None:
                raise ConfigurationError(
                    f"add_ws_route({route_or_path!r}) needs a handler: "
                    f"add_ws_route({route_or_path!r}, handler)."
                )
            route = WebsocketRoutes(
                route_or_path, handler, middleware, allowed_origins=allowed_origins, auth=auth
            )
        elif isinstance(route_or_path, WSRouter):
            raise ConfigurationError(
                "add_ws_route() takes one route; to add a WSRouter use "
                "mount_ws_router(router) or mount_ws_router(router, prefix)."
            )
        else:
            raise ConfigurationError(
                "add_ws_route() takes a WebsocketRoutes or a path and a handler, got "
                f"{route_or_path!r}."
            )
        self._register_ws_route(route)
        return route

    @overload
    def ws_route(
        self,
        path: str,
        /,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> Callable[[_H], _H]: ...

    @overload
    def ws_route(
        self,
        path: str,
        handler: _H,
        /,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> _H: ...

    def ws_route(
        self,
        path: str,
        handler: Any = None,
        /,
        *,
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> Any:
        """``@ws_route(path)`` as a decorator, or ``ws_route(path, handler)`` directly.

        ``allowed_origins`` and ``auth`` override the app's for this route.
        """
        if not isinstance(path, str):
            raise ConfigurationError(
                f"ws_route() takes the path first, got {path!r}: write @ws_route('/path') "
                "(with parentheses and a path)."
            )
        if handler is not None:
            self.add_ws_route(path, handler, allowed_origins=allowed_origins, auth=auth)
            return handler

        def decorator(func: _H) -> _H:
            self.add_ws_route(path, func, allowed_origins=allowed_origins, auth=auth)
            return func

        return decorator


class WSRouter(WSRouteRegistry):
    """A group of WebSocket routes under a common prefix and middleware.

    Routes added after the router was mounted are added to the app as well.
    """

    def __init__(
        self,
        prefix: str | None = None,
        routes: Sequence[WebsocketRoutes] | None = None,
        middleware: Sequence[WSMiddleware] | None = None,
    ) -> None:
        if prefix is not None:
            join_paths(prefix, "/")  # validates the prefix now
        self.prefix = prefix
        self.middleware = check_middleware(middleware)
        self.routes: list[WebsocketRoutes] = []
        self._mounts: list[tuple[Callable[[WebsocketRoutes], None], str | None]] = []
        for route in routes or ():
            if not isinstance(route, WebsocketRoutes):
                raise ConfigurationError(
                    f"WSRouter(routes=...) takes WebsocketRoutes objects, got {route!r}."
                )
            self._register_ws_route(route)

    def _register_ws_route(self, route: WebsocketRoutes) -> None:
        self.routes.append(route)
        for register, prefix in self._mounts:
            register(route.with_prefix(prefix, self.middleware))

    def mounted_routes(self, prefix: str | None) -> list[WebsocketRoutes]:
        """This router's routes as they are mounted under ``prefix`` (or its own)."""
        chosen = self.prefix if prefix is None else prefix
        return [route.with_prefix(chosen, self.middleware) for route in self.routes]

    def _attach(self, register: Callable[[WebsocketRoutes], None], prefix: str | None) -> None:
        self._mounts.append((register, self.prefix if prefix is None else prefix))


def find_route(
    routes: Sequence[WebsocketRoutes], path: str
) -> tuple[WebsocketRoutes, dict[str, Any]] | None:
    """The first route matching ``path`` with its parameters."""
    for route in routes:
        params = route.template.match(path)
        if params is not None:
            return route, params
    return None
