"""WebSocketConsumer: encodings and their close codes, groups, the real close code."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.routing import WebsocketRoutes
from nexios.testing import AsyncTestClient
from nexios.websockets import ChannelBox, WebSocket, WebSocketConsumer

pytestmark = pytest.mark.anyio


class Recorder(WebSocketConsumer):
    closed: ClassVar[list[int]] = []
    received: ClassVar[list[Any]] = []

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        type(self).received.append(data)
        await ws.send_json({"got": data if not isinstance(data, bytes) else data.decode()})

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        type(self).closed.append(close_code)


def app_for(consumer: type[WebSocketConsumer], path: str = "/c") -> NexiosApp:
    consumer.closed = []  # type: ignore[attr-defined]
    consumer.received = []  # type: ignore[attr-defined]
    app = NexiosApp()
    app.add_ws_route(consumer.as_route(path))
    return app


class JsonConsumer(Recorder):
    encoding = "json"


class TextConsumer(Recorder):
    encoding = "text"


class BytesConsumer(Recorder):
    encoding = "bytes"


class AnyConsumer(Recorder):
    encoding = None


async def test_json_consumer_parses_and_closes_1007_on_invalid_json() -> None:
    async with AsyncTestClient(app_for(JsonConsumer)) as client:
        async with client.websocket_connect("/c") as ws:
            await ws.send_json({"a": 1})
            assert await ws.receive_json() == {"got": {"a": 1}}
            await ws.send_text("{nope")
            assert await ws.wait_closed() == 1007
    assert JsonConsumer.closed == [1007]


async def test_text_consumer_closes_1003_on_binary() -> None:
    async with AsyncTestClient(app_for(TextConsumer)) as client:
        async with client.websocket_connect("/c") as ws:
            await ws.send_text("hi")
            assert await ws.receive_json() == {"got": "hi"}
            await ws.send_bytes(b"\x00")
            assert await ws.wait_closed() == 1003
    assert TextConsumer.closed == [1003]


async def test_bytes_consumer_closes_1003_on_text() -> None:
    async with AsyncTestClient(app_for(BytesConsumer)) as client:
        async with client.websocket_connect("/c") as ws:
            await ws.send_bytes(b"ok")
            assert await ws.receive_json() == {"got": "ok"}
            await ws.send_text("no")
            assert await ws.wait_closed() == 1003


async def test_no_encoding_passes_frames_through_and_reports_client_close_code() -> None:
    async with AsyncTestClient(app_for(AnyConsumer)) as client:
        async with client.websocket_connect("/c") as ws:
            await ws.send_text("t")
            await ws.receive_json()
            await ws.send_bytes(b"b")
            await ws.receive_json()
            await ws.close(4001)
    assert AnyConsumer.received == ["t", b"b"]
    assert AnyConsumer.closed == [4001]


class Room(WebSocketConsumer):
    encoding = "json"
    closed: ClassVar[list[int]] = []

    async def on_connect(self, ws: WebSocket) -> None:
        await ws.accept()
        await self.join_group(ws.path_params["room"])
        await ws.send_json({"id": self.channel.id if self.channel else None})

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        room = ws.path_params["room"]
        if data.get("private"):
            await self.send_to(data["to"], {"dm": data["private"]})
        elif data.get("leave"):
            await self.leave_group(room)
            await ws.send_json({"left": True})
        elif data.get("via_handle"):
            await self.group(room).send({"handle": True}, save_history=True)
        else:
            await self.broadcast(data, room, save_history=True)

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        Room.closed.append(close_code)


async def test_room_consumer_broadcasts_with_path_params_and_leaves_on_disconnect() -> None:
    app = NexiosApp()
    app.add_ws_route(Room.as_route("/rooms/{room}"))
    Room.closed = []
    async with AsyncTestClient(app) as client:
        async with (
            client.websocket_connect("/rooms/blue") as ann,
            client.websocket_connect("/rooms/blue") as bob,
        ):
            await ann.receive_json()
            bob_id = (await bob.receive_json())["id"]
            await ann.send_json({"text": "hi"})
            assert await ann.receive_json() == {"text": "hi"}
            assert await bob.receive_json() == {"text": "hi"}
            await ann.send_json({"private": "psst", "to": bob_id})
            assert await bob.receive_json() == {"dm": "psst"}
            await ann.send_json({"via_handle": True})
            assert await bob.receive_json() == {"handle": True}
            history = await ChannelBox.show_history("blue")
            assert [e.payload for e in history] == [{"text": "hi"}, {"handle": True}]
            assert len(await ChannelBox.presence("blue")) == 2
            await bob.send_json({"leave": True})
            assert await bob.receive_json() == {"left": True}
            assert len(await ChannelBox.presence("blue")) == 1
        assert await ChannelBox.show_groups() == {}
    assert sorted(Room.closed) == [1000, 1000]


class Crashing(WebSocketConsumer):
    closed: ClassVar[list[int]] = []

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        raise RuntimeError("boom")

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        Crashing.closed.append(close_code)


async def test_a_crashing_hook_closes_1011_and_reports_it() -> None:
    app = NexiosApp()
    app.add_ws_route(Crashing.as_route("/x"))
    Crashing.closed = []
    async with AsyncTestClient(app) as client, client.websocket_connect("/x") as ws:
        await ws.send_text("go")
        assert await ws.wait_closed() == 1011
    assert Crashing.closed == [1011]


def test_consumer_routes_are_websocket_routes_and_bad_encodings_fail_early() -> None:
    assert isinstance(Room.as_route("/r/{room}"), WebsocketRoutes)
    with pytest.raises(ConfigurationError, match="encoding"):

        class Bad(WebSocketConsumer):
            encoding = "xml"
