"""nexios.http.routing."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import httpx
import pytest

from nexios.exceptions import ConfigurationError, HTTPException
from nexios.http import HTTPRouter, PlainTextResponse, Request, Route
from nexios.http.datastructures import Message, Receive, Scope, Send, route_path
from nexios.http.routing import Mount
from nexios.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


def client_for(app: Any) -> AsyncTestClient:
    return AsyncTestClient(app, follow_redirects=False)


# ---------------------------------------------------------------- calling handlers


async def test_path_params_are_converted_and_passed_as_keywords() -> None:
    router = HTTPRouter()
    seen: dict[str, Any] = {}

    @router.get("/items/{item_id:int}/price/{price:float}")
    async def item(request: Request, item_id: int, price: float) -> dict[str, Any]:
        seen["request"] = request
        return {"item_id": item_id, "price": price, "types": [type(item_id).__name__]}

    @router.get("/users/{user_id:uuid}")
    async def user(user_id: uuid.UUID) -> str:  # no request parameter at all
        return f"{type(user_id).__name__}:{user_id}"

    @router.get("/files/{path:path}")
    async def files(request: Request, path: str) -> dict[str, Any]:
        return {"path": path, "params": request.path_params}

    @router.get("/rooms/{room}/{member}")
    async def member(request: Request, member: str) -> dict[str, Any]:  # names only one
        return {"member": member, "params": request.path_params}

    @router.get("/any/{a}/{b:int}")
    async def catch_all(request: Request, **params: Any) -> dict[str, Any]:
        return params

    async with client_for(router) as client:
        assert (await client.get("/items/7/price/2.5")).json() == {
            "item_id": 7,
            "price": 2.5,
            "types": ["int"],
        }
        uid = uuid.uuid4()
        assert (await client.get(f"/users/{uid}")).text == f"UUID:{uid}"
        assert (await client.get("/files/a/b/c.txt")).json() == {
            "path": "a/b/c.txt",
            "params": {"path": "a/b/c.txt"},
        }
        assert (await client.get("/rooms/lobby/ada")).json() == {
            "member": "ada",
            "params": {"room": "lobby", "member": "ada"},
        }
        assert (await client.get("/any/x/3")).json() == {"a": "x", "b": 3}
        # A value the converter refuses does not match the route.
        assert (await client.get("/items/seven/price/1")).status_code == 404
    assert isinstance(seen["request"], Request)


async def test_handler_without_parameters_and_request_only_handlers() -> None:
    router = HTTPRouter()

    @router.get("/ping")
    async def ping() -> str:
        return "pong"

    @router.get("/echo/{word}")
    async def echo(request: Request) -> str:  # params only through the request
        return str(request.path_params["word"])

    async with client_for(router) as client:
        assert (await client.get("/ping")).text == "pong"
        assert (await client.get("/echo/hi")).text == "hi"


async def test_callable_objects_and_partials() -> None:
    class Handler:
        async def __call__(self, request: Request, name: str) -> dict[str, str]:
            return {"hello": name}

    async def greet(greeting: str, request: Request, name: str) -> str:
        return f"{greeting}, {name}"

    router = HTTPRouter()
    router.add_route("/obj/{name}", Handler())
    router.add_route("/partial/{name}", functools.partial(greet, "hi"))
    async with client_for(router) as client:
        assert (await client.get("/obj/ada")).json() == {"hello": "ada"}
        assert (await client.get("/partial/ada")).text == "hi, ada"


async def test_signature_is_read_once_at_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    router = HTTPRouter()

    @router.get("/x/{n:int}")
    async def handler(n: int) -> int | str:
        return str(n)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("inspect.signature called per request")

    monkeypatch.setattr("inspect.signature", fail)
    async with client_for(router) as client:
        assert (await client.get("/x/1")).text == "1"


# ---------------------------------------------------------------- dispatching


async def test_unknown_path_is_json_404() -> None:
    async with client_for(HTTPRouter()) as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_wrong_method_is_405_with_allow() -> None:
    router = HTTPRouter()

    @router.get("/thing")
    async def get_thing() -> str:
        return "got"

    @router.delete("/thing")
    async def delete_thing() -> None:
        return None

    async with client_for(router) as client:
        post = await client.post("/thing")
        head = await client.head("/thing")
        delete = await client.delete("/thing")
    assert post.status_code == 405
    assert post.headers["allow"] == "DELETE, GET, HEAD"
    assert post.json() == {"detail": "Method Not Allowed"}
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "3"
    assert delete.status_code == 204


async def test_every_method_decorator_and_route_methods() -> None:
    router = HTTPRouter()

    async def handler(request: Request) -> str:
        return request.method

    for name in ("get", "post", "put", "patch", "delete"):
        getattr(router, name)(f"/{name}")(handler)
    router.route("/multi", methods=["post", "Put"])(handler)
    router.add_route(Route("/options", handler, methods="options"))

    async with client_for(router) as client:
        for name in ("get", "post", "put", "patch", "delete"):
            response = await client.request(name.upper(), f"/{name}")
            assert response.text == name.upper()
        assert (await client.put("/multi")).text == "PUT"
        assert (await client.get("/multi")).headers["allow"] == "POST, PUT"
        assert (await client.options("/options")).text == "OPTIONS"


async def test_routes_are_tried_in_registration_order() -> None:
    router = HTTPRouter()

    @router.get("/users/me")
    async def me() -> str:
        return "me"

    @router.get("/users/{name}")
    async def by_name(name: str) -> str:
        return f"user {name}"

    async with client_for(router) as client:
        assert (await client.get("/users/me")).text == "me"
        assert (await client.get("/users/ada")).text == "user ada"


async def test_scope_path_params_are_set() -> None:
    router = HTTPRouter()

    @router.get("/r/{n:int}")
    async def handler(request: Request) -> dict[str, Any]:
        return {"n": request.scope["path_params"]["n"]}

    async with client_for(router) as client:
        assert (await client.get("/r/5")).json() == {"n": 5}


async def test_router_honours_root_path() -> None:
    router = HTTPRouter()

    @router.get("/x")
    async def x(request: Request) -> str:
        return request.url.path

    transport = httpx.ASGITransport(app=router, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/x")).text == "/api/x"


async def test_mount_passes_the_prefix_in_root_path() -> None:
    seen: list[tuple[str, str, str]] = []

    async def sub_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["path"], scope["root_path"], route_path(scope)))
        await PlainTextResponse("sub")(scope, receive, send)

    router = HTTPRouter()
    router.mount("/sub/", sub_app)

    @router.get("/subway")
    async def subway() -> str:
        return "not mounted"

    async with client_for(router) as client:
        assert (await client.get("/sub/a/b")).text == "sub"
        assert (await client.post("/sub")).text == "sub"
        assert (await client.get("/subway")).text == "not mounted"
    assert seen == [("/sub/a/b", "/sub", "/a/b"), ("/sub", "/sub", "")]


async def test_routers_nest_through_mount() -> None:
    inner = HTTPRouter()

    @inner.get("/items/{n:int}")
    async def item(n: int) -> dict[str, int]:
        return {"n": n}

    outer = HTTPRouter([Mount("/api", inner)])
    async with client_for(outer) as client:
        assert (await client.get("/api/items/3")).json() == {"n": 3}
        assert (await client.get("/api/nope")).status_code == 404


async def test_non_http_scopes_are_refused() -> None:
    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    with pytest.raises(RuntimeError, match="'http' scopes"):
        await HTTPRouter()({"type": "websocket", "path": "/"}, receive, send)


# ---------------------------------------------------------------- errors


async def test_http_exception_becomes_its_status_and_detail() -> None:
    router = HTTPRouter()

    @router.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"x-why": "tea"})

    @router.get("/forbidden")
    async def forbidden() -> None:
        raise HTTPException(403)

    async with client_for(router) as client:
        teapot_response = await client.get("/teapot")
        forbidden_response = await client.get("/forbidden")
    assert teapot_response.status_code == 418
    assert teapot_response.json() == {"detail": "short and stout"}
    assert teapot_response.headers["x-why"] == "tea"
    assert forbidden_response.status_code == 403
    assert forbidden_response.json() == {"detail": "Forbidden"}


async def test_a_bare_router_lets_a_crash_propagate_to_the_server() -> None:
    # The 500 comes from the app's outermost layer (nexios.middleware.ServerErrors); a
    # router alone leaves unhandled errors to the server, as Starlette's does.
    router = HTTPRouter()

    @router.post("/boom/{n:int}")
    async def boom(n: int) -> None:
        raise ZeroDivisionError("secret internals")

    async with client_for(router) as client:
        with pytest.raises(ZeroDivisionError, match="secret internals"):
            await client.post("/boom/1")
    async with AsyncTestClient(router, raise_server_exceptions=False) as client:
        response = await client.post("/boom/1")
    assert response.status_code == 500
    assert "secret" not in response.text


# ---------------------------------------------------------------- registration


def test_what_cannot_be_a_handler_is_refused_at_registration() -> None:
    class WithAsyncCall:
        async def __call__(self) -> str:
            return "x"

    async def stream() -> Any:
        yield b"x"

    with pytest.raises(ConfigurationError, match=r"HTTP handler for '/x' must be a function"):
        Route("/x", "not a function")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="the class WithAsyncCall"):
        Route("/x", WithAsyncCall)  # the class, not an instance
    with pytest.raises(ConfigurationError, match=r"generator function; return StreamingResponse"):
        Route("/x", stream)
    Route("/x", WithAsyncCall())


def test_required_parameters_must_be_path_parameters() -> None:
    async def handler(request: Request, user_id: int) -> None:
        return None

    with pytest.raises(ConfigurationError) as caught:
        Route("/users/{id:int}", handler)
    message = str(caught.value)
    assert "HTTP handler 'handler' for '/users/{id:int}': parameter 'user_id' is neither" in message
    assert "(path parameters: id)" in message and "give it a default" in message

    async def with_default(request: Request, page: int = 1) -> None:
        return None

    Route("/users", with_default)  # an optional extra parameter is a query parameter


def test_route_configuration() -> None:
    async def handler() -> None:
        return None

    route = Route("/x", handler, methods=["get", "post"])
    assert route.methods == {"GET", "HEAD", "POST"}
    assert route.name == "handler"
    assert Route("/x", handler, methods=["PUT"]).methods == {"PUT"}
    assert Route("/x", handler, name="custom").name == "custom"
    with pytest.raises(ConfigurationError, match="at least one"):
        Route("/x", handler, methods=[])
    with pytest.raises(ConfigurationError, match="starting with '/'"):
        Route("x", handler)
    with pytest.raises(ConfigurationError, match="Unknown converter"):
        Route("/x/{n:nope}", handler)


def test_add_route_forms() -> None:
    async def handler() -> None:
        return None

    router = HTTPRouter()
    router.add_route(Route("/a", handler))
    router.add_route("/b", handler, methods=["POST"], name="b")
    assert [(r.path, r.name) for r in router.routes if isinstance(r, Route)] == [
        ("/a", "handler"),
        ("/b", "b"),
    ]
    with pytest.raises(ConfigurationError, match="not both"):
        router.add_route(Route("/c", handler), handler)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="needs a handler"):
        router.add_route("/c")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="Mount prefix"):
        router.mount("static", handler)
    with pytest.raises(ConfigurationError, match="must be an ASGI app"):
        router.mount("/static", "not an app")  # type: ignore[arg-type]
