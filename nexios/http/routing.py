"""HTTP routes and the router that dispatches ``http`` scopes to them.

A :class:`Route` checks its handler and reads its signature once, at registration; a
request then costs one regex match per route tried, the ``Request`` and the params
dict. Routes (and mounts) are tried in registration order. The router answers:

- no route for the path: 404 ``{"detail": "Not Found"}``;
- a route for the path but not the method: 405 with an ``Allow`` header;
- ``HTTPException`` from a handler: its status and ``{"detail": ...}``;
- any other exception: logged once (logger ``nexios.http``) and a bare 500.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

from nexios.exceptions import ConfigurationError, HTTPException
from nexios.http.datastructures import ASGIApp, Receive, Scope, Send, route_path
from nexios.http.request import DEFAULT_MAX_BODY_SIZE, Request
from nexios.http.responses import JSONResponse, Response, to_response
from nexios.paths import PathTemplate

__all__ = ["HTTPRouter", "Handler", "Mount", "Route"]

logger = logging.getLogger("nexios.http")

Handler = Callable[..., Awaitable[Any]]
_H = TypeVar("_H", bound=Handler)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_async_callable(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we need the method itself
    return not inspect.isclass(handler) and inspect.iscoroutinefunction(call)


class Route:
    """An HTTP endpoint: ``Route("/items/{id:int}", get_item, methods=["GET"])``.

    The handler is called as ``handler(request, **params)``: the request goes to its
    first parameter unless that parameter is named like a path parameter, and path
    parameters are passed only when the signature names them (or has ``**kwargs``).
    Its return value goes through :func:`~nexios.http.responses.to_response`.
    """

    __slots__ = (
        "_param_names",
        "_pass_request",
        "_source",
        "handler",
        "methods",
        "name",
        "path",
        "template",
    )

    def __init__(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] | str = ("GET",),
        name: str | None = None,
    ) -> None:
        self.template = PathTemplate(path)
        self.path = path
        if not callable(handler) or not _is_async_callable(handler):
            if inspect.isclass(handler):
                got = f"the class {handler.__name__} (register an instance of it)"
            elif inspect.isfunction(handler) or inspect.ismethod(handler):
                got = f"the sync function {handler.__name__!r}"
            elif callable(handler):
                got = f"{handler!r}, whose __call__ is not async"
            else:
                got = f"{type(handler).__name__} {handler!r}, which is not callable"
            raise ConfigurationError(
                f"HTTP handler for {path!r} must be an async function (async def ...), "
                f"got {got}. Declare it with 'async def' or give its class an 'async def "
                "__call__'."
            )
        self.handler = handler
        self.name = name or getattr(handler, "__name__", type(handler).__name__)
        if isinstance(methods, str):
            methods = (methods,)
        upper = {method.upper() for method in methods}
        if not upper:
            raise ConfigurationError(f"Route {path!r} needs at least one HTTP method.")
        if "GET" in upper:
            upper.add("HEAD")
        self.methods = frozenset(upper)
        self._source = f"HTTP handler {self.name!r} for {path!r}"
        self._pass_request, self._param_names = self._read_signature()

    def _read_signature(self) -> tuple[bool, tuple[str, ...] | None]:
        """Decide once how to call the handler: with the request? which path params?

        The second value is the path parameters to pass, ``None`` meaning all of them.
        """
        try:
            parameters = list(inspect.signature(self.handler).parameters.values())
        except (TypeError, ValueError):  # no introspectable signature: assume (request, **params)
            return True, None
        path_names = self.template.param_names
        pass_request = bool(parameters) and (
            parameters[0].kind is inspect.Parameter.VAR_POSITIONAL
            or (parameters[0].kind in _POSITIONAL and parameters[0].name not in path_names)
        )
        rest = parameters[1:] if pass_request else parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest):
            return pass_request, None
        for parameter in rest:
            required = parameter.default is inspect.Parameter.empty and parameter.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            )
            usable = parameter.name in path_names and (
                parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
            )
            if required and not usable:
                raise ConfigurationError(
                    f"{self._source} has a required parameter {parameter.name!r} that is not "
                    f"a path parameter of {self.path!r} (path parameters: "
                    f"{', '.join(path_names) or 'none'}). Give it a default, rename it, or "
                    "read it from the request."
                )
        named = tuple(p.name for p in rest if p.name in path_names)
        return pass_request, (None if set(named) == set(path_names) else named)

    def match(self, path: str) -> dict[str, Any] | None:
        """The converted path parameters when ``path`` matches, else ``None``."""
        return self.template.match(path)

    async def handle(self, request: Request) -> Response:
        """Call the handler for ``request`` and convert what it returns."""
        names = self._param_names
        params = request.path_params
        kwargs = params if names is None else {name: params[name] for name in names}
        if self._pass_request:
            result = await self.handler(request, **kwargs)
        else:
            result = await self.handler(**kwargs)
        if isinstance(result, Response):
            return result
        return to_response(result, source=self._source)

    def __repr__(self) -> str:
        return f"Route({self.path!r}, {self.name}, methods={sorted(self.methods)})"


class Mount:
    """Any ASGI app under a path prefix, e.g. ``Mount("/static", StaticFiles("static"))``.

    As in the ASGI spec (and Starlette), the app sees the full ``path`` and the prefix
    added to ``root_path``; ``route_path(scope)`` gives it the part below the prefix.
    """

    __slots__ = ("app", "name", "prefix")

    def __init__(self, prefix: str, app: ASGIApp, name: str | None = None) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigurationError(
                f"Mount prefix must be a string starting with '/', got {prefix!r}."
            )
        if not callable(app):
            raise ConfigurationError(
                f"Mounted app for {prefix!r} must be an ASGI app "
                f"(async def app(scope, receive, send)), got {type(app).__name__}."
            )
        self.prefix = prefix.rstrip("/")
        self.app = app
        self.name = name

    def matches(self, path: str) -> bool:
        """Whether ``path`` is the prefix or lies below it."""
        prefix = self.prefix
        return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + self.prefix
        await self.app(child, receive, send)

    def __repr__(self) -> str:
        return f"Mount({self.prefix or '/'!r}, {self.app!r})"


class HTTPRouter:
    """Dispatches ``http`` scopes to routes and mounts, in registration order.

    >>> router = HTTPRouter()
    >>> @router.get("/items/{item_id:int}")
    ... async def get_item(request: Request, item_id: int) -> dict[str, int]:
    ...     return {"id": item_id}
    """

    def __init__(
        self,
        routes: Iterable[Route | Mount] | None = None,
        *,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.routes: list[Route | Mount] = []
        self.max_body_size = max_body_size
        for route in routes or ():
            self.add_route(route)

    @overload
    def add_route(self, route: Route | Mount, /) -> None: ...
    @overload
    def add_route(
        self,
        path: str,
        handler: Handler,
        /,
        methods: Iterable[str] | str = ...,
        name: str | None = ...,
    ) -> None: ...

    def add_route(
        self,
        route: Route | Mount | str,
        handler: Handler | None = None,
        /,
        methods: Iterable[str] | str = ("GET",),
        name: str | None = None,
    ) -> None:
        """Register a ``Route`` (or ``Mount``), or build one: ``add_route(path, handler)``."""
        if isinstance(route, Route | Mount):
            if handler is not None:
                raise ConfigurationError(
                    "add_route() takes a Route, or a path and a handler — not both."
                )
            self.routes.append(route)
        elif isinstance(route, str):
            if handler is None:
                raise ConfigurationError(f"add_route({route!r}) needs a handler.")
            self.routes.append(Route(route, handler, methods, name))
        else:
            raise ConfigurationError(
                f"add_route() takes a Route or a path string, got {type(route).__name__}."
            )

    def route(
        self, path: str, methods: Iterable[str] | str = ("GET",), name: str | None = None
    ) -> Callable[[_H], _H]:
        """Decorator registering an async handler for ``path`` and ``methods``."""

        def register(handler: _H) -> _H:
            self.routes.append(Route(path, handler, methods, name))
            return handler

        return register

    def get(self, path: str, name: str | None = None) -> Callable[[_H], _H]:
        """Decorator for a GET (and HEAD) handler."""
        return self.route(path, ("GET",), name)

    def post(self, path: str, name: str | None = None) -> Callable[[_H], _H]:
        """Decorator for a POST handler."""
        return self.route(path, ("POST",), name)

    def put(self, path: str, name: str | None = None) -> Callable[[_H], _H]:
        """Decorator for a PUT handler."""
        return self.route(path, ("PUT",), name)

    def patch(self, path: str, name: str | None = None) -> Callable[[_H], _H]:
        """Decorator for a PATCH handler."""
        return self.route(path, ("PATCH",), name)

    def delete(self, path: str, name: str | None = None) -> Callable[[_H], _H]:
        """Decorator for a DELETE handler."""
        return self.route(path, ("DELETE",), name)

    def mount(self, prefix: str, app: ASGIApp, name: str | None = None) -> None:
        """Serve every path under ``prefix`` with another ASGI app (e.g. StaticFiles)."""
        self.routes.append(Mount(prefix, app, name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(
                f"HTTPRouter serves 'http' scopes, got {scope['type']!r}; "
                "serve it through NexiosApp, which also handles WebSockets and lifespan."
            )
        path = route_path(scope)
        method = scope["method"]
        allowed: set[str] | None = None
        for route in self.routes:
            if isinstance(route, Mount):
                if route.matches(path):
                    await route(scope, receive, send)
                    return
                continue
            params = route.template.match(path)
            if params is None:
                continue
            if method not in route.methods:
                allowed = (allowed or set()) | route.methods
                continue
            scope["path_params"] = params
            await self._run(route, Request(scope, receive, max_body_size=self.max_body_size), send)
            return
        if allowed is not None:
            response: Response = JSONResponse(
                {"detail": "Method Not Allowed"}, 405, {"allow": ", ".join(sorted(allowed))}
            )
        else:
            response = JSONResponse({"detail": "Not Found"}, 404)
        await response(scope, receive, send)

    async def _run(self, route: Route, request: Request, send: Send) -> None:
        try:
            response = await route.handle(request)
        except HTTPException as exc:
            response = _error_response(exc)
        except Exception:
            logger.exception(
                "Unhandled error in %s while serving %s %s",
                route._source,
                request.method,
                request.scope["path"],
            )
            response = JSONResponse({"detail": "Internal Server Error"}, 500)
        try:
            await response(request.scope, request.receive, send)
        except HTTPException as exc:
            # Raised before anything was sent (FileResponse: the file is missing).
            await _error_response(exc)(request.scope, request.receive, send)
        # Other errors while sending propagate: the response may be half sent, and only
        # the server knows whether it can still answer 500 or must drop the connection.

    def __repr__(self) -> str:
        return f"HTTPRouter({self.routes!r})"


def _error_response(exc: HTTPException) -> Response:
    return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
