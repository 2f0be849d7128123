"""nexios.middleware: ASGI middleware around HTTP and WebSocket alike, function middleware."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.http import JSONResponse, PlainTextResponse, Request, Response, StreamingResponse
from nexios.http.datastructures import Message, Receive, Scope, Send
from nexios.middleware import CallNext, Middleware
from nexios.testing import TestClient, WebSocketDenied
from nexios.websockets import WebSocket


class Tag:
    """A pure ASGI middleware: records every scope type, tags HTTP responses."""

    def __init__(self, app: Any, name: str, seen: list[str]) -> None:
        self.app = app
        self.name = name
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(f"{self.name}:{scope['type']}")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-tag", self.name.encode())]
            await send(message)

        await self.app(scope, receive, tagged)


def make_app(seen: list[str]) -> NexiosApp:
    app = NexiosApp()

    @app.get("/hello")
    async def hello(request: Request) -> dict[str, Any]:
        return {"hello": "world", "seen": list(seen)}

    @app.ws_route("/ws")
    async def ws_echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())

    return app


def test_asgi_middleware_wraps_http_websocket_and_lifespan_last_added_outermost() -> None:
    seen: list[str] = []
    app = make_app(seen)
    app.add_middleware(Tag, name="inner", seen=seen)
    app.add_middleware(Tag, name="outer", seen=seen)
    with TestClient(app) as client:
        assert seen == ["outer:lifespan", "inner:lifespan"]
        response = client.get("/hello")
        assert response.headers.get_list("x-tag") == ["inner", "outer"]
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
    assert seen[2:] == ["outer:http", "inner:http", "outer:websocket", "inner:websocket"]


def test_middleware_from_the_constructor_first_is_outermost() -> None:
    seen: list[str] = []
    app = NexiosApp(middleware=[Middleware(Tag, name="a", seen=seen), Middleware(Tag, "b", seen)])

    @app.get("/")
    async def index() -> str:
        return "ok"

    with TestClient(app) as client:
        assert client.get("/").headers.get_list("x-tag") == ["b", "a"]
    assert seen[-2:] == ["a:http", "b:http"]
    cls, args, kwargs = Middleware(Tag, "b", seen)
    assert (cls, args, kwargs) == (Tag, ("b", seen), {})
    with pytest.raises(ConfigurationError, match="takes Middleware"):
        NexiosApp(middleware=[Tag])  # type: ignore[list-item]


def test_gzip_middleware_compresses_http() -> None:
    app = NexiosApp()

    @app.get("/big")
    async def big() -> str:
        return "x" * 5000

    app.add_middleware(GZipMiddleware, minimum_size=500)
    with TestClient(app) as client:
        response = client.get("/big", headers={"accept-encoding": "gzip"})
        raw = client.get("/big", headers={"accept-encoding": "identity"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "x" * 5000  # httpx decompressed it
    assert int(response.headers["content-length"]) < 200
    assert "content-encoding" not in raw.headers and raw.text == "x" * 5000


def test_gzip_compresses_a_stream_as_it_goes() -> None:
    app = NexiosApp()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 1000

        return StreamingResponse(chunks(), media_type="text/plain")

    app.add_middleware(GZipMiddleware, minimum_size=10)
    with TestClient(app) as client:
        with client.stream("GET", "/stream", headers={"accept-encoding": "gzip"}) as response:
            compressed = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed) == b"y" * 10_000


def test_trusted_host_middleware_guards_http_and_websocket() -> None:
    app = make_app([])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["good.example"])
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/hello").status_code == 400
        with pytest.raises(WebSocketDenied):
            with client.websocket_connect("/ws"):
                pass
    with TestClient(app, base_url="http://good.example") as client:
        assert client.get("/hello").status_code == 200
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"


def test_cors_in_one_line() -> None:
    app = NexiosApp()

    @app.post("/api/items")
    async def create(request: Request) -> dict[str, Any]:
        return {"created": await request.json()}

    app.add_cors(["https://app.example"], allow_headers=["content-type"])
    origin = {"origin": "https://app.example"}
    with TestClient(app) as client:
        preflight = client.options(
            "/api/items",
            headers={**origin, "access-control-request-method": "POST"},
        )
        created = client.post("/api/items", json={"a": 1}, headers=origin)
        stranger = client.options(
            "/api/items",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        plain = client.post("/api/items", json={"a": 2}, headers={"origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert created.json() == {"created": {"a": 1}}
    assert created.headers["access-control-allow-origin"] == "https://app.example"
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_cors_needs_origins() -> None:
    with pytest.raises(ConfigurationError, match="needs the origins"):
        NexiosApp().add_cors()


def test_no_cors_preflight_is_405() -> None:
    app = NexiosApp()

    @app.post("/api")
    async def api() -> None:
        return None

    with TestClient(app) as client:
        response = client.options("/api", headers={"origin": "https://x.example"})
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_function_middleware_changes_the_response_and_sees_the_request() -> None:
    app = NexiosApp()
    order: list[str] = []

    @app.middleware("http")
    async def first(request: Request, call_next: CallNext) -> Response:
        order.append("first in")
        request.state.user = "ada"
        request.state.link = str(request.url_for("who"))  # before routing: through the app
        response = await call_next(request)
        response.headers["x-first"] = "1"
        order.append("first out")
        return response

    @app.middleware("http")
    async def second(request: Request, call_next: CallNext) -> Response:
        order.append("second in")
        if request.url.path == "/blocked":
            return PlainTextResponse("no", 403)
        response = await call_next(request)
        order.append("second out")
        return response

    @app.get("/who")
    async def who(request: Request) -> dict[str, str]:
        order.append("handler")
        return {"user": request.state.user, "link": request.state.link}

    with TestClient(app) as client:
        response = client.get("/who")
        assert response.json() == {"user": "ada", "link": "http://testserver/who"}
        assert response.headers["x-first"] == "1"
        # The last added is the outermost.
        assert order == ["second in", "first in", "handler", "first out", "second out"]
        blocked = client.get("/blocked")
    assert blocked.status_code == 403 and blocked.text == "no"


def test_function_middleware_reading_the_body_hands_it_on() -> None:
    app = NexiosApp()

    @app.middleware("http")
    async def audit(request: Request, call_next: CallNext) -> Response:
        body = await request.json()
        response = await call_next(request)
        response.headers["x-audited"] = str(body["n"])
        return response

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return await request.json()

    with TestClient(app) as client:
        response = client.post("/echo", json={"n": 7})
    assert response.json() == {"n": 7}
    assert response.headers["x-audited"] == "7"


def test_function_middleware_passes_a_stream_through_as_it_is_produced() -> None:
    app = NexiosApp()
    produced: list[int] = []
    may_continue = asyncio.Event()

    @app.middleware("http")
    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            produced.append(1)
            yield b"first\n"
            await may_continue.wait()
            produced.append(2)
            yield b"second\n"

        return StreamingResponse(chunks())

    with TestClient(app) as client:
        with client.stream("GET", "/stream") as response:
            lines = response.iter_lines()
            assert next(lines) == "first"
            assert produced == [1]  # the second chunk is not made before it is needed
            client.run(_set(may_continue))
            assert next(lines) == "second"


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_function_middleware_sees_exceptions_of_the_app() -> None:
    app = NexiosApp()
    caught: list[str] = []

    @app.middleware("http")
    async def guard(request: Request, call_next: CallNext) -> Response:
        try:
            return await call_next(request)
        except LookupError as error:
            caught.append(repr(error))
            return JSONResponse({"error": "lookup"}, 409)

    @app.get("/boom")
    async def boom() -> None:
        raise KeyError("k")

    with TestClient(app) as client:
        response = client.get("/boom")
    assert response.status_code == 409 and caught == ["KeyError('k')"]


def test_function_middleware_mistakes_are_clear() -> None:
    app = NexiosApp()

    @app.middleware("http")
    async def forgetful(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return None  # type: ignore[return-value]

    @app.get("/")
    async def index() -> str:
        return "ok"

    with TestClient(app) as client:
        with pytest.raises(TypeError, match="returned None; return the response of"):
            client.get("/")
    with pytest.raises(ConfigurationError, match="function middleware is for 'http'"):
        app.middleware("websocket")


def test_middleware_cannot_be_added_once_serving() -> None:
    app = make_app([])
    with TestClient(app) as client:
        client.get("/hello")
        with pytest.raises(ConfigurationError, match="after the app started serving"):
            app.add_middleware(GZipMiddleware)
    with pytest.raises(ConfigurationError, match="takes a middleware class"):
        NexiosApp().add_middleware("GZipMiddleware")  # type: ignore[arg-type]


def test_websocket_through_function_middleware_is_untouched() -> None:
    app = make_app([])
    calls: list[str] = []

    @app.middleware("http")
    async def only_http(request: Request, call_next: CallNext) -> Response:
        calls.append(request.url.path)
        return await call_next(request)

    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("x")
            assert ws.receive_text() == "x"
        client.get("/hello")
    assert calls == ["/hello"]
