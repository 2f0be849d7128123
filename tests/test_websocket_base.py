"""nexios.websockets.base and the app's WebSocket lifecycle: states, misuse, close codes.

Three levels: the ``WebSocket`` object against a scripted ASGI peer (exact messages),
the app's handling of handlers that crash, return or lose their client (exact messages
plus the log records users see), and the same endings under uvicorn over TCP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nexios import NexiosApp
from nexios.exceptions import (
    InvalidJSONError,
    WebSocketDisconnect,
    WebSocketError,
    WebSocketMessageTypeError,
    WebSocketStateError,
)
from nexios.limits import Limits
from nexios.testing import AsyncTestClient
from nexios.websockets.base import WebSocket, WebSocketState
from tests.support.server import Server, serve

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
CONNECT: Message = {"type": "websocket.connect"}
_TIMEOUT = 5.0


def text(data: str) -> Message:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> Message:
    return {"type": "websocket.receive", "bytes": data}


def disconnect(code: int = 1000, reason: str = "") -> Message:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


class Peer:
    """The server side of ASGI, scripted: what the app will receive, what it sent."""

    def __init__(self, *incoming: Message) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        for message in incoming:
            self.inbox.put_nowait(message)
        self.sent: list[Message] = []
        self.waiting = asyncio.Event()
        self.fail_sends: BaseException | None = None

    async def receive(self) -> Message:
        if self.inbox.empty():
            self.waiting.set()
        try:
            async with asyncio.timeout(_TIMEOUT):
                return await self.inbox.get()
        except TimeoutError:
            raise AssertionError("the app waited for a message the test never sent") from None

    async def send(self, message: Message) -> None:
        if self.fail_sends is not None:
            raise self.fail_sends
        self.sent.append(message)

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]

    def closes(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "websocket.close"]


def scope(path: str = "/ws", **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        **extra,
    }


def socket(*incoming: Message, **scope_extra: Any) -> tuple[WebSocket, Peer]:
    peer = Peer(*incoming)
    return WebSocket(scope(**scope_extra), peer.receive, peer.send), peer


async def accepted(*incoming: Message) -> tuple[WebSocket, Peer]:
    ws, peer = socket(CONNECT, *incoming)
    await ws.accept()
    return ws, peer


async def run_app(app: NexiosApp, path: str, *incoming: Message) -> Peer:
    """Run one WebSocket connection through ``app``; return what it sent."""
    peer = Peer(*incoming)
    with anyio.fail_after(_TIMEOUT):
        await app(scope(path), peer.receive, peer.send)
    return peer


# =========================================================================== the object


async def test_needs_a_websocket_scope() -> None:
    peer = Peer()
    with pytest.raises(WebSocketStateError, match="needs an ASGI 'websocket' scope, got 'http'"):
        WebSocket({"type": "http"}, peer.receive, peer.send)


async def test_accept_sends_subprotocol_and_headers() -> None:
    ws, peer = socket(CONNECT)
    assert ws.connection_state is WebSocketState.CONNECTING
    await ws.accept("chat.v1", headers={"X-Server": "nexios"})
    assert ws.connection_state is WebSocketState.CONNECTED
    assert peer.sent == [
        {
            "type": "websocket.accept",
            "subprotocol": "chat.v1",
            "headers": [(b"x-server", b"nexios")],
        }
    ]


async def test_accept_twice_says_it_may_be_called_once() -> None:
    ws, _ = await accepted()
    with pytest.raises(WebSocketStateError, match="may be called only once"):
        await ws.accept()


async def test_accept_when_the_client_already_left() -> None:
    ws, _ = socket(disconnect(1001))
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.accept()
    assert info.value.code == 1001
    assert ws.connection_state is WebSocketState.DISCONNECTED


async def test_unexpected_first_message() -> None:
    ws, _ = socket(text("hi"))
    with pytest.raises(WebSocketStateError, match=r"'websocket\.connect' message first"):
        await ws.accept()


@pytest.mark.parametrize("method", ["receive", "receive_text", "receive_bytes", "receive_json"])
async def test_receive_before_accept_says_call_accept(method: str) -> None:
    ws, peer = socket(CONNECT, text("hi"))
    with pytest.raises(WebSocketStateError, match=r"call `await ws\.accept\(\)` first") as info:
        await getattr(ws, method)()
    assert isinstance(info.value, RuntimeError)
    assert peer.sent == []


@pytest.mark.parametrize(
    ("method", "arg"),
    [("send_text", "x"), ("send_bytes", b"x"), ("send_json", {}), ("send", text("x"))],
)
async def test_send_before_accept_says_call_accept(method: str, arg: Any) -> None:
    ws, peer = socket(CONNECT)
    if method == "send":
        arg = {"type": "websocket.send", "text": "x"}
    with pytest.raises(WebSocketStateError, match=r"call `await ws\.accept\(\)` first"):
        await getattr(ws, method)(arg)
    assert peer.sent == []


@pytest.mark.parametrize(
    ("method", "arg"),
    [("send_text", "x"), ("send_bytes", b"x"), ("send_json", {}), ("send", None)],
)
async def test_send_after_close_says_send_before_closing(method: str, arg: Any) -> None:
    ws, peer = await accepted()
    await ws.close()
    if method == "send":
        arg = {"type": "websocket.send", "text": "x"}
    with pytest.raises(WebSocketStateError, match="already closed by the application") as info:
        await getattr(ws, method)(arg)
    assert "Send everything before calling close()" in str(info.value)
    assert peer.closes() == [{"type": "websocket.close", "code": 1000, "reason": ""}]


async def test_receive_after_close_says_return_instead() -> None:
    ws, _ = await accepted()
    await ws.close(4000, "bye")
    with pytest.raises(WebSocketStateError, match="closed by the application") as info:
        await ws.receive_text()
    assert "close code 4000" in str(info.value)
    assert "Return from the handler" in str(info.value)


async def test_close_is_idempotent_and_records_the_code() -> None:
    ws, peer = await accepted()
    await ws.close(4001, "go away")
    await ws.close()
    await ws.close(1011)
    assert peer.closes() == [{"type": "websocket.close", "code": 4001, "reason": "go away"}]
    assert (ws.close_code, ws.close_reason) == (4001, "go away")
    assert ws.connection_state is WebSocketState.CLOSED


async def test_close_before_accept_refuses_the_handshake() -> None:
    ws, peer = socket(CONNECT)
    await ws.close()
    assert peer.types() == ["websocket.close"]
    assert ws.connection_state is WebSocketState.CLOSED


async def test_raw_send_of_accept_and_close_goes_through_the_state_machine() -> None:
    ws, peer = socket(CONNECT)
    await ws.send({"type": "websocket.accept", "subprotocol": None})
    assert ws.connection_state is WebSocketState.CONNECTED
    await ws.send({"type": "websocket.send", "text": "raw"})
    await ws.send({"type": "websocket.close", "code": 4002})
    assert ws.connection_state is WebSocketState.CLOSED
    assert ws.close_code == 4002
    assert peer.types() == ["websocket.accept", "websocket.send", "websocket.close"]


async def test_deny_with_the_http_response_extension() -> None:
    ws, peer = socket(CONNECT, extensions={"websocket.http.response": {}})
    await ws.deny(401, "login first")
    assert peer.sent[0]["type"] == "websocket.http.response.start"
    assert peer.sent[0]["status"] == 401
    assert peer.sent[1] == {"type": "websocket.http.response.body", "body": b"login first"}
    assert ws.connection_state is WebSocketState.CLOSED


async def test_deny_without_the_extension_closes() -> None:
    ws, peer = socket(CONNECT)
    await ws.deny(401)
    assert peer.types() == ["websocket.close"]


async def test_deny_after_accept_says_use_close() -> None:
    ws, _ = await accepted()
    with pytest.raises(WebSocketStateError, match=r"before accept\(\).*Use close\(code\)"):
        await ws.deny()


# --------------------------------------------------------------------------- receiving


async def test_receive_kinds() -> None:
    ws, _ = await accepted(text("a"), binary(b"b"), text('{"c": 1}'), binary(b"[2]"), text("e"))
    assert await ws.receive_text() == "a"
    assert await ws.receive_bytes() == b"b"
    assert await ws.receive_json() == {"c": 1}
    assert await ws.receive_json(mode="binary") == [2]
    assert await ws.receive() == text("e")


async def test_binary_frame_read_as_text_says_use_receive_bytes() -> None:
    ws, _ = await accepted(binary(b"\x00\x01"), text("next"))
    with pytest.raises(WebSocketMessageTypeError) as info:
        await ws.receive_text()
    assert "Expected a text frame but received a binary frame (2 bytes)" in str(info.value)
    assert "Use receive_bytes()" in str(info.value)
    assert isinstance(info.value, TypeError)
    assert await ws.receive_text() == "next"  # still usable


async def test_text_frame_read_as_bytes_says_use_receive_text() -> None:
    ws, _ = await accepted(text("x"))
    with pytest.raises(WebSocketMessageTypeError, match=r"Use receive_text\(\)"):
        await ws.receive_bytes()


async def test_invalid_json_is_a_value_error_and_the_socket_stays_usable() -> None:
    ws, peer = await accepted(text("{nope"), text('{"ok": true}'))
    with pytest.raises(ValueError, match="Invalid JSON") as info:
        await ws.receive_json()
    assert isinstance(info.value, InvalidJSONError)
    assert isinstance(info.value, WebSocketError)
    assert ws.connection_state is WebSocketState.CONNECTED
    assert await ws.receive_json() == {"ok": True}
    await ws.send_json({"still": "open"})
    assert peer.sent[-1] == {"type": "websocket.send", "text": '{"still":"open"}'}


async def test_invalid_utf8_json_in_binary_mode_is_invalid_json() -> None:
    ws, _ = await accepted(binary(b"\xff\xfe"))
    with pytest.raises(InvalidJSONError):
        await ws.receive_json(mode="binary")


async def test_json_frame_of_the_wrong_kind_says_which_mode_to_use() -> None:
    ws, _ = await accepted(binary(b"{}"), text("{}"))
    with pytest.raises(WebSocketMessageTypeError, match=r'receive_json\(mode="binary"\)'):
        await ws.receive_json()
    with pytest.raises(WebSocketMessageTypeError, match=r'receive_json\(mode="text"\)'):
        await ws.receive_json(mode="binary")


async def test_bad_json_mode() -> None:
    ws, _ = await accepted()
    with pytest.raises(ValueError, match='mode must be "text" or "binary"'):
        await ws.receive_json(mode="bytes")
    with pytest.raises(ValueError, match='mode must be "text" or "binary"'):
        await ws.send_json({}, mode="bytes")


async def test_disconnect_raises_on_every_receive_and_send() -> None:
    ws, _ = await accepted(disconnect(4003, "gone"))
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.receive_text()
    assert (info.value.code, info.value.reason) == (4003, "gone")
    assert ws.connection_state is WebSocketState.DISCONNECTED
    for call in (ws.receive, ws.receive_json, lambda: ws.send_text("x")):
        with pytest.raises(WebSocketDisconnect) as again:
            await call()
        assert again.value.code == 4003
    await ws.close()  # closing a disconnected socket does nothing


async def test_disconnect_without_code_is_1005() -> None:
    ws, _ = await accepted({"type": "websocket.disconnect"})
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.receive()
    assert info.value.code == 1005


async def test_a_failing_send_becomes_a_disconnect() -> None:
    ws, peer = await accepted()
    peer.fail_sends = ConnectionResetError(
        "peer reset"
    )  # uvicorn's ClientDisconnected is an OSError
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.send_text("x")
    assert info.value.code == 1006
    assert ws.connection_state is WebSocketState.DISCONNECTED


async def test_unexpected_asgi_message() -> None:
    ws, _ = await accepted({"type": "websocket.weird"})
    with pytest.raises(WebSocketStateError, match=r"Unexpected ASGI message 'websocket\.weird'"):
        await ws.receive()


async def test_iterators_end_at_disconnect() -> None:
    ws, _ = await accepted(text("a"), text("b"), disconnect())
    assert [t async for t in ws.iter_text()] == ["a", "b"]
    ws, _ = await accepted(binary(b"a"), disconnect())
    assert [b async for b in ws.iter_bytes()] == [b"a"]
    ws, _ = await accepted(text("1"), text("[2]"), disconnect())
    assert [j async for j in ws.iter_json()] == [1, [2]]


# --------------------------------------------------------------------------- sending


async def test_send_kinds() -> None:
    ws, peer = await accepted()
    await ws.send_text("t")
    await ws.send_bytes(bytearray(b"b"))
    await ws.send_json({"a": [1, None]})
    await ws.send_json([1], mode="binary")
    assert peer.sent[1:] == [
        {"type": "websocket.send", "text": "t"},
        {"type": "websocket.send", "bytes": b"b"},
        {"type": "websocket.send", "text": '{"a":[1,null]}'},
        {"type": "websocket.send", "bytes": b"[1]"},
    ]


async def test_send_wrong_types_say_which_method_to_use() -> None:
    ws, _ = await accepted()
    with pytest.raises(TypeError, match=r"send_text\(\) takes a str, got bytes; use send_bytes"):
        await ws.send_text(b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"send_bytes\(\) takes bytes, got str; use send_text"):
        await ws.send_bytes("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON serializable"):
        await ws.send_json(object())


# --------------------------------------------------------------------------- kick


async def test_kick_interrupts_a_pending_receive() -> None:
    ws, peer = await accepted()

    async def handler() -> None:
        ws._task = asyncio.current_task()
        await ws.receive_text()

    with anyio.fail_after(_TIMEOUT):
        task = asyncio.create_task(handler())
        await peer.waiting.wait()
        ws.kick(4009, "evicted")
        with pytest.raises(WebSocketDisconnect) as info:
            await task
    assert (info.value.code, info.value.reason) == (4009, "evicted")
    assert ws.kicked
    assert ws.connection_state is WebSocketState.DISCONNECTED
    ws.kick(4010)  # a second kick changes nothing
    assert ws.close_code == 4009


async def test_kick_before_receive() -> None:
    ws, _ = await accepted(text("never read"))
    ws.kick(4009)
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.receive_text()
    assert info.value.code == 4009


# --------------------------------------------------------------------------- request data


async def test_request_data() -> None:
    ws, _ = socket(
        CONNECT,
        path="/chat/r1",
        query_string=b"token=abc&x=1&x=2",
        headers=[
            (b"host", b"example.com:8080"),
            (b"cookie", b"session=s1; theme=dark"),
            (b"X-Custom", b"yes"),
        ],
        subprotocols=["v1", "v2"],
        path_params={"room_id": "r1"},
        state={"user": "ada"},
    )
    assert ws.url.path == "/chat/r1"
    assert ws.url.netloc == "example.com:8080"
    assert ws.url.scheme == "ws"
    assert ws.query_params["token"] == "abc"
    assert ws.headers["x-custom"] == "yes"
    assert ws.cookies == {"session": "s1", "theme": "dark"}
    assert ws.client == ("127.0.0.1", 5000)
    assert ws.subprotocols == ["v1", "v2"]
    assert ws.path_params == {"room_id": "r1"}
    assert ws.state.user == "ada"
    ws.state.extra = 1
    assert ws.state.extra == 1
    assert "'/chat/r1' connecting" in repr(ws)


async def test_defaults_without_optional_scope_keys() -> None:
    peer = Peer()
    ws = WebSocket({"type": "websocket", "path": "/x"}, peer.receive, peer.send)
    assert ws.path_params == {}
    assert ws.client is None
    assert ws.subprotocols == []
    assert ws.cookies == {}


# =========================================================================== the app


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="nexios")
    yield caplog


def records_at_least(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= level]


def with_traceback(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


def app_with(handler: Any, path: str = "/ws") -> NexiosApp:
    app = NexiosApp()
    app.add_ws_route(path, handler)
    return app


async def test_handler_crash_closes_1011_and_logs_the_traceback_once(
    logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nexios.application

    created: list[WebSocket] = []

    class CountingWebSocket(WebSocket):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            created.append(self)

    monkeypatch.setattr(nexios.application, "WebSocket", CountingWebSocket)
    seen: list[WebSocket] = []

    async def middleware(ws: WebSocket, call_next: Any) -> None:
        seen.append(ws)
        await call_next()

    async def crash(ws: WebSocket) -> None:
        seen.append(ws)
        await ws.accept()
        raise RuntimeError("boom")

    app = app_with(crash)
    app.add_ws_middleware(middleware)
    peer = await run_app(app, "/ws", CONNECT)
    assert peer.types() == ["websocket.accept", "websocket.close"]
    assert peer.closes()[0]["code"] == 1011
    assert len(created) == 1 and seen == [created[0], created[0]]
    traced = with_traceback(logs)
    assert len(traced) == 1
    record = traced[0]
    assert record.levelno == logging.ERROR
    assert "crash" in record.getMessage() and "closing with 1011" in record.getMessage()
    assert "RuntimeError: boom" in logs.text
    assert logs.text.count("Traceback") == 1


async def test_crash_after_the_handler_closed_does_not_close_again(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def close_then_send(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(4000)
        await ws.send_text("too late")

    peer = await run_app(app_with(close_then_send), "/ws", CONNECT)
    assert [m["code"] for m in peer.closes()] == [4000]
    assert len(with_traceback(logs)) == 1
    assert "already closed by the application" in logs.text


async def test_return_without_close_closes_1000(logs: pytest.LogCaptureFixture) -> None:
    async def quiet(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("bye")

    peer = await run_app(app_with(quiet), "/ws", CONNECT)
    assert peer.types() == ["websocket.accept", "websocket.send", "websocket.close"]
    assert peer.closes()[0]["code"] == 1000
    assert records_at_least(logs, logging.WARNING) == []


async def test_handler_that_closes_itself_is_not_closed_again() -> None:
    async def polite(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(4005)

    peer = await run_app(app_with(polite), "/ws", CONNECT)
    assert [m["code"] for m in peer.closes()] == [4005]


async def test_uncaught_client_disconnect_is_debug_not_error(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def reader(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            await ws.receive_text()

    peer = await run_app(app_with(reader), "/ws", CONNECT, text("a"), disconnect(1001))
    assert peer.types() == ["websocket.accept"]  # nothing is sent to a gone client
    assert records_at_least(logs, logging.INFO) == []
    debug = [r.getMessage() for r in logs.records if r.name.startswith("nexios")]
    assert debug == ["WebSocket /ws disconnected (1001)"]


async def test_handler_raising_disconnect_while_connected_closes_with_its_code(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def leave(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketDisconnect(4100)

    peer = await run_app(app_with(leave), "/ws", CONNECT)
    assert [m["code"] for m in peer.closes()] == [4100]
    assert records_at_least(logs, logging.WARNING) == []


async def test_receive_before_accept_refuses_the_handshake_and_logs_why(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def forgetful(ws: WebSocket) -> None:
        await ws.receive_text()

    peer = await run_app(app_with(forgetful), "/ws", CONNECT)
    assert peer.types() == ["websocket.close"]  # before accept: the server answers 403
    traced = with_traceback(logs)
    assert len(traced) == 1
    assert "raised before accept(): handshake refused (403)" in traced[0].getMessage()
    assert "call `await ws.accept()` first" in logs.text


async def test_return_without_accept_refuses_and_warns(logs: pytest.LogCaptureFixture) -> None:
    async def nothing(ws: WebSocket) -> None:
        return None

    peer = await run_app(app_with(nothing), "/ws", CONNECT)
    assert peer.types() == ["websocket.close"]
    warnings = records_at_least(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "returned without calling accept()" in warnings[0].getMessage()
    assert "Call `await ws.accept()`" in warnings[0].getMessage()


async def test_binary_frame_read_as_text_in_a_handler_closes_1011(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def texts(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()

    peer = await run_app(app_with(texts), "/ws", CONNECT, binary(b"\x01"))
    assert [m["code"] for m in peer.closes()] == [1011]
    assert "Use receive_bytes()" in logs.text


async def test_invalid_json_caught_as_value_error_keeps_the_connection(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def tolerant(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            try:
                data = await ws.receive_json()
            except ValueError:
                await ws.send_json({"error": "bad json"})
                continue
            await ws.send_json({"got": data})

    peer = await run_app(app_with(tolerant), "/ws", CONNECT, text("{"), text("[1]"), disconnect())
    assert [m.get("text") for m in peer.sent[1:]] == ['{"error":"bad json"}', '{"got":[1]}']
    assert records_at_least(logs, logging.WARNING) == []


async def test_unknown_path_is_refused_and_logged(logs: pytest.LogCaptureFixture) -> None:
    peer = await run_app(NexiosApp(), "/nowhere", CONNECT)
    assert peer.types() == ["websocket.close"]
    assert "No WebSocket route for '/nowhere': handshake refused (403)" in logs.text


async def test_cleanup_callbacks_run_on_every_ending(logs: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def crash(ws: WebSocket) -> None:
        ws.on_close(lambda: ran.append("sync"))

        async def later() -> None:
            ran.append("async")

        ws.on_close(later)

        def broken() -> None:
            raise ValueError("cleanup broke")

        ws.on_close(broken)
        await ws.accept()
        raise RuntimeError("boom")

    await run_app(app_with(crash), "/ws", CONNECT)
    assert ran == ["sync", "async"]
    assert "cleanup callback" in logs.text and "cleanup broke" in logs.text


# =========================================================================== over uvicorn

server_app = NexiosApp()


@server_app.ws_route("/crash")
async def _crash(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("about to crash")
    raise RuntimeError("boom over tcp")


@server_app.ws_route("/early-receive")
async def _early_receive(ws: WebSocket) -> None:
    await ws.receive_text()


@server_app.ws_route("/reader")
async def _reader(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("ready")
    while True:
        await ws.receive_text()


@server_app.ws_route("/quiet")
async def _quiet(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("done")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("tests.test_websocket_base:server_app") as running:
        yield running


@pytest.fixture
async def tcp_timeout() -> AsyncIterator[None]:
    with anyio.fail_after(_TIMEOUT):
        yield


async def test_tcp_handler_crash_is_close_1011(server: Server, tcp_timeout: None) -> None:
    async with connect(server.ws_url("/crash")) as ws:
        assert await ws.recv() == "about to crash"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1011
    log = server.wait_for_log("RuntimeError: boom over tcp")
    assert log.count("RuntimeError: boom over tcp") == 1


async def test_tcp_receive_before_accept_is_http_403(server: Server, tcp_timeout: None) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.ws_url("/early-receive")):
            pass
    assert info.value.response.status_code == 403
    log = server.wait_for_log("call `await ws.accept()` first")
    assert "raised before accept(): handshake refused (403)" in log


async def test_tcp_client_leaving_is_not_an_error(server: Server, tcp_timeout: None) -> None:
    async with connect(server.ws_url("/reader")) as ws:
        assert await ws.recv() == "ready"
        await ws.send("x")
    log = server.wait_for_log("WebSocket /reader disconnected (1000)")
    line = next(line for line in log.splitlines() if "/reader disconnected" in line)
    assert line.startswith("DEBUG")
    assert "Exception" not in log.split("/reader")[-1]


async def test_tcp_return_without_close_is_1000(server: Server, tcp_timeout: None) -> None:
    async with connect(server.ws_url("/quiet")) as ws:
        assert await ws.recv() == "done"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000


@pytest.mark.parametrize("bad", ['{"f": 1e400}', "[" * 60_000, "{'single': 'quotes'}", "\x00"])
async def test_invalid_json_from_iter_json_closes_1007_without_a_traceback(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "nexios")
    app = NexiosApp(limits=Limits.unlimited())
    seen: list[Any] = []

    @app.ws_route("/j")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for value in ws.iter_json():
            seen.append(value)

    async with AsyncTestClient(app) as client, client.websocket_connect("/j") as ws:
        await ws.send_text('{"ok": 1}')
        await ws.send_text(bad)
        assert await ws.wait_closed() == 1007
    assert seen == [{"ok": 1}]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "invalid JSON" in caplog.text


@pytest.mark.parametrize(
    ("route", "sent", "reason"),
    [
        ("text", {"bytes": b"x"}, "expected text frames"),
        ("bytes", {"text": "x"}, "expected binary frames"),
        ("json", {"bytes": b"{}"}, "expected text frames"),
    ],
)
async def test_iterators_close_1003_on_the_other_frame_type(
    route: str, sent: dict[str, Any], reason: str
) -> None:
    app = NexiosApp()
    seen: list[Any] = []

    @app.ws_route("/{kind}")
    async def handler(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        iterate = {"text": ws.iter_text, "bytes": ws.iter_bytes, "json": ws.iter_json}[kind]
        async for value in iterate():
            seen.append(value)

    async with AsyncTestClient(app) as client, client.websocket_connect(f"/{route}") as ws:
        await ws.send({"type": "websocket.receive", **sent})
        assert await ws.wait_closed() == 1003
        assert ws.close_reason == reason
    assert seen == []
