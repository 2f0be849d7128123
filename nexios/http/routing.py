"""HTTP routes and the router that dispatches ``http`` scopes to them.

A :class:`Route` checks its handler and reads its signature once, at registration, into
a plan of what each parameter gets (see :class:`Route`); a parameter the framework
cannot fill is a :class:`~nexios.exceptions.ConfigurationError` then, never a silent
``None``, default or Request at run time. A request then costs one regex match per
route tried, the ``Request`` and the arguments. Routes (and mounts) are tried in
registration order. The router answers:

- no route for the path: ``HTTPException(404)``; a route for the path but not the
  method: ``HTTPException(405)`` with an ``Allow`` header;
- an ``HTTPException``, or an exception with a registered handler, from a handler:
  that handler's response (default ``{"detail": ...}`` with the status), see
  :mod:`nexios.http.errors`;
- any other exception propagates, to the app's outermost layer
  (:class:`nexios.middleware.ServerErrors`: a 500, then re-raised for the server).
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from nexios._utils import is_async_callable, run_sync
from nexios.exceptions import ConfigurationError, HTTPException, NoMatchFound
from nexios.http.datastructures import ASGIApp, Receive, Scope, Send, route_path
from nexios.http.errors import ExceptionHandlers
from nexios.http.request import DEFAULT_MAX_BODY_SIZE, Request
from nexios.http.responses import Response, to_response
from nexios.paths import CONVERTERS, PathTemplate, join_paths

__all__ = ["INHERIT", "HTTPRouter", "Handler", "Mount", "Route"]

Handler = Callable[..., Any]
_H = TypeVar("_H", bound=Handler)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_EMPTY = inspect.Parameter.empty


class _Inherit:
    def __repr__(self) -> str:
        return "INHERIT"


INHERIT: Any = _Inherit()
"""``max_body_size=INHERIT`` (the default of routes): use the router's limit."""

# Annotation -> path converter, for parameters written without one ("{n}" + "n: int").
_KIND_OF_TYPE: dict[Any, str] = {str: "str", int: "int", float: "float", uuid.UUID: "uuid"}
# Explicit converter -> annotations it satisfies.
_TYPES_OF_KIND: dict[str, tuple[Any, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int, float),
    "float": (float,),
    "uuid": (uuid.UUID,),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


_QUERY_CONVERTERS: dict[Any, tuple[str, Callable[[str], Any]]] = {
    str: ("text", str),
    int: ("an integer", CONVERTERS["int"].convert),
    float: ("a number", CONVERTERS["float"].convert),
    bool: ("true or false", _to_bool),
    uuid.UUID: ("a UUID", uuid.UUID),
}


@dataclass(frozen=True, slots=True)
class QueryParameter:
    """A handler parameter with a default, filled from the query string."""

    name: str
    default: Any
    convert: Callable[[str], Any]
    expected: str
    many: bool

    def read(self, request: Request) -> Any:
        params = request.query_params
        if self.many:
            values = params.getlist(self.name)
            return [self._convert(value) for value in values] if values else self.default
        if self.name not in params:
            return self.default
        return self._convert(params[self.name])

    def _convert(self, value: str) -> Any:
        try:
            return self.convert(value)
        except ValueError:
            raise HTTPException(
                400, f"Query parameter {self.name!r} must be {self.expected}, got {value!r}."
            ) from None


class Route:
    """An HTTP endpoint: ``Route("/items/{id:int}", get_item, methods=["GET"])``.

    What each handler parameter gets, decided at registration:

    - annotated ``Request`` (or, unannotated or ``Any`` and without a default, the
      first parameter when it is not named like a path parameter): the request;
    - named like a path parameter: its value. A parameter written without a converter
      (``{n}``) is converted by the annotation (``n: int``: ``int``, ``float``,
      ``uuid.UUID`` or ``str``) — a path whose value does not convert does not match
      (404). An explicit converter must agree with the annotation;
    - with a default: the query parameter of that name, converted by the annotation
      (``str``, ``int``, ``float``, ``bool``, ``uuid.UUID``, ``X | None``, ``list[X]``
      for repeated parameters); a value that does not convert is HTTP 400;
    - ``**kwargs``: every path parameter.

    Anything else is a ``ConfigurationError`` (read the body with ``await
    request.json()``). Sync handlers (``def``) run in the thread pool. The return value
    goes through :func:`~nexios.http.responses.to_response`. ``max_body_size``
    overrides the router's body limit for this route.
    """

    __slots__ = (
        "_all_path_params",
        "_is_async",
        "_path_names",
        "_query",
        "_request_keyword",
        "_request_positional",
        "_source",
        "handler",
        "max_body_size",
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
        *,
        max_body_size: int | None = INHERIT,
    ) -> None:
        self.template = PathTemplate(path)
        self.path = path
        _check_handler(path, handler)
        self.handler = handler
        self._is_async = is_async_callable(handler)
        self.name = name or getattr(handler, "__name__", type(handler).__name__)
        if isinstance(methods, str):
            methods = (methods,)
        upper = {method.upper() for method in methods}
        if not upper:
            raise ConfigurationError(f"Route {path!r} needs at least one HTTP method.")
        if "GET" in upper:
            upper.add("HEAD")
        self.methods = frozenset(upper)
        if max_body_size is not INHERIT and max_body_size is not None and max_body_size < 0:
            raise ConfigurationError(f"max_body_size must be >= 0 or None, got {max_body_size}.")
        self.max_body_size = max_body_size
        self._source = f"HTTP handler {self.name!r} for {path!r}"
        self._request_positional = False
        self._request_keyword: str | None = None
        self._path_names: tuple[str, ...] = ()
        self._all_path_params = False
        self._query: tuple[QueryParameter, ...] = ()
        self._plan()

    # -------------------------------------------------------------- registration

    def _plan(self) -> None:
        """Decide once what each parameter of the handler gets."""
        try:
            signature = inspect.signature(self.handler)
        except (TypeError, ValueError):  # no introspectable signature: (request, **params)
            self._request_positional, self._all_path_params = True, True
            return
        hints = _annotations(self.handler)
        path_names = self.template.param_names
        retype: dict[str, str] = {}
        path_names_used: list[str] = []
        query: list[QueryParameter] = []
        for index, parameter in enumerate(signature.parameters.values()):
            annotation = hints.get(parameter.name, parameter.annotation)
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                self._all_path_params = True
            elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                self._request_positional = self._request_positional or index == 0
            elif _is_request_type(annotation) or (
                index == 0
                and parameter.kind in _POSITIONAL
                and (annotation is _EMPTY or annotation is Any)
                and parameter.default is _EMPTY
                and parameter.name not in path_names
            ):
                self._take_request(index, parameter)
            elif parameter.name in path_names:
                if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                    raise self._error(
                        parameter, "is positional-only; path parameters are passed by name"
                    )
                kind = self._path_kind(parameter, annotation)
                if kind is not None:
                    retype[parameter.name] = kind
                path_names_used.append(parameter.name)
            elif parameter.default is not _EMPTY:
                query.append(self._query_parameter(parameter, annotation))
            else:
                raise self._error(
                    parameter,
                    f"is neither the Request, a path parameter of {self.path!r} (path "
                    f"parameters: {', '.join(path_names) or 'none'}) nor optional. Rename "
                    "it after a path parameter, give it a default to read it from the "
                    "query string, or read the body with `await request.json()`",
                )
        if retype:
            self.template = PathTemplate(self.path, default_kinds=retype)
        self._path_names = tuple(path_names_used)
        self._query = tuple(query)

    def _take_request(self, index: int, parameter: inspect.Parameter) -> None:
        if self._request_positional or self._request_keyword is not None:
            raise self._error(parameter, "asks for the Request a second time")
        if index == 0 and parameter.kind in _POSITIONAL:
            self._request_positional = True
        elif parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise self._error(parameter, "is positional-only but not first")
        else:
            self._request_keyword = parameter.name

    def _path_kind(self, parameter: inspect.Parameter, annotation: Any) -> str | None:
        """The converter an unconverted ``{name}`` gets from the annotation, if any."""
        name = parameter.name
        target = _unwrap_optional(annotation)
        if target is _EMPTY or target is Any:
            return None
        if isinstance(target, str):
            target = {"int": int, "float": float, "str": str, "UUID": uuid.UUID}.get(
                target.rpartition(".")[2], target
            )
        kind = self.template.kinds[name]
        if name in self.template.explicit:
            if target not in _TYPES_OF_KIND[kind]:
                raise self._error(
                    parameter,
                    f"is annotated {_type_name(target)}, but the path converts "
                    f"{{{name}:{kind}}} to {_type_name(_TYPES_OF_KIND[kind][0])}; make "
                    "them agree",
                )
            return None
        if target not in _KIND_OF_TYPE:
            raise self._error(
                parameter,
                f"is annotated {_type_name(target)}, which a path parameter cannot be "
                "converted to; use str, int, float or uuid.UUID (or a converter such as "
                f"{{{name}:path}})",
            )
        return _KIND_OF_TYPE[target]

    def _query_parameter(self, parameter: inspect.Parameter, annotation: Any) -> QueryParameter:
        target = _unwrap_optional(annotation)
        if target is _EMPTY or target is Any:
            target = str
        many = typing.get_origin(target) in (list, tuple, set, frozenset) or target is list
        if many:
            args = typing.get_args(target)
            target = _unwrap_optional(args[0]) if args else str
        if isinstance(target, str):
            target = {"int": int, "float": float, "str": str, "bool": bool}.get(target, target)
        if target not in _QUERY_CONVERTERS:
            raise self._error(
                parameter,
                f"has a default, so it is read from the query string, but its annotation "
                f"{_type_name(target)} is not one a query parameter converts to (str, int, "
                "float, bool, uuid.UUID, optionally `| None` or in a list); read other "
                "values from the request yourself",
            )
        expected, convert = _QUERY_CONVERTERS[target]
        return QueryParameter(parameter.name, parameter.default, convert, expected, many)

    def _error(self, parameter: inspect.Parameter, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self._source}: parameter {parameter.name!r} {problem}.")

    # -------------------------------------------------------------- requests

    def match(self, path: str) -> dict[str, Any] | None:
        """The converted path parameters when ``path`` matches, else ``None``."""
        return self.template.match(path)

    async def handle(self, request: Request) -> Response:
        """Call the handler for ``request`` and convert what it returns."""
        params = request.path_params
        if self._all_path_params:
            kwargs = dict(params)
        else:
            kwargs = {name: params[name] for name in self._path_names}
        for query in self._query:
            kwargs[query.name] = query.read(request)
        if self._request_keyword is not None:
            kwargs[self._request_keyword] = request
        args = (request,) if self._request_positional else ()
        if self._is_async:
            result = await self.handler(*args, **kwargs)
        else:
            result = await run_sync(self.handler, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        if isinstance(result, Response):
            return result
        return to_response(result, source=self._source)

    def url_path_for(self, name: str, params: Mapping[str, Any]) -> str | None:
        """This route's path for ``params`` when it is called ``name``, else ``None``."""
        return self.template.format(params) if name == self.name else None

    def __repr__(self) -> str:
        return f"Route({self.path!r}, {self.name}, methods={sorted(self.methods)})"


def _check_handler(path: str, handler: object) -> None:
    if callable(handler) and not inspect.isclass(handler):
        if inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler):
            raise ConfigurationError(
                f"HTTP handler for {path!r} is a generator function; return "
                f"StreamingResponse({getattr(handler, '__name__', 'gen')}()) from a handler "
                "instead."
            )
        return
    if inspect.isclass(handler):
        got = f"the class {handler.__name__} (register an instance of it)"
    else:
        got = f"{type(handler).__name__} {handler!r}, which is not callable"
    raise ConfigurationError(
        f"HTTP handler for {path!r} must be a function (async def, or def to run in the "
        f"thread pool) or a callable object, got {got}."
    )


def _annotations(handler: Handler) -> dict[str, Any]:
    """Resolved annotations; names that cannot be resolved stay strings."""
    target = handler
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(handler, "__call__", handler)  # noqa: B004
    try:
        return typing.get_type_hints(target)
    except Exception:
        raw = dict(getattr(inspect.unwrap(target), "__annotations__", {}))
        namespace = getattr(inspect.unwrap(target), "__globals__", {})
        for name, value in raw.items():
            if isinstance(value, str):
                # Unresolvable (imported under TYPE_CHECKING, say): keep the name.
                with contextlib.suppress(Exception):
                    raw[name] = eval(value, namespace)
        return raw


def _is_request_type(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.rpartition(".")[2] == "Request"
    return inspect.isclass(annotation) and issubclass(annotation, Request)


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` and ``Optional[X]`` as ``X``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__qualname__", None) or repr(annotation)


class Mount:
    """Any ASGI app under a path prefix, e.g. ``Mount("/static", StaticFiles("static"))``.

    As in the ASGI spec (and Starlette), the app sees the full ``path`` and the prefix
    added to ``root_path``; ``route_path(scope)`` gives it the part below the prefix.
    With a ``name``, ``url_for(name, path="css/app.css")`` builds URLs below it.
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

    def url_path_for(self, name: str, params: Mapping[str, Any]) -> str | None:
        """``prefix/path`` when ``name`` is this mount's and ``params`` is ``{"path": ...}``."""
        if name != self.name or set(params) != {"path"}:
            return None
        return join_paths(self.prefix or "/", "/" + str(params["path"]).lstrip("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + self.prefix
        await self.app(child, receive, send)

    def __repr__(self) -> str:
        return f"Mount({self.prefix or '/'!r}, {self.app!r})"


class HTTPRouter:
    """Dispatches ``http`` scopes to routes and mounts, in registration order.

    ``max_body_size`` bounds request bodies (bytes, ``None`` for no limit; routes may
    override it); ``exception_handlers`` is the table applied around each route.

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
        exception_handlers: ExceptionHandlers | None = None,
    ) -> None:
        self.routes: list[Route | Mount] = []
        self.max_body_size = max_body_size
        self.exception_handlers = (
            exception_handlers if exception_handlers is not None else ExceptionHandlers()
        )
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
        *,
        max_body_size: int | None = ...,
    ) -> None: ...

    def add_route(
        self,
        route: Route | Mount | str,
        handler: Handler | None = None,
        /,
        methods: Iterable[str] | str = ("GET",),
        name: str | None = None,
        *,
        max_body_size: int | None = INHERIT,
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
            self.routes.append(Route(route, handler, methods, name, max_body_size=max_body_size))
        else:
            raise ConfigurationError(
                f"add_route() takes a Route or a path string, got {type(route).__name__}."
            )

    def route(
        self,
        path: str,
        methods: Iterable[str] | str = ("GET",),
        name: str | None = None,
        *,
        max_body_size: int | None = INHERIT,
    ) -> Callable[[_H], _H]:
        """Decorator registering a handler for ``path`` and ``methods``."""

        def register(handler: _H) -> _H:
            self.routes.append(Route(path, handler, methods, name, max_body_size=max_body_size))
            return handler

        return register

    def get(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a GET (and HEAD) handler."""
        return self.route(path, ("GET",), name, max_body_size=max_body_size)

    def post(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a POST handler."""
        return self.route(path, ("POST",), name, max_body_size=max_body_size)

    def put(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a PUT handler."""
        return self.route(path, ("PUT",), name, max_body_size=max_body_size)

    def patch(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a PATCH handler."""
        return self.route(path, ("PATCH",), name, max_body_size=max_body_size)

    def delete(
        self, path: str, name: str | None = None, *, max_body_size: int | None = INHERIT
    ) -> Callable[[_H], _H]:
        """Decorator for a DELETE handler."""
        return self.route(path, ("DELETE",), name, max_body_size=max_body_size)

    def mount(self, prefix: str, app: ASGIApp, name: str | None = None) -> None:
        """Serve every path under ``prefix`` with another ASGI app (e.g. StaticFiles)."""
        self.routes.append(Mount(prefix, app, name))

    def url_path_for(self, name: str, /, **path_params: Any) -> str:
        """The path of the route (or mount) called ``name`` with ``path_params``.

        ``NoMatchFound`` when no route of that name takes exactly those parameters.
        """
        for route in self.routes:
            path = route.url_path_for(name, path_params)
            if path is not None:
                return path
        names = sorted({route.name for route in self.routes if route.name})
        raise NoMatchFound(
            f"No route named {name!r} takes the parameters {sorted(path_params)}; "
            f"named routes: {', '.join(names) or 'none'}."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(
                f"HTTPRouter serves 'http' scopes, got {scope['type']!r}; "
                "serve it through NexiosApp, which also handles WebSockets and lifespan."
            )
        if "router" not in scope:
            scope["router"] = self
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
            limit = self.max_body_size if route.max_body_size is INHERIT else route.max_body_size
            await self._run(route, Request(scope, receive, max_body_size=limit), send)
            return
        if allowed is not None:
            error = HTTPException(405, headers={"allow": ", ".join(sorted(allowed))})
        else:
            error = HTTPException(404)
        request = Request(scope, receive, max_body_size=self.max_body_size)
        response = await self.exception_handlers.response_for(request, error)
        assert response is not None  # an HTTPException always has a response
        await response(scope, receive, send)

    async def _run(self, route: Route, request: Request, send: Send) -> None:
        handlers = self.exception_handlers
        try:
            try:
                response = await route.handle(request)
            except Exception as exc:
                handled = await handlers.response_for(request, exc)
                if handled is None:
                    raise
                response = handled
            try:
                await response(request.scope, request.receive, send)
            except HTTPException as exc:
                # Raised before anything was sent (FileResponse: the file is missing).
                handled = await handlers.response_for(request, exc)
                assert handled is not None  # an HTTPException always has a response
                await handled(request.scope, request.receive, send)
            # Other errors while sending propagate: the response may be half sent, and only
            # the server knows whether it can still answer 500 or must drop the connection.
        finally:
            await request.close()

    def __repr__(self) -> str:
        return f"HTTPRouter({self.routes!r})"
