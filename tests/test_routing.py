"""nexios.routing: WebsocketRoutes, WSRouter, registration checks, path parameters."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.routing import WebsocketRoutes, WSRouter, find_route
from nexios.testing import TestClient, WebSocketDenied
from nexios.websockets.base import WebSocket
from nexios.websockets.consumers import WebSocketConsumer


async def echo_path(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json(
        {
            "url_path": ws.url.path,
            "path_params": {k: repr(v) for k, v in ws.path_params.items()},
            "scope_params": {k: repr(v) for k, v in ws.scope["path_params"].items()},
        }
    )
    await ws.close()


async def tag(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(ws.url.path)
    await ws.close()


def received(app: NexiosApp, path: str) -> Any:
    with TestClient(app) as client, client.websocket_connect(path) as ws:
        message = ws.receive()
        assert ws.wait_closed() == 1000
    return message.get("text")


# --------------------------------------------------------------------------- handler checks


def sync_handler(ws: WebSocket) -> None:
    pass


async def async_gen_handler(ws: WebSocket) -> Any:
    yield None


async def no_args() -> None:
    pass


async def keyword_only(*, ws: WebSocket) -> None:
    pass


class NotAConsumer:
    async def __call__(self, ws: WebSocket) -> None:
        pass


class SyncCallable:
    def __call__(self, ws: WebSocket) -> None:
        pass


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (sync_handler, r"must be an async function .* got the sync function 'sync_handler'"),
        (async_gen_handler, "got the async generator function 'async_gen_handler'"),
        (lambda ws: None, "must be an async function"),
        (None, "handler"),
        ("handler", "must be an async function"),
        (NotAConsumer, "got the class NotAConsumer"),
        (SyncCallable(), "must be an async function"),
        (no_args, "must take the WebSocket as its first positional argument"),
        (keyword_only, "must take the WebSocket as its first positional argument"),
    ],
)
def test_bad_handlers_fail_at_registration(handler: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        WebsocketRoutes("/ws", handler)
    app = NexiosApp()
    with pytest.raises(ConfigurationError, match=message):
        app.add_ws_route("/ws", handler)
    with pytest.raises(ConfigurationError, match=message):
        app.ws_route("/ws")(handler)
    with pytest.raises(ConfigurationError, match=message):
        WSRouter().add_ws_route("/ws", handler)
    assert app.ws_routes == []


def test_configuration_error_is_a_type_error() -> None:
    # Code written against other frameworks catches TypeError for bad registrations.
    with pytest.raises(TypeError):
        WebsocketRoutes("/ws", sync_handler)  # type: ignore[arg-type]


def test_async_callables_are_accepted() -> None:
    async def with_room(ws: WebSocket, room: str, extra: int) -> None:
        pass

    class Consumer(WebSocketConsumer):
        pass

    WebsocketRoutes("/a", NotAConsumer())
    WebsocketRoutes("/b/{room}", functools.partial(with_room, extra=1))
    WebsocketRoutes("/c", Consumer)
    WebsocketRoutes("/d", Consumer.as_route("/d").handler)


def test_handler_naming_a_missing_path_param_fails_at_registration() -> None:
    async def room(ws: WebSocket, room_id: str) -> None:
        pass

    with pytest.raises(ConfigurationError, match=r"requires 'room_id', but path '/chat'"):
        WebsocketRoutes("/chat", room)
    WebsocketRoutes("/chat/{room_id}", room)


def test_handler_params_with_defaults_are_optional() -> None:
    async def room(ws: WebSocket, room_id: str = "lobby") -> None:
        pass

    assert WebsocketRoutes("/chat", room).handler_kwargs({}) == {}


def test_handler_kwargs_only_passes_named_params() -> None:
    async def named(ws: WebSocket, a: str) -> None:
        pass

    async def anything(ws: WebSocket, **params: Any) -> None:
        pass

    async def none(ws: WebSocket) -> None:
        pass

    params = {"a": "1", "b": "2"}
    assert WebsocketRoutes("/{a}/{b}", named).handler_kwargs(params) == {"a": "1"}
    assert WebsocketRoutes("/{a}/{b}", anything).handler_kwargs(params) == params
    assert WebsocketRoutes("/{a}/{b}", none).handler_kwargs(params) == {}


def test_bad_path_fails_at_registration() -> None:
    with pytest.raises(ConfigurationError, match="starting with '/'"):
        WebsocketRoutes("chat", tag)
    with pytest.raises(ConfigurationError, match="Unknown converter"):
        NexiosApp().add_ws_route("/x/{id:number}", tag)


def test_middleware_must_be_async() -> None:
    def sync_middleware(ws: WebSocket, call_next: Any) -> None:
        pass

    with pytest.raises(ConfigurationError, match="async def middleware"):
        WebsocketRoutes("/ws", tag, middleware=[sync_middleware])
    with pytest.raises(ConfigurationError, match="takes a list"):
        WebsocketRoutes("/ws", tag, middleware=sync_middleware)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="async def middleware"):
        WSRouter(middleware=[object()])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="async def middleware"):
        NexiosApp().add_ws_middleware(sync_middleware)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- add_ws_route forms


def test_app_add_ws_route_both_forms() -> None:
    app = NexiosApp()
    route = WebsocketRoutes("/one", tag)
    assert app.add_ws_route(route) is route
    second = app.add_ws_route("/two", tag)
    assert isinstance(second, WebsocketRoutes)
    assert second.path == "/two"
    assert [r.path for r in app.ws_routes] == ["/one", "/two"]
    assert received(app, "/one") == "/one"
    assert received(app, "/two") == "/two"


def test_app_ws_route_decorator_and_direct_call() -> None:
    app = NexiosApp()

    @app.ws_route("/decorated")
    async def decorated(ws: WebSocket) -> None:
        await tag(ws)

    assert decorated.__name__ == "decorated"  # the decorator returns the function
    assert app.ws_route("/direct", tag) is tag
    assert received(app, "/decorated") == "/decorated"
    assert received(app, "/direct") == "/direct"


def test_ws_route_without_parentheses_fails_loudly() -> None:
    app = NexiosApp()
    with pytest.raises(ConfigurationError, match=r"write @ws_route\('/path'\)"):
        app.ws_route(tag)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: r.add_ws_route(WebsocketRoutes("/a", tag), tag),
            "takes a WebsocketRoutes alone",
        ),
        (lambda r: r.add_ws_route("/a"), r"needs a handler: add_ws_route\('/a', handler\)"),
        (lambda r: r.add_ws_route(tag), "takes a WebsocketRoutes or a path and a handler"),
        (lambda r: r.add_ws_route(WSRouter()), "use mount_ws_router"),
        (
            lambda r: r.add_ws_route("/a", WebsocketRoutes("/a", tag)),
            r"use app\.add_ws_route\(route\)",
        ),
        (lambda r: r.add_ws_route("/a", WSRouter()), "mount_ws_router"),
    ],
)
@pytest.mark.parametrize("registry", [NexiosApp, WSRouter])
def test_add_ws_route_misuse(registry: type, call: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call(registry())


def test_router_add_ws_route_both_forms() -> None:
    router = WSRouter(prefix="/ws")
    route = WebsocketRoutes("/one", tag)
    assert router.add_ws_route(route) is route
    router.add_ws_route("/two", tag)

    @router.ws_route("/three")
    async def three(ws: WebSocket) -> None:
        await tag(ws)

    router.ws_route("/four", tag)
    app = NexiosApp()
    app.mount_ws_router(router)
    assert [r.path for r in app.ws_routes] == ["/ws/one", "/ws/two", "/ws/three", "/ws/four"]
    for name in ("one", "two", "three", "four"):
        assert received(app, f"/ws/{name}") == f"/ws/{name}"


def test_router_routes_argument() -> None:
    router = WSRouter(prefix="/r", routes=[WebsocketRoutes("/a", tag)])
    app = NexiosApp()
    app.mount_ws_router(router)
    assert received(app, "/r/a") == "/r/a"
    with pytest.raises(ConfigurationError, match="takes WebsocketRoutes objects"):
        WSRouter(routes=[tag])  # type: ignore[list-item]


# --------------------------------------------------------------------------- mounting


def test_mount_with_explicit_prefix_overrides_the_router_prefix() -> None:
    router = WSRouter(prefix="/ws")
    router.add_ws_route("/chat", tag)
    app = NexiosApp()
    app.mount_ws_router(router, "/v2")
    assert [r.path for r in app.ws_routes] == ["/v2/chat"]
    assert received(app, "/v2/chat") == "/v2/chat"
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws/chat"):
            pass
    assert info.value.status_code == 403


def test_mount_without_prefix() -> None:
    router = WSRouter()
    router.add_ws_route("/chat", tag)
    app = NexiosApp()
    app.mount_ws_router(router)
    assert received(app, "/chat") == "/chat"


def test_same_router_mounted_twice() -> None:
    router = WSRouter(prefix="/a")
    router.add_ws_route("/x", tag)
    app = NexiosApp()
    app.mount_ws_router(router)
    app.mount_ws_router(router, "/b")
    assert received(app, "/a/x") == "/a/x"
    assert received(app, "/b/x") == "/b/x"


def test_routes_added_after_mounting_are_served() -> None:
    router = WSRouter(prefix="/ws")
    app = NexiosApp()
    app.mount_ws_router(router)
    router.add_ws_route("/late", tag)
    assert received(app, "/ws/late") == "/ws/late"


def test_nested_prefix_slashes_are_normalised() -> None:
    router = WSRouter(prefix="/ws/")
    router.add_ws_route("/", tag)
    app = NexiosApp()
    app.mount_ws_router(router)
    assert received(app, "/ws") == "/ws"


def test_mount_ws_router_rejects_other_things() -> None:
    app = NexiosApp()
    with pytest.raises(ConfigurationError, match="takes a WSRouter"):
        app.mount_ws_router(WebsocketRoutes("/a", tag))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        WSRouter(prefix="ws")
    router = WSRouter()
    router.add_ws_route("/a", tag)
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        app.mount_ws_router(router, "v1")


def test_router_middleware_wraps_only_its_routes() -> None:
    calls: list[str] = []

    async def mark(ws: WebSocket, call_next: Any) -> None:
        calls.append(ws.scope["path"])
        await call_next()

    router = WSRouter(prefix="/r", middleware=[mark])
    router.add_ws_route("/in", tag)
    app = NexiosApp()
    app.mount_ws_router(router)
    app.add_ws_route("/out", tag)
    received(app, "/r/in")
    received(app, "/out")
    assert calls == ["/r/in"]


def test_first_matching_route_wins() -> None:
    first = WebsocketRoutes("/items/{id:int}", tag)
    second = WebsocketRoutes("/items/{name}", tag)
    found = find_route([first, second], "/items/3")
    assert found is not None and found[0] is first and found[1] == {"id": 3}
    found = find_route([first, second], "/items/x")
    assert found is not None and found[0] is second and found[1] == {"name": "x"}
    assert find_route([first, second], "/nope") is None


def test_the_three_tutorial_methods_side_by_side() -> None:
    app = NexiosApp()

    @app.ws_route("/chat-direct")
    async def direct(ws: WebSocket) -> None:
        await tag(ws)

    app.add_ws_route(WebsocketRoutes("/chat", tag))
    router = WSRouter(prefix="/ws")
    router.add_ws_route("/chat", tag)
    router.add_ws_route("/notifications", tag)
    app.mount_ws_router(router)
    for path in ("/chat-direct", "/chat", "/ws/chat", "/ws/notifications"):
        assert received(app, path) == path


# --------------------------------------------------------------------------- path params


def test_path_params_reach_kwargs_ws_and_scope() -> None:
    app = NexiosApp()
    seen: dict[str, Any] = {}

    @app.ws_route("/rooms/{room:str}/{n:int}/{x:float}/{u:uuid}/{rest:path}")
    async def handler(ws: WebSocket, room: str, n: int, x: float, u: uuid.UUID, rest: str) -> None:
        seen.update(room=room, n=n, x=x, u=u, rest=rest)
        await echo_path(ws)

    u = uuid.uuid4()
    path = f"/rooms/r1/-5/2.5/{u}/a/b/c"
    with TestClient(app) as client, client.websocket_connect(path) as ws:
        reply = ws.receive_json()
    expected = {"room": "r1", "n": -5, "x": 2.5, "u": u, "rest": "a/b/c"}
    assert seen == expected
    for name, value in expected.items():
        assert type(seen[name]) is type(value)
    assert reply["url_path"] == path
    assert reply["path_params"] == {k: repr(v) for k, v in expected.items()}
    assert reply["scope_params"] == reply["path_params"]


def test_handler_without_param_names_still_sees_path_params() -> None:
    app = NexiosApp()
    app.add_ws_route("/items/{id:int}", echo_path)
    with TestClient(app) as client, client.websocket_connect("/items/7") as ws:
        reply = ws.receive_json()
    assert reply["path_params"] == {"id": "7"}


def test_converter_mismatch_is_refused_at_handshake() -> None:
    app = NexiosApp()
    app.add_ws_route("/items/{id:int}", echo_path)
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/items/abc"):
            pass
    assert info.value.status_code == 403


def test_url_of_mounted_route_is_the_full_path_with_query() -> None:
    router = WSRouter(prefix="/ws")
    router.add_ws_route("/chat/{room_id}", echo_path)
    app = NexiosApp()
    app.mount_ws_router(router)
    with TestClient(app) as client, client.websocket_connect("/ws/chat/r9?token=t") as ws:
        reply = ws.receive_json()
    assert reply["url_path"] == "/ws/chat/r9"
    assert reply["path_params"] == {"room_id": "'r9'"}


def test_router_prefix_params_reach_the_handler() -> None:
    async def handler(ws: WebSocket, **params: Any) -> None:
        await ws.accept()
        await ws.send_json(params)
        await ws.close()

    router = WSRouter(prefix="/org/{org:int}")
    router.add_ws_route("/room/{room}", handler)
    app = NexiosApp()
    app.mount_ws_router(router)
    with TestClient(app) as client, client.websocket_connect("/org/3/room/a") as ws:
        assert ws.receive_json() == {"org": 3, "room": "a"}
