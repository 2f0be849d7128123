"""The hub: encode once, fan out without waiting, evict the stuck, keep the rest going."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexios import NexiosApp, encoding
from nexios.testing import AsyncTestClient
from nexios.websockets import Channel, ChannelBox, WebSocket
from nexios.websockets.hub import _frame_payload, encode_payload, stamp_seq
from nexios.websockets.outbox import OutboxLimits

pytestmark = pytest.mark.anyio


def group_app() -> NexiosApp:
    app = NexiosApp()

    @app.ws_route("/g/{kind}")
    async def member(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, payload_type=kind), "all")
        await ws.send_text("in")
        async for _ in ws.iter_text():
            pass

    return app


async def test_a_payload_is_encoded_once_per_group_send(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = encoding.dumps

    def counting(obj: Any) -> bytes:
        calls.append(obj)
        return real(obj)

    monkeypatch.setattr(encoding, "dumps", counting)
    async with AsyncTestClient(group_app()) as client:
        sessions = [
            client.websocket_connect(f"/g/{'json' if i % 2 else 'text'}") for i in range(20)
        ]
        members = [await s.__aenter__() for s in sessions]
        for member in members:
            assert await member.receive_text() == "in"
        calls.clear()
        await ChannelBox.group_send("all", {"big": "x" * 1000})
        assert len(calls) == 1
        for member in members:
            assert encoding.loads(await member.receive_text()) == {"big": "x" * 1000}
        for session in sessions:
            await session.__aexit__(None, None, None)


class StuckPeer:
    """A raw ASGI connection that accepts and then never lets a send complete."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.accepted = asyncio.Event()
        self.closed_with: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            self.accepted.set()
            return
        if message["type"] == "websocket.close":
            self.closed_with.append(message)
            return
        await asyncio.Event().wait()  # the peer never reads


async def test_a_stuck_member_is_evicted_and_the_rest_get_everything() -> None:
    ChannelBox.configure(outbox=OutboxLimits(send_timeout=0.3))
    app = group_app()
    left: list[dict[str, Any]] = []
    app.events.on("channel.leave", left.append)
    async with AsyncTestClient(app) as client:
        healthy = [client.websocket_connect("/g/json") for _ in range(5)]
        members = [await s.__aenter__() for s in healthy]
        for member in members:
            await member.receive_text()
        stuck = StuckPeer()
        scope = {
            "type": "websocket",
            "path": "/g/json",
            "query_string": b"",
            "headers": [],
            "subprotocols": [],
        }
        await stuck.incoming.put({"type": "websocket.connect"})
        stuck_app = asyncio.create_task(app(scope, stuck.receive, stuck.send))
        await stuck.accepted.wait()
        async with asyncio.timeout(5):
            while len((await ChannelBox.show_groups())["all"]) < 6:
                await asyncio.sleep(0.01)
        for i in range(50):
            status = await ChannelBox.group_send("all", {"i": i})
            assert status.value == "GROUP_SEND"
        for member in members:
            assert [encoding.loads(await member.receive_text())["i"] for _ in range(50)] == list(
                range(50)
            )
        async with asyncio.timeout(3):
            await stuck_app  # evicted: the handler saw a disconnect and returned
        assert [e["reason"] for e in left] == ["evicted"]
        assert len((await ChannelBox.show_groups())["all"]) == 5
        for session in healthy:
            await session.__aexit__(None, None, None)


def test_encode_payload_kinds() -> None:
    assert encode_payload("hé") == ("text", "hé".encode())
    assert encode_payload(b"\x00") == ("bytes", b"\x00")
    assert encode_payload({"a": [1, 2]}) == ("json", b'{"a":[1,2]}')


def test_frames_per_payload_type() -> None:
    assert _frame_payload("json", "json", b'{"a":1}') == (True, b'{"a":1}')
    assert _frame_payload("json", "text", b"hi") == (True, b'"hi"')
    assert _frame_payload("text", "json", b'{"a":1}') == (True, b'{"a":1}')
    assert _frame_payload("text", "bytes", b"\x00") == (False, b"\x00")
    assert _frame_payload("bytes", "text", b"hi") == (False, b"hi")


def test_stamp_seq_adds_the_key_without_reencoding() -> None:
    assert encoding.loads(stamp_seq(b'{"a":1}', "seq", 7)) == {"seq": 7, "a": 1}
    assert encoding.loads(stamp_seq(b"{}", "seq", 8)) == {"seq": 8}
    assert encoding.loads(stamp_seq(b'{"a":1}', 'we"ird', 9)) == {'we"ird': 9, "a": 1}
