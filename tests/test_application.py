"""nexios.application: ASGI dispatch, lifespan and hooks, WebSocket middleware."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.routing import WebsocketRoutes
from nexios.testing import AsyncTestClient, TestClient, WebSocketDenied
from nexios.websockets.base import WebSocket

Message = dict[str, Any]


async def drive_lifespan(
    app: NexiosApp, *incoming: str
) -> tuple[list[Message], BaseException | None]:
    """Feed lifespan messages to ``app``; return what it sent and what it raised."""
    inbox = [{"type": name} for name in incoming]
    sent: list[Message] = []

    async def receive() -> Message:
        assert inbox, "the app asked for more lifespan messages than the test has"
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    error: BaseException | None = None
    with anyio.fail_after(5):
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        except Exception as raised:
            error = raised
    return sent, error


# --------------------------------------------------------------------------- lifespan


def test_hooks_and_lifespan_run_in_order() -> None:
    calls: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: NexiosApp) -> AsyncIterator[None]:
        calls.append("lifespan enter")
        app.state_value = "ready"  # type: ignore[attr-defined]
        yield
        calls.append("lifespan exit")

    app = NexiosApp(
        lifespan=lifespan,
        on_startup=[lambda: calls.append("ctor startup")],
        on_shutdown=[lambda: calls.append("ctor shutdown")],
    )

    @app.on_startup
    async def start() -> None:
        calls.append("async startup")

    @app.on_shutdown
    def stop() -> None:
        calls.append("sync shutdown")

    assert start.__name__ == "start" and stop.__name__ == "stop"  # decorators return the hook

    @app.get("/state")
    async def state(request: Any) -> dict[str, str]:
        return {"value": app.state_value}  # type: ignore[attr-defined]

    with TestClient(app) as client:
        assert calls == ["ctor startup", "async startup", "lifespan enter"]
        assert client.get("/state").json() == {"value": "ready"}
    assert calls[3:] == ["lifespan exit", "ctor shutdown", "sync shutdown"]


@pytest.mark.anyio
async def test_lifespan_messages() -> None:
    app = NexiosApp()
    sent, error = await drive_lifespan(app, "lifespan.startup", "lifespan.shutdown")
    assert error is None
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


@pytest.mark.anyio
async def test_startup_failure_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = NexiosApp()

    @app.on_startup
    def broken() -> None:
        raise RuntimeError("no database")

    sent, error = await drive_lifespan(app, "lifespan.startup")
    assert sent == [{"type": "lifespan.startup.failed", "message": "RuntimeError('no database')"}]
    assert isinstance(error, RuntimeError)
    assert "Application startup failed" in caplog.text


@pytest.mark.anyio
async def test_lifespan_enter_failure_is_a_startup_failure() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: NexiosApp) -> AsyncIterator[None]:
        raise OSError("port busy")
        yield

    sent, _ = await drive_lifespan(NexiosApp(lifespan=lifespan), "lifespan.startup")
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "port busy" in sent[0]["message"]


@pytest.mark.anyio
async def test_shutdown_failure_is_reported_and_every_step_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: NexiosApp) -> AsyncIterator[None]:
        yield
        ran.append("lifespan exit")
        raise RuntimeError("exit broke")

    def second() -> None:
        ran.append("hook")
        raise ValueError("hook broke")

    app = NexiosApp(lifespan=lifespan, on_shutdown=[second, lambda: ran.append("last hook")])
    sent, error = await drive_lifespan(app, "lifespan.startup", "lifespan.shutdown")
    assert error is None
    assert sent[0] == {"type": "lifespan.startup.complete"}
    assert sent[1]["type"] == "lifespan.shutdown.failed"
    assert "exit broke" in sent[1]["message"]
    assert ran == ["lifespan exit", "hook", "last hook"]
    assert "Application shutdown failed" in caplog.text
    assert "hook broke" in caplog.text  # the second error is logged, not lost


@pytest.mark.anyio
async def test_lifespan_must_start_with_startup() -> None:
    sent, error = await drive_lifespan(NexiosApp(), "lifespan.shutdown")
    assert sent == []
    assert isinstance(error, ConfigurationError)
    assert "'lifespan.startup' message first" in str(error)


def test_testclient_surfaces_startup_failure_without_leaking_its_thread() -> None:
    import threading

    app = NexiosApp(on_startup=[lambda: 1 / 0])
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="Lifespan startup failed: ZeroDivisionError"):
        with TestClient(app):
            pass
    after = {t.ident for t in threading.enumerate() if t.name == "nexios-testclient"}
    assert after <= before


@pytest.mark.anyio
async def test_async_testclient_runs_the_lifespan() -> None:
    calls: list[str] = []
    app = NexiosApp(
        on_startup=[lambda: calls.append("up")], on_shutdown=[lambda: calls.append("down")]
    )
    async with AsyncTestClient(app):
        assert calls == ["up"]
    assert calls == ["up", "down"]


# --------------------------------------------------------------------------- dispatch


@pytest.mark.anyio
async def test_unsupported_scope_type() -> None:
    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    with pytest.raises(ConfigurationError, match="Unsupported ASGI scope type 'email'"):
        await NexiosApp()({"type": "email"}, receive, send)


def test_http_and_websocket_side_by_side() -> None:
    app = NexiosApp()

    @app.get("/health")
    async def health(request: Any) -> dict[str, bool]:
        return {"ok": True}

    @app.post("/echo")
    async def echo(request: Any) -> Any:
        return await request.json()

    @app.ws_route("/ws")
    async def ws_echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())

    with TestClient(app) as client:
        assert client.get("/health").json() == {"ok": True}
        assert client.post("/echo", json={"a": 1}).json() == {"a": 1}
        assert client.get("/ws").status_code == 404  # a WebSocket route is not an HTTP one
        with client.websocket_connect("/ws") as ws:
            ws.send_text("x")
            assert ws.receive_text() == "x"


def test_channels_url_is_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="Unknown channels URL 'bogus://x'"):
        NexiosApp(channels_url="bogus://x")
    assert NexiosApp(channels_url="memory://").channels.settings.channels_url == "memory://"


# --------------------------------------------------------------------------- middleware


async def hello(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"user": ws.scope.get("user"), "order": ws.scope.get("order", [])})
    await ws.close()


def token_of(ws: WebSocket) -> str | None:
    value: str | None = ws.query_params.get("token")
    return value


async def auth(ws: WebSocket, call_next: Any) -> None:
    if token_of(ws) != "secret":
        await ws.close()  # before accept: the handshake is refused with 403
        return
    ws.scope["user"] = "ada"
    await call_next()


def test_middleware_rejects_before_accept_with_403() -> None:
    handled: list[str] = []

    async def handler(ws: WebSocket) -> None:
        handled.append("called")
        await hello(ws)

    app = NexiosApp()
    app.add_ws_middleware(auth)
    app.add_ws_route("/ws", handler)
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            with client.websocket_connect("/ws?token=wrong"):
                pass
        assert info.value.status_code == 403
        assert handled == []
        with client.websocket_connect("/ws?token=secret") as ws:
            assert ws.receive_json() == {"user": "ada", "order": []}
    assert handled == ["called"]


def test_middleware_can_deny_with_another_status() -> None:
    async def deny(ws: WebSocket, call_next: Any) -> None:
        await ws.deny(401, "log in first")

    app = NexiosApp(ws_middleware=[deny])
    app.add_ws_route("/ws", hello)
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 401
    assert info.value.body == b"log in first"


def test_middleware_that_raises_before_accept_refuses_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ws: WebSocket, call_next: Any) -> None:
        raise PermissionError("no entry")

    app = NexiosApp(ws_middleware=[broken])
    app.add_ws_route("/ws", hello)
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 403
    assert "handshake refused (403)" in caplog.text
    assert "PermissionError: no entry" in caplog.text


def test_app_middleware_runs_before_route_middleware_in_order() -> None:
    def tagger(name: str) -> Any:
        async def middleware(ws: WebSocket, call_next: Any) -> None:
            ws.scope.setdefault("order", []).append(name)
            await call_next()

        return middleware

    app = NexiosApp(ws_middleware=[tagger("ctor")])
    app.add_ws_middleware(tagger("added"))
    app.add_ws_route(WebsocketRoutes("/ws", hello, middleware=[tagger("route")]))
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["order"] == ["ctor", "added", "route"]


def test_middleware_sees_the_handler_crash(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def observer(ws: WebSocket, call_next: Any) -> None:
        try:
            await call_next()
        except RuntimeError as error:
            seen.append(str(error))
            raise

    async def crash(ws: WebSocket) -> None:
        await ws.accept()
        raise RuntimeError("boom")

    app = NexiosApp(ws_middleware=[observer])
    app.add_ws_route("/ws", crash)
    with caplog.at_level(logging.ERROR), TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            assert ws.wait_closed() == 1011
    assert seen == ["boom"]
    assert caplog.text.count("Traceback") == 1
