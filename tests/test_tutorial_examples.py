"""examples/tutorial: the lesson's five programs as the project writes them.

Each program is driven in process through :class:`nexios.testing.TestClient`, and
under ``nexios run examples.tutorial.<name>:app`` over TCP with the ``websockets``
client. Nothing here needs the course's files (``tests/test_seed_examples.py`` runs
those, unchanged, when ``../shared`` is present).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from examples.tutorial import channel, echo, error_handling, message_types, routing
from nexios.exceptions import WebSocketDisconnect
from nexios.testing import TestClient, WebSocketDenied, WebSocketTestSession
from tests.support.server import REPO_ROOT, Server, serve

TIMEOUT = 5.0
PROGRAMS = {
    "echo": echo,
    "routing": routing,
    "message_types": message_types,
    "channel": channel,
    "error_handling": error_handling,
}
ROUTES = {
    "/chat-direct": "direct",
    "/chat": "chat at /chat",
    "/ws/chat": "chat at /ws/chat",
    "/ws/notifications": "notifications",
}


def test_the_five_programs_are_all_here() -> None:
    folder = REPO_ROOT / "examples" / "tutorial"
    names = {path.stem for path in Path(folder).glob("*.py")} - {"__init__"}
    assert names == set(PROGRAMS)
    for module in PROGRAMS.values():
        assert module.__doc__ and f"nexios run {module.__name__}:app" in module.__doc__


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(PROGRAMS[request.param].app, timeout=TIMEOUT) as test_client:
        yield test_client


def program(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("client", [name], indirect=True)


def closed_with(ws: WebSocketTestSession) -> tuple[int, str]:
    """The server's close code and reason (the next receive must be the close)."""
    with pytest.raises(WebSocketDisconnect) as info:
        ws.receive()
    return info.value.code, info.value.reason


# --------------------------------------------------------------------------- in process


@program("echo")
def test_echo(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/ws") as ws:
        for text in ("hello", "", "ünïcode ✓"):
            ws.send_text(text)
            assert ws.receive_text() == f"Message received: {text}"
        ws.close()
    assert capsys.readouterr().out == "Client disconnected\n"


@program("echo")
def test_echo_refuses_binary_with_1003(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_bytes(b"\x00")
        assert closed_with(ws) == (1003, "expected text frames")
    assert capsys.readouterr().out == "Client disconnected\n"


@program("routing")
@pytest.mark.parametrize(("path", "reply"), ROUTES.items())
def test_routing(client: TestClient, path: str, reply: str) -> None:
    with client.websocket_connect(path) as ws:
        assert ws.receive_text() == reply
        assert closed_with(ws) == (1000, "")


@program("routing")
@pytest.mark.parametrize("path", ["/nope", "/ws", "/ws/chat/extra", "/chat-direct/"])
def test_unknown_paths_are_refused_with_403(client: TestClient, path: str) -> None:
    with pytest.raises(WebSocketDenied) as info, client.websocket_connect(path):
        pass
    assert info.value.status_code == 403


@program("message_types")
def test_message_types_in_turn(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/chat") as ws:
        for turn in range(3):
            ws.send_text(f"hi {turn}")
            assert ws.receive_text() == f"Echo: hi {turn}"
            ws.send_json({"turn": turn, "list": [1, "a", None]})
            assert ws.receive_json() == {
                "status": "received",
                "data": {"turn": turn, "list": [1, "a", None]},
            }
            ws.send_bytes(bytes(range(turn * 100, turn * 100 + 50)))
            assert ws.receive_bytes() == bytes(range(turn * 100, turn * 100 + 50))
        ws.close()
    assert capsys.readouterr().out == "Connection closed\n"


@program("message_types")
@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"bytes first"], 1003),
        (["text", "not json"], 1007),
        (["text", '{"ok": 1}', "text where bytes belong"], 1003),
        (["text", b"{}"], 1003),
    ],
)
def test_message_types_out_of_turn(client: TestClient, frames: list[Any], code: int) -> None:
    with client.websocket_connect("/chat") as ws:
        for frame in frames:
            if isinstance(frame, bytes):
                ws.send_bytes(frame)
            else:
                ws.send_text(frame)
        replies = len(frames) - 1
        for _ in range(replies):
            ws.receive()
        closed_code, reason = closed_with(ws)
    assert closed_code == code
    assert reason == (
        message_types.TURN if code == 1003 else "The second message of each turn must be JSON."
    )


@program("channel")
def test_channel_room(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/chat/r1") as ws:
        ws.send_json({"text": "hi"})
        assert ws.receive_json() == {"message": {"text": "hi"}}
        ws.send_json([1, 2])
        assert ws.receive_json() == {"message": [1, 2]}
        ws.send_text("{broken")
        assert ws.receive_json()["error"].startswith("Invalid JSON")
        ws.send_bytes(b"{}")
        assert ws.receive_json() == {"error": "Send JSON as text frames, not binary."}
        ws.send_json("still open")
        assert ws.receive_json() == {"message": "still open"}
        ws.close()
    assert capsys.readouterr().out == "Client disconnected from room r1\n"


@program("error_handling")
def test_error_handling_valid_then_invalid_json(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=error_handling.__name__)
    with client.websocket_connect("/chat") as ws:
        ws.send_json({"a": 1})
        assert ws.receive_json() == {"status": "ok", "data": {"a": 1}}
        ws.send_text("{not json")
        assert ws.receive_json() == {"error": "Invalid JSON format"}
        assert closed_with(ws) == (1007, "Invalid JSON format")
    records = [r for r in caplog.records if r.name == error_handling.__name__]
    assert [r.levelname for r in records] == ["ERROR"]
    assert records[0].getMessage().startswith("Invalid JSON received: Invalid JSON: ")


@program("error_handling")
def test_error_handling_binary_frame(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with client.websocket_connect("/chat") as ws:
        ws.send_bytes(b'{"a": 1}')
        assert ws.receive_json() == {"error": "Send JSON as text frames"}
        assert closed_with(ws) == (1003, "Send JSON as text frames")
    assert [r.levelname for r in caplog.records if r.name == error_handling.__name__] == ["ERROR"]


@program("error_handling")
def test_error_handling_normal_disconnect_is_logged_at_info(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=error_handling.__name__)
    with client.websocket_connect("/chat") as ws:
        ws.send_json([])
        assert ws.receive_json() == {"status": "ok", "data": []}
        ws.close()
    records = [r for r in caplog.records if r.name == error_handling.__name__]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "Client disconnected normally")
    ]


# --------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(f"examples.tutorial.{request.param}:app") as running:
        yield running


def served(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("server", [name], indirect=True)


async def closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server's close frame; return its code and reason."""
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    return ws.close_code, ws.close_reason


@served("echo")
@pytest.mark.anyio
async def test_echo_over_tcp(server: Server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(server.ws_url("/ws")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "Message received: hello"
            await ws.send("again")
            assert await ws.recv() == "Message received: again"
        server.wait_for_log("Client disconnected")
        async with connect(server.ws_url("/ws")) as ws:
            await ws.send(b"\x00")
            assert await closed(ws) == (1003, "expected text frames")
    assert "Traceback" not in server.log()


@served("routing")
@pytest.mark.anyio
async def test_routing_over_tcp(server: Server) -> None:
    with anyio.fail_after(TIMEOUT):
        for path, reply in ROUTES.items():
            async with connect(server.ws_url(path)) as ws:
                assert await ws.recv() == reply
                assert await closed(ws) == (1000, "")
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws_url("/nope")):
                pass
    assert info.value.response.status_code == 403


@served("message_types")
@pytest.mark.anyio
async def test_message_types_over_tcp(server: Server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(server.ws_url("/chat")) as ws:
            for turn in range(2):
                await ws.send(f"hi {turn}")
                assert await ws.recv() == f"Echo: hi {turn}"
                await ws.send(json.dumps({"k": [1, 2], "turn": turn}))
                assert json.loads(await ws.recv()) == {
                    "status": "received",
                    "data": {"k": [1, 2], "turn": turn},
                }
                await ws.send(b"\x00\x01\xfe")
                assert await ws.recv() == b"\x00\x01\xfe"
        server.wait_for_log("Connection closed")
        async with connect(server.ws_url("/chat")) as ws:
            await ws.send("text")
            assert await ws.recv() == "Echo: text"
            await ws.send("not json")
            assert await closed(ws) == (1007, "The second message of each turn must be JSON.")
    assert "Traceback" not in server.log()


@served("channel")
@pytest.mark.anyio
async def test_channel_over_tcp(server: Server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(server.ws_url("/chat/r1")) as ws:
            await ws.send('{"text": "hi"}')
            assert await ws.recv() == '{"message":{"text":"hi"}}'
            await ws.send("[1, 2")
            assert json.loads(await ws.recv())["error"].startswith("Invalid JSON")
            await ws.send("3")
            assert await ws.recv() == '{"message":3}'
    server.wait_for_log("Client disconnected from room r1")
    assert "Traceback" not in server.log()


@served("error_handling")
@pytest.mark.anyio
async def test_error_handling_over_tcp(server: Server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(server.ws_url("/chat")) as ws:
            await ws.send('{"a": 1}')
            assert await ws.recv() == '{"status":"ok","data":{"a":1}}'
            await ws.send("{not json")
            assert await ws.recv() == '{"error":"Invalid JSON format"}'
            assert await closed(ws) == (1007, "Invalid JSON format")
    # ERROR records reach stderr under `nexios run` without any logging setup.
    server.wait_for_log("Invalid JSON received: Invalid JSON: ")
    assert "Traceback" not in server.log()
