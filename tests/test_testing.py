"""nexios.testing: TestClient and AsyncTestClient speak real ASGI messages, never hang."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.exceptions import WebSocketDisconnect
from nexios.testing import AsyncTestClient, TestClient, WebSocketDenied
from nexios.websockets.base import WebSocket

Message = dict[str, Any]


def make_app() -> NexiosApp:
    app = NexiosApp()

    @app.get("/hello/{name}")
    async def hello(request: Any, name: str) -> dict[str, str]:
        return {"hello": name}

    @app.ws_route("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                message = await ws.receive()
                if message.get("text") is not None:
                    await ws.send_text(message["text"])
                else:
                    await ws.send_bytes(message["bytes"])
        except WebSocketDisconnect as gone:
            app.state_closed = (gone.code, gone.reason)  # type: ignore[attr-defined]

    @app.ws_route("/info")
    async def info(ws: WebSocket) -> None:
        await ws.accept(subprotocol="v2", headers={"x-answer": "42"})
        await ws.send_json(
            {
                "path": ws.url.path,
                "query": ws.query_params.get("q"),
                "header": ws.headers.get("x-token"),
                "subprotocols": ws.subprotocols,
                "client": list(ws.client or ()),
                "host": ws.url.netloc,
            }
        )
        await ws.close(4001, "done")

    @app.ws_route("/silent")
    async def silent(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()

    @app.ws_route("/deny")
    async def deny(ws: WebSocket) -> None:
        await ws.deny(429, "slow down")

    @app.ws_route("/json")
    async def json_echo(ws: WebSocket) -> None:
        await ws.accept()
        data = await ws.receive_json(mode="binary")
        await ws.send_json(data, mode="binary")

    return app


# --------------------------------------------------------------------------- sync client


def test_http_calls() -> None:
    with TestClient(make_app()) as client:
        response = client.get("/hello/ada")
        assert response.status_code == 200
        assert response.json() == {"hello": "ada"}
        assert client.get("/missing").status_code == 404


def test_text_bytes_and_json_frames() -> None:
    with TestClient(make_app()) as client:
        with client.websocket_connect("/echo") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            ws.send_bytes(b"\x00\x01")
            assert ws.receive_bytes() == b"\x00\x01"
            ws.send_json({"a": 1})
            assert ws.receive_json() == {"a": 1}
            ws.send({"type": "websocket.receive", "text": "raw"})
            assert ws.receive() == {"type": "websocket.send", "text": "raw"}
        with client.websocket_connect("/json") as ws:
            ws.send_json([1, 2], mode="binary")
            assert ws.receive_json(mode="binary") == [1, 2]


def test_close_code_is_reported() -> None:
    with TestClient(make_app()) as client, client.websocket_connect("/info") as ws:
        ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert (info.value.code, info.value.reason) == (4001, "done")
        assert ws.close_code == 4001
        assert ws.wait_closed() == 4001  # stays closed for later calls


def test_client_close_reaches_the_app_with_its_code() -> None:
    app = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/echo") as ws:
            ws.send_text("x")
            ws.receive_text()
            ws.close(4321, "leaving")
        assert app.state_closed == (4321, "leaving")  # type: ignore[attr-defined]
        with client.websocket_connect("/echo"):
            pass  # leaving the block disconnects with 1000
        assert app.state_closed == (1000, "")  # type: ignore[attr-defined]


def test_handshake_details() -> None:
    with TestClient(make_app()) as client:
        with client.websocket_connect(
            "/info?q=search", subprotocols=["v1", "v2"], headers={"X-Token": "t"}
        ) as ws:
            assert ws.accepted_subprotocol == "v2"
            assert (b"x-answer", b"42") in ws.accepted_headers
            assert ws.receive_json() == {
                "path": "/info",
                "query": "search",
                "header": "t",
                "subprotocols": ["v1", "v2"],
                "client": ["testclient", 50000],
                "host": "testserver",
            }


def test_refused_handshakes() -> None:
    with TestClient(make_app()) as client:
        with pytest.raises(WebSocketDenied) as info:
            with client.websocket_connect("/nowhere"):
                pass
        assert info.value.status_code == 403
        assert isinstance(info.value, WebSocketDisconnect)
        with pytest.raises(WebSocketDenied) as info:
            with client.websocket_connect("/deny"):
                pass
        assert (info.value.status_code, info.value.body) == (429, b"slow down")


def test_waiting_for_a_message_that_never_comes_times_out() -> None:
    with TestClient(make_app(), timeout=0.2) as client, client.websocket_connect("/silent") as ws:
        with pytest.raises(
            TimeoutError, match=r"No message from the app within 0\.2s on '/silent'"
        ):
            ws.receive_text()


def test_wrong_frame_kind_is_an_assertion() -> None:
    with TestClient(make_app()) as client, client.websocket_connect("/echo") as ws:
        ws.send_bytes(b"x")
        with pytest.raises(AssertionError, match="Expected a text frame"):
            ws.receive_text()
        ws.send_text("x")
        with pytest.raises(AssertionError, match="Expected a binary frame"):
            ws.receive_bytes()


def test_an_app_that_never_finishes_fails_the_test() -> None:
    async def stubborn(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()  # ignores the disconnect; cancelled by the client

    client = TestClient(stubborn, timeout=0.2)
    try:
        with pytest.raises(AssertionError, match=r"did not finish within 0\.2s"):
            with client.websocket_connect("/x"):
                pass
    finally:
        client.close()


def test_an_exception_in_a_raw_app_reaches_the_test() -> None:
    async def broken(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        raise LookupError("raw app failed")

    client = TestClient(broken)
    try:
        with pytest.raises(LookupError, match="raw app failed"):
            with client.websocket_connect("/x"):
                pass
    finally:
        client.close()


def test_without_with_no_lifespan_and_close_stops_the_thread() -> None:
    started: list[str] = []
    app = make_app()
    app.on_startup(lambda: started.append("up"))
    client = TestClient(app)
    assert client.get("/hello/x").json() == {"hello": "x"}
    with client.websocket_connect("/echo") as ws:
        ws.send_text("x")
        assert ws.receive_text() == "x"
    assert started == []
    thread = client._thread
    assert thread is not None and thread.is_alive()
    client.close()
    assert not thread.is_alive()


def test_run_executes_on_the_app_loop() -> None:
    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    with TestClient(make_app()) as client:
        assert client.run(which_loop()) is client._loop


# --------------------------------------------------------------------------- async client


@pytest.mark.anyio
async def test_async_client_http_and_websocket() -> None:
    async with AsyncTestClient(make_app()) as client:
        response = await client.get("/hello/ada")
        assert response.json() == {"hello": "ada"}
        async with client.websocket_connect("/echo") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
            await ws.send_json({"a": [1]})
            assert await ws.receive_json() == {"a": [1]}
        async with client.websocket_connect("/info") as ws:
            await ws.receive_json()
            assert await ws.wait_closed() == 4001
            assert ws.close_code == 4001
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket_connect("/nowhere"):
                pass
        assert info.value.status_code == 403
