"""The channels runtime: encode once, fan out without waiting, evict the stuck, keep the
rest going; one runtime per app."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from nexios import NexiosApp, encoding
from nexios.exceptions import ConfigurationError
from nexios.framing import encode_payload, frame_for, stamp_seq
from nexios.runtime import OutboxLimits, OverflowPolicy
from nexios.testing import AsyncTestClient, TestClient
from nexios.websockets import Channel, ChannelBox, WebSocket
from nexios.websockets.channels import ChannelAddStatusEnum, GroupSendStatusEnum

pytestmark = pytest.mark.anyio


def group_app(**options: Any) -> NexiosApp:
    app = NexiosApp(**options)

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
    app = group_app(outbox=OutboxLimits(send_timeout=0.3))
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
    def framed(member: str, kind: str, data: bytes) -> tuple[bool, bytes]:
        frame = frame_for(member, kind, data)
        return frame.is_text, frame.payload

    assert framed("json", "json", b'{"a":1}') == (True, b'{"a":1}')
    assert framed("json", "text", b"hi") == (True, b'"hi"')
    assert framed("json", "bytes", b"hi") == (True, b'"aGk="')
    assert framed("text", "json", b'{"a":1}') == (True, b'{"a":1}')
    assert framed("text", "bytes", b"\x00") == (False, b"\x00")
    assert framed("bytes", "text", b"hi") == (False, b"hi")


def test_stamp_seq_adds_the_key_without_reencoding() -> None:
    assert encoding.loads(stamp_seq(b'{"a":1}', "seq", 7)) == {"seq": 7, "a": 1}
    assert encoding.loads(stamp_seq(b"{}", "seq", 8)) == {"seq": 8}
    assert encoding.loads(stamp_seq(b'{"a":1}', 'we"ird', 9)) == {'we"ird': 9, "a": 1}


# ---------------------------------------------------------------------- one runtime per app


def member_app(room: str = "room", **options: Any) -> NexiosApp:
    """``/m/{name}`` joins ``room`` with ``{"name": name}`` and echoes nothing."""
    app = NexiosApp(**options)

    @app.ws_route("/m/{name}")
    async def member(ws: WebSocket, name: str) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, metadata={"name": name}), room)
        await ws.send_text("in")
        async for text in ws.iter_text():
            await ChannelBox.group_send(room, text)

    return app


async def test_two_apps_in_one_process_keep_their_groups_events_and_members_apart() -> None:
    first, second = member_app(), member_app()
    joins: dict[str, list[str]] = {"first": [], "second": []}
    first.events.on("channel.join", lambda event: joins["first"].append(event["metadata"]["name"]))
    second.events.on(
        "channel.join", lambda event: joins["second"].append(event["metadata"]["name"])
    )
    async with AsyncTestClient(first) as one, AsyncTestClient(second) as two:
        async with one.websocket_connect("/m/ada") as ada, two.websocket_connect("/m/bob") as bob:
            assert await ada.receive_text() == "in" and await bob.receive_text() == "in"
            await ada.send_text("hello from first")
            assert await ada.receive_json() == "hello from first"
            assert [m.metadata["name"] for m in await first.channels.presence("room")] == ["ada"]
            assert [m.metadata["name"] for m in await second.channels.presence("room")] == ["bob"]
            await first.channels.stop()  # one app's shutdown...
            assert await ada.wait_closed() == 1001
            await bob.send_text("still here")  # ...leaves the other's members alone
            assert await bob.receive_json() == "still here"
    assert joins == {"first": ["ada"], "second": ["bob"]}


def test_one_app_serves_one_event_loop_after_another() -> None:
    app = member_app()
    for name in ("ada", "bob"):
        with TestClient(app) as client, client.websocket_connect(f"/m/{name}") as ws:
            assert ws.receive_text() == "in"
            members = client.run(ChannelBox.presence("room"))
            assert [m.metadata["name"] for m in members] == [name]
        assert not app.channels.started


async def test_chanelbox_outside_an_app_says_how_to_use_it() -> None:
    with pytest.raises(ConfigurationError, match="outside a nexios app"):
        await ChannelBox.group_send("room", {"x": 1})
    app = member_app()
    async with app.channels.activated():
        assert await ChannelBox.group_send("room", {"x": 1}) == GroupSendStatusEnum.NO_SUCH_GROUP
        await app.channels.stop()


def test_a_bad_setting_fails_the_startup_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_PRESENCE_TTL", "abc")
    app = member_app()  # building the app reads nothing yet
    with pytest.raises(RuntimeError, match="startup failed") as failed, TestClient(app):
        pass
    assert "NEXIOS_PRESENCE_TTL" in str(failed.value.__cause__)
    monkeypatch.setenv("NEXIOS_PRESENCE_TTL", "5")
    monkeypatch.setenv("NEXIOS_CHANNELS_URL", "kafka://broker")
    with (
        pytest.raises(RuntimeError, match="Unknown channels URL 'kafka://broker'"),
        TestClient(app),
    ):
        pass


def test_importing_nexios_parses_no_environment_variable() -> None:
    env = {**os.environ, "NEXIOS_PRESENCE_TTL": "abc", "NEXIOS_OUTBOX_POLICY": "sometimes"}
    done = subprocess.run(
        [sys.executable, "-c", "import nexios, nexios.websockets, nexios.testing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


async def test_settings_are_read_when_the_app_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    app = member_app()
    monkeypatch.setenv("NEXIOS_OUTBOX_MAX_MESSAGES", "7")
    monkeypatch.setenv("NEXIOS_OUTBOX_POLICY", "drop_oldest")
    async with AsyncTestClient(app):
        outbox = app.channels.settings.outbox
        assert (outbox.max_messages, outbox.policy) == (7, OverflowPolicy.DROP_OLDEST)
    code_wins = member_app(outbox=OutboxLimits(max_messages=9))
    async with AsyncTestClient(code_wins):
        assert code_wins.channels.settings.outbox.max_messages == 9


async def test_a_refused_join_leaves_no_trace() -> None:
    app = NexiosApp()
    events: list[str] = []
    app.events.on("channel.join", lambda event: events.append("join"))
    app.events.on("channel.leave", lambda event: events.append("leave"))
    errors: list[str] = []

    @app.ws_route("/j")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        with pytest.raises(ConfigurationError, match="JSON-serialisable") as bad_metadata:
            Channel(ws, metadata={"when": object()})
        errors.append(str(bad_metadata.value))
        channel = Channel(ws, metadata={"ok": True})
        channel.metadata["later"] = {1, 2j}  # changed after construction
        for group in ("room", "\udcff-lone-surrogate", "x" * 1025):
            name = "room" if group == "room" else group
            with pytest.raises(ConfigurationError) as refused:
                await ChannelBox.add_channel_to_group(channel, name)
            errors.append(str(refused.value))
            if group == "room":
                del channel.metadata["later"]
        assert await ChannelBox.add_channel_to_group(channel, "room") == (
            ChannelAddStatusEnum.CHANNEL_ADDED
        )
        await ws.send_text("done")
        await ws.receive_text()

    async with AsyncTestClient(app) as client, client.websocket_connect("/j") as ws:
        assert await ws.receive_text() == "done"
        assert [m.metadata for m in await ChannelBox.presence("room")] == [{"ok": True}]
        assert list(await ChannelBox.show_groups()) == ["room"]
        await ws.send_text("bye")
    assert events == ["join", "leave"]
    assert "JSON-serialisable" in errors[0] and "JSON-serialisable" in errors[1]
    assert "lone surrogate" in errors[2] and "1024 bytes" in errors[3]
