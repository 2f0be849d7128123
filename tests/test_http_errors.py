"""nexios.http.errors: exception handlers for HTTP and WebSocket handshakes; server errors."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.exceptions import HTTPException as StarletteHTTPException

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError, HTTPException
from nexios.http import JSONResponse, PlainTextResponse, Request, Response
from nexios.middleware import CallNext
from nexios.testing import TestClient, WebSocketDenied
from nexios.websockets import WebSocket


class OutOfStock(Exception):
    def __init__(self, item: str) -> None:
        super().__init__(item)
        self.item = item


class Discontinued(OutOfStock):
    pass


def make_app() -> NexiosApp:
    app = NexiosApp()

    @app.get("/stock/{item}")
    async def stock(item: str) -> None:
        if item == "old":
            raise Discontinued(item)
        raise OutOfStock(item)

    @app.get("/starlette-404")
    async def starlette_404() -> None:
        raise StarletteHTTPException(404, "no such page")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"x-why": "tea"})

    @app.get("/crash")
    async def crash() -> None:
        raise ZeroDivisionError("secret internals")

    @app.post("/only-post")
    async def only_post() -> None:
        return None

    return app


def test_starlette_and_nexios_http_exceptions_become_their_status() -> None:
    with TestClient(make_app()) as client:
        starlette = client.get("/starlette-404")
        teapot = client.get("/teapot")
    assert starlette.status_code == 404 and starlette.json() == {"detail": "no such page"}
    assert teapot.status_code == 418 and teapot.headers["x-why"] == "tea"
    assert teapot.json() == {"detail": "short and stout"}


def test_handlers_by_class_nearest_in_the_mro_wins() -> None:
    app = make_app()

    @app.exception_handler(OutOfStock)
    async def out_of_stock(request: Request, exc: OutOfStock) -> Response:
        return JSONResponse({"out_of_stock": exc.item, "path": request.url.path}, 409)

    def discontinued(request: Request, exc: Discontinued) -> dict[str, Any]:  # sync: a thread
        return {"discontinued": exc.item, "thread": threading.current_thread().name}

    app.add_exception_handler(Discontinued, discontinued)
    with TestClient(app) as client:
        out = client.get("/stock/tea")
        old = client.get("/stock/old")
    assert out.status_code == 409
    assert out.json() == {"out_of_stock": "tea", "path": "/stock/tea"}
    assert old.status_code == 200 and old.json()["discontinued"] == "old"
    assert old.json()["thread"] != threading.current_thread().name


def test_handlers_by_status_cover_unknown_paths_methods_and_http_exceptions() -> None:
    app = make_app()

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"nothing at {request.url.path}", 404)

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: HTTPException) -> Response:
        return PlainTextResponse("wrong method", 405, headers=exc.headers)

    with TestClient(app) as client:
        missing = client.get("/nowhere")
        starlette = client.get("/starlette-404")
        method = client.get("/only-post")
        teapot = client.get("/teapot")  # no handler for 418: the default answer
    assert missing.text == "nothing at /nowhere" and missing.status_code == 404
    assert starlette.text == "nothing at /starlette-404"
    assert method.text == "wrong method" and method.headers["allow"] == "POST"
    assert teapot.json() == {"detail": "short and stout"}


def test_unhandled_exception_is_raised_in_the_test_by_default() -> None:
    with TestClient(make_app()) as client:
        with pytest.raises(ZeroDivisionError, match="secret internals"):
            client.get("/crash")
        assert client.get("/teapot").status_code == 418  # the client is still usable


def test_without_raising_the_client_sees_the_500() -> None:
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        response = client.get("/crash")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert "secret" not in response.text


@pytest.mark.parametrize("key", [500, Exception])
def test_a_500_handler_answers_then_the_error_still_reaches_the_server(key: Any) -> None:
    app = make_app()
    seen: list[BaseException] = []

    @app.exception_handler(key)
    async def server_error(request: Request, exc: Exception) -> Response:
        seen.append(exc)
        return JSONResponse({"oops": type(exc).__name__}, 500)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/crash")
        assert response.json() == {"oops": "ZeroDivisionError"}
        assert client.get("/teapot").status_code == 418  # not an Exception handler's job
    with TestClient(app) as client:
        with pytest.raises(ZeroDivisionError):
            client.get("/crash")
    assert len(seen) == 2


def test_an_error_in_middleware_is_a_500_too() -> None:
    app = make_app()

    @app.middleware("http")
    async def broken(request: Request, call_next: CallNext) -> Response:
        raise RuntimeError("middleware bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/teapot").status_code == 500
    with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="middleware bug"):
            client.get("/teapot")


def test_a_failing_500_handler_still_gives_a_500() -> None:
    app = make_app()

    @app.exception_handler(500)
    async def broken(request: Request, exc: Exception) -> Response:
        raise ValueError("handler bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/crash")
    assert response.status_code == 500 and response.json() == {"detail": "Internal Server Error"}


def test_a_handler_returning_none_is_a_clear_error() -> None:
    app = make_app()

    @app.exception_handler(OutOfStock)
    async def forgetful(request: Request, exc: Exception) -> None:
        return None

    with TestClient(app) as client:
        with pytest.raises(TypeError, match="returned None; return a Response"):
            client.get("/stock/x")


def test_registration_mistakes() -> None:
    app = NexiosApp()

    async def handler(request: Request, exc: Exception) -> Response:
        return Response()

    for key in ("404", 99, 600, True, ValueError("x"), KeyboardInterrupt):
        with pytest.raises(ConfigurationError, match="Exception subclass or an HTTP status"):
            app.add_exception_handler(key, handler)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be callable"):
        app.add_exception_handler(404, "handler")  # type: ignore[arg-type]
    app2 = NexiosApp(exception_handlers={404: handler, KeyError: handler})
    assert app2.exception_handlers.find(KeyError()) is handler
    assert app2.exception_handlers.find(HTTPException(404)) is handler


# --------------------------------------------------------------------- WebSocket handshakes


class NotAMember(Exception):
    pass


def make_ws_app() -> NexiosApp:
    app = NexiosApp()

    @app.ws_route("/rooms/{room}")
    async def room(ws: WebSocket, room: str) -> None:
        if room == "secret":
            raise NotAMember(room)
        if room == "gone":
            raise HTTPException(410, "room closed")
        if room == "after":
            await ws.accept()
            raise NotAMember(room)
        await ws.accept()
        await ws.send_text(room)

    return app


def test_http_exception_before_accept_refuses_the_handshake_with_its_status() -> None:
    with TestClient(make_ws_app()) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/rooms/gone"):
                pass
    assert denied.value.status_code == 410
    assert b"room closed" in denied.value.body


def test_exception_handler_answers_a_websocket_handshake() -> None:
    app = make_ws_app()

    @app.exception_handler(NotAMember)
    async def not_a_member(conn: Any, exc: NotAMember) -> Response:
        assert isinstance(conn, WebSocket)
        return PlainTextResponse(f"not a member of {exc}", 403)

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/rooms/secret"):
                pass
        assert denied.value.status_code == 403
        assert denied.value.body == b"not a member of secret"
        with client.websocket_connect("/rooms/lobby") as ws:
            assert ws.receive_text() == "lobby"
        # After accept() there is no handshake to refuse: the usual 1011 close.
        with client.websocket_connect("/rooms/after") as ws:
            assert ws.wait_closed() == 1011


def test_websocket_handler_may_refuse_itself() -> None:
    app = make_ws_app()

    @app.exception_handler(NotAMember)
    async def deny(ws: WebSocket, exc: NotAMember) -> None:
        await ws.deny(451, "unavailable")

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/rooms/secret"):
                pass
    assert denied.value.status_code == 451
