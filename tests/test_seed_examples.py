"""The tutorial's programs, unchanged: in-process with TestClient, and under uvicorn.

Each program in ``shared/spec/seed_examples`` is imported from its file as it is. The
in-process tests drive it through :class:`nexios.testing.TestClient`; the server tests
run it with ``python -m nexios run 01_echo:app`` and talk to it over TCP with the
``websockets`` client library, the way a browser would.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nexios import NexiosApp
from nexios.exceptions import WebSocketDisconnect
from nexios.testing import TestClient, WebSocketDenied
from tests.support.server import SEED_DIR, Server, seed_env, serve

SEEDS = ("01_echo", "02_routing", "03_message_types", "04_channel", "05_error_handling")
_TIMEOUT = 5.0

pytestmark = pytest.mark.skipif(
    not SEED_DIR.is_dir(), reason=f"seed examples not found at {SEED_DIR} (set NEXIOS_SPEC_DIR)"
)


def load_seed(name: str) -> ModuleType:
    """Import ``seed_examples/<name>.py`` from its file, as a fresh module."""
    path = SEED_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"seed_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def seed_app(name: str) -> NexiosApp:
    app = load_seed(name).app
    assert isinstance(app, NexiosApp)
    return app


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(seed_app(request.param), timeout=_TIMEOUT) as test_client:
        yield test_client


def seed(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("client", [name], indirect=True)


def test_every_seed_file_is_covered() -> None:
    assert sorted(path.stem for path in SEED_DIR.glob("*.py")) == sorted(SEEDS)


# --------------------------------------------------------------------------- TestClient


@seed("01_echo")
def test_echo(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "Message received: hello"
        ws.send_text("again")
        assert ws.receive_text() == "Message received: again"
        ws.close()
    assert "Client disconnected" in capsys.readouterr().out


@seed("02_routing")
@pytest.mark.parametrize(
    ("path", "reply"),
    [
        ("/chat-direct", "direct"),
        ("/chat", "chat at /chat"),
        ("/ws/chat", "chat at /ws/chat"),
        ("/ws/notifications", "notifications"),
    ],
)
def test_routing(client: TestClient, path: str, reply: str) -> None:
    with client.websocket_connect(path) as ws:
        assert ws.receive_text() == reply
        assert ws.wait_closed() == 1000


@seed("03_message_types")
def test_message_types_in_turn(client: TestClient) -> None:
    with client.websocket_connect("/chat") as ws:
        for round_ in range(2):
            ws.send_text(f"hi {round_}")
            assert ws.receive_text() == f"Echo: hi {round_}"
            ws.send_json({"n": round_, "list": [1, "a"]})
            assert ws.receive_json() == {
                "status": "received",
                "data": {"n": round_, "list": [1, "a"]},
            }
            ws.send_bytes(b"\x00\xff" * round_)
            assert ws.receive_bytes() == b"\x00\xff" * round_


@seed("04_channel")
def test_channel_room(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/chat/r1") as ws:
        ws.send_json({"text": "hi"})
        assert ws.receive_json() == {"message": {"text": "hi"}}
        ws.send_json([1, 2])
        assert ws.receive_json() == {"message": [1, 2]}
        ws.close()
    assert "Client disconnected from room r1" in capsys.readouterr().out


@seed("05_error_handling")
def test_error_handling_valid_then_invalid_json(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with client.websocket_connect("/chat") as ws:
        ws.send_json({"a": 1})
        assert ws.receive_json() == {"status": "ok", "data": {"a": 1}}
        ws.send_text("{not json")
        assert ws.receive_json() == {"error": "Invalid JSON format"}
        assert ws.wait_closed() == 1000
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("Invalid JSON received: ")


@seed("01_echo")
def test_unknown_path_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDenied) as info, client.websocket_connect("/nope"):
        pass
    assert info.value.status_code == 403


# --------------------------------------------------------------------------- real server


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(f"{request.param}:app", env=seed_env()) as running:
        yield running


def served(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("server", [name], indirect=True)


async def closed_code(ws: Any) -> int:
    """Wait for the server's close frame; return its code."""
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    code: int = ws.close_code
    return code


@served("01_echo")
@pytest.mark.anyio
async def test_echo_over_tcp(server: Server) -> None:
    with anyio.fail_after(_TIMEOUT):
        async with connect(server.ws_url("/ws")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "Message received: hello"
            await ws.send("again")
            assert await ws.recv() == "Message received: again"
    server.wait_for_log("Client disconnected")


@served("02_routing")
@pytest.mark.anyio
async def test_routing_over_tcp(server: Server) -> None:
    expected = {
        "/chat-direct": "direct",
        "/chat": "chat at /chat",
        "/ws/chat": "chat at /ws/chat",
        "/ws/notifications": "notifications",
    }
    with anyio.fail_after(_TIMEOUT):
        for path, reply in expected.items():
            async with connect(server.ws_url(path)) as ws:
                assert await ws.recv() == reply
                assert await closed_code(ws) == 1000


@served("03_message_types")
@pytest.mark.anyio
async def test_message_types_over_tcp(server: Server) -> None:
    with anyio.fail_after(_TIMEOUT):
        async with connect(server.ws_url("/chat")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "Echo: hi"
            await ws.send('{"k": [1, 2]}')
            assert await ws.recv() == '{"status":"received","data":{"k":[1,2]}}'
            await ws.send(b"\x00\x01\xfe")
            assert await ws.recv() == b"\x00\x01\xfe"
            await ws.send("second round")
            assert await ws.recv() == "Echo: second round"


@served("04_channel")
@pytest.mark.anyio
async def test_channel_over_tcp(server: Server) -> None:
    with anyio.fail_after(_TIMEOUT):
        async with connect(server.ws_url("/chat/r1")) as ws:
            await ws.send('{"text": "hi"}')
            assert await ws.recv() == '{"message":{"text":"hi"}}'
    server.wait_for_log("Client disconnected from room r1")


@served("05_error_handling")
@pytest.mark.anyio
async def test_error_handling_over_tcp(server: Server) -> None:
    with anyio.fail_after(_TIMEOUT):
        async with connect(server.ws_url("/chat")) as ws:
            await ws.send('{"a": 1}')
            assert await ws.recv() == '{"status":"ok","data":{"a":1}}'
            await ws.send("{not json")
            assert await ws.recv() == '{"error":"Invalid JSON format"}'
            assert await closed_code(ws) == 1000
    assert "Invalid JSON received" in server.log()
    assert "Traceback" not in server.log()


@served("02_routing")
@pytest.mark.anyio
async def test_unknown_path_over_tcp_is_http_403(server: Server) -> None:
    with anyio.fail_after(_TIMEOUT):
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws_url("/nope")):
                pass
    assert info.value.response.status_code == 403
    server.wait_for_log("No WebSocket route for '/nope'")


def test_testclient_reports_a_close_before_any_message() -> None:
    with TestClient(seed_app("02_routing")) as client, client.websocket_connect("/chat") as ws:
        assert ws.receive_text() == "chat at /chat"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 1000
