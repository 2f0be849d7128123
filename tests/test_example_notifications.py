"""examples/notifications.py: many clients, broadcasts from HTTP and WebSocket, leaving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from examples.notifications import app
from nexios.testing import TestClient
from tests.support.server import Server, serve, wait_for

TIMEOUT = 5.0


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app, timeout=TIMEOUT) as client:
        yield client


def test_every_client_gets_http_and_websocket_broadcasts(client: TestClient) -> None:
    with (
        client.websocket_connect("/notifications") as a,
        client.websocket_connect("/notifications") as b,
        client.websocket_connect("/notifications") as c,
    ):
        welcomes = [ws.receive_json() for ws in (a, b, c)]
        assert [w["type"] for w in welcomes] == ["welcome"] * 3
        assert [w["clients"] for w in welcomes] == [1, 2, 3]
        assert client.get("/stats").json() == {"clients": 3}

        response = client.post("/notify", json={"message": "deploy done"})
        assert response.status_code == 200
        assert response.json() == {"sent": True, "clients": 3}
        for ws in (a, b, c):
            assert ws.receive_json() == {
                "type": "notification",
                "message": "deploy done",
                "source": "http",
            }

        b.send_json({"broadcast": "hello all"})
        for ws in (a, b, c):
            assert ws.receive_json() == {
                "type": "notification",
                "message": "hello all",
                "source": "websocket",
            }


def test_a_client_that_disconnects_leaves_the_group(client: TestClient) -> None:
    with client.websocket_connect("/notifications") as a:
        a.receive_json()
        with client.websocket_connect("/notifications") as b:
            b.receive_json()
            assert client.get("/stats").json() == {"clients": 2}
        # Leaving the block waited for b's handler: it is out of the group now.
        assert client.get("/stats").json() == {"clients": 1}
        assert client.post("/notify", json={"message": "still here?"}).json() == {
            "sent": True,
            "clients": 1,
        }
        assert a.receive_json()["message"] == "still here?"
    assert client.get("/stats").json() == {"clients": 0}


def test_bad_websocket_messages_are_answered_and_the_connection_stays(
    client: TestClient,
) -> None:
    with client.websocket_connect("/notifications") as ws:
        ws.receive_json()
        ws.send_text("not json")
        assert ws.receive_json() == {
            "type": "error",
            "message": 'send JSON text: {"broadcast": "..."}',
        }
        ws.send_json({"hello": 1})
        assert ws.receive_json() == {
            "type": "error",
            "message": 'unknown message; send {"broadcast": "..."}',
        }
        ws.send_json({"broadcast": "   "})
        assert ws.receive_json() == {
            "type": "error",
            "message": "the message must be a non-empty string",
        }
        ws.send_json({"broadcast": "ok"})
        assert ws.receive_json()["message"] == "ok"


def test_notify_validates_its_body(client: TestClient) -> None:
    response = client.post("/notify", json={"text": "wrong field"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": 'send {"message": "..."}: the message must be a non-empty string'
    }
    response = client.post("/notify", content=b"{oops", headers={"content-type": "text/json"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Invalid JSON body")
    response = client.post("/notify", json={"message": "x" * 1001})
    assert response.status_code == 400
    assert "at most 1000 characters" in response.json()["detail"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("examples.notifications:app") as server:
        yield server


def stats(server: Server) -> int:
    clients: int = httpx.get(f"{server.http_url}/stats", timeout=TIMEOUT).json()["clients"]
    return clients


@pytest.mark.anyio
async def test_over_a_real_server(server: Server) -> None:
    async with asyncio.timeout(TIMEOUT), httpx.AsyncClient(base_url=server.http_url) as http:
        async with connect(server.ws_url("/notifications")) as a:
            assert json.loads(await a.recv())["type"] == "welcome"
            async with connect(server.ws_url("/notifications")) as b:
                assert json.loads(await b.recv())["clients"] == 2
                response = await http.post("/notify", json={"message": "from http"})
                assert response.json() == {"sent": True, "clients": 2}
                for ws in (a, b):
                    assert json.loads(await ws.recv())["message"] == "from http"
                await a.send(json.dumps({"broadcast": "from a"}))
                for ws in (a, b):
                    assert json.loads(await ws.recv())["source"] == "websocket"
            # b's close handshake is done; the server removes it when its handler ends.
            await asyncio.to_thread(wait_for, lambda: stats(server) == 1, TIMEOUT, 0.02)
            await http.post("/notify", json={"message": "only a"})
            assert json.loads(await a.recv())["message"] == "only a"
