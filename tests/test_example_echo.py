"""examples/echo.py: text and JSON echo, errors that keep the connection, connection logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from examples.echo import app
from nexios.testing import TestClient
from tests.support.server import Server, serve

TIMEOUT = 5.0


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("examples.echo:app") as server:
        yield server


def test_text_echo(client: TestClient) -> None:
    with client.websocket_connect("/echo") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "echo: hello"
        ws.send_text("")
        assert ws.receive_text() == "echo: "


def test_binary_where_text_expected_is_an_error_and_the_connection_stays(
    client: TestClient,
) -> None:
    with client.websocket_connect("/echo") as ws:
        ws.send_bytes(b"\x00\x01\x02")
        assert ws.receive_text() == "error: expected a text frame, got 3 bytes of binary data"
        ws.send_text("still here")
        assert ws.receive_text() == "echo: still here"


def test_json_echo(client: TestClient) -> None:
    with client.websocket_connect("/echo/json") as ws:
        ws.send_json({"a": 1, "b": [True, None]})
        assert ws.receive_json() == {"echo": {"a": 1, "b": [True, None]}}
        ws.send_json([1, 2])
        assert ws.receive_json() == {"echo": [1, 2]}


def test_invalid_json_is_answered_and_the_connection_stays(client: TestClient) -> None:
    with client.websocket_connect("/echo/json") as ws:
        ws.send_text("{not json")
        reply = ws.receive_json()
        assert reply["error"] == "invalid JSON"
        assert reply["detail"].startswith("Invalid JSON")
        ws.send_bytes(b'{"a": 1}')
        assert ws.receive_json() == {
            "error": "expected a text frame",
            "detail": "send JSON as text frames, not binary",
        }
        ws.send_json({"ok": True})
        assert ws.receive_json() == {"echo": {"ok": True}}


def test_sessions_are_independent(client: TestClient) -> None:
    with (
        client.websocket_connect("/echo") as first,
        client.websocket_connect("/echo/json") as second,
    ):
        first.send_text("one")
        second.send_json({"n": 2})
        assert second.receive_json() == {"echo": {"n": 2}}
        assert first.receive_text() == "echo: one"


def test_connections_are_logged_with_the_client_address(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="examples.echo")
    with client.websocket_connect("/echo") as ws:
        ws.send_text("x")
        ws.receive_text()
    # Leaving the block waits for the handler to end, so both lines are there.
    lines = [r.getMessage() for r in caplog.records if r.name == "examples.echo"]
    assert "client testclient:50000 connected to /echo" in lines
    assert "client testclient:50000 disconnected from /echo (code 1000)" in lines
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "examples.echo")


@pytest.mark.anyio
async def test_over_a_real_server(server: Server) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with connect(server.ws_url("/echo")) as ws:
            await ws.send("over the wire")
            assert await ws.recv() == "echo: over the wire"
            await ws.send(b"\xff")
            assert await ws.recv() == "error: expected a text frame, got 1 byte of binary data"
        async with connect(server.ws_url("/echo/json")) as ws:
            await ws.send("nope")
            assert json.loads(await ws.recv())["error"] == "invalid JSON"
            await ws.send(json.dumps({"k": "v"}))
            assert json.loads(await ws.recv()) == {"echo": {"k": "v"}}
    log = server.wait_for_log("disconnected from /echo/json")
    assert "examples.echo: client 127.0.0.1:" in log
    assert "connected to /echo" in log
