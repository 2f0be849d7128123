"""Channel and ChannelBox, driven through the app the way users write it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError, GroupAccessDenied, WebSocketDisconnect
from nexios.history.base import HistoryLimits
from nexios.testing import AsyncTestClient
from nexios.websockets import WebSocket
from nexios.websockets.channels import (
    Channel,
    ChannelAddStatusEnum,
    ChannelBox,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=["memory", "redis"])
def channel_layer(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the in-process layer and on Redis (history in streams):
    process-wide defaults, which every app created in the test picks up."""
    if request.param == "redis":
        ChannelBox.configure(request.getfixturevalue("redis_url"))
    yield str(request.param)
    ChannelBox.reset_configuration()


def room_app(payload_type: str = "json", expires: float | None = None, **options: Any) -> NexiosApp:
    """Members join ``/room/{name}``; every JSON message is broadcast with history."""
    app = NexiosApp(**options)

    @app.ws_route("/room/{name}")
    async def room(ws: WebSocket, name: str) -> None:
        await ws.accept()
        user = ws.query_params.get("user", "anon")
        channel = Channel(ws, payload_type=payload_type, expires=expires, metadata={"user": user})
        await ChannelBox.add_channel_to_group(channel, name)
        await ws.send_json({"joined": channel.id})
        async for message in ws.iter_json():
            await ChannelBox.group_send(name, message, save_history=True)

    return app


async def test_payload_type_accepts_enum_and_value() -> None:
    app = NexiosApp()
    made: list[Channel] = []

    @app.ws_route("/c")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        made.append(Channel(ws, payload_type=PayloadTypeEnum.TEXT))
        made.append(Channel(websocket=ws, payload_type=PayloadTypeEnum.BYTES.value, expires=30))
        with pytest.raises(ConfigurationError, match="payload_type"):
            Channel(ws, payload_type="xml")
        with pytest.raises(ConfigurationError, match="seconds of inactivity"):
            Channel(ws, expires=-1)
        with pytest.raises(ConfigurationError, match="metadata must be a dict"):
            Channel(ws, metadata=["x"])  # type: ignore[arg-type]

    async with AsyncTestClient(app) as client, client.websocket_connect("/c") as ws:
        await ws.wait_closed()
    text, binary = made
    assert text.payload_type is PayloadTypeEnum.TEXT
    assert binary.payload_type is PayloadTypeEnum.BYTES and binary.expires == 30
    assert text.id == text.uuid and text.uuid != binary.uuid
    assert text.created <= time.time()


async def test_channel_needs_a_websocket() -> None:
    with pytest.raises(ConfigurationError, match="needs the handler's WebSocket"):
        Channel(object())  # type: ignore[arg-type]


async def test_group_send_reaches_every_member_and_history_is_numbered() -> None:
    async with (
        AsyncTestClient(room_app()) as client,
        client.websocket_connect("/room/a?user=ann") as ann,
        client.websocket_connect("/room/a?user=bob") as bob,
    ):
        await ann.receive_json()
        await bob.receive_json()
        for i in range(3):
            await ann.send_json({"n": i})
        for member in (ann, bob):
            assert [await member.receive_json() for _ in range(3)] == [
                {"n": 0},
                {"n": 1},
                {"n": 2},
            ]
        history = await ChannelBox.show_history("a")
        assert [entry.seq for entry in history] == [1, 2, 3]
        assert [entry.payload for entry in history] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert len({entry.created for entry in history}) >= 1
        assert all(history[i].created <= history[i + 1].created for i in range(2))
        decoded = orjson.loads(orjson.dumps({"messages": history[-50:]}, default=_default))
        assert decoded["messages"][0] == {
            "seq": 1,
            "payload": {"n": 0},
            "created": history[0].created,
        }
        since = await ChannelBox.show_history("a", since=1)
        assert [entry.seq for entry in since] == [2, 3]
        assert [e.seq for e in await ChannelBox.show_history("a", limit=1)] == [3]


def _default(obj: Any) -> Any:
    from nexios.encoding import default

    return default(obj)


async def test_send_json_accepts_entries_and_lists_of_entries() -> None:
    app = NexiosApp()

    @app.ws_route("/h")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.group_send("log", {"text": "one"}, save_history=True)
        await ChannelBox.group_send("log", "two", save_history=True)
        history = await ChannelBox.show_history("log")
        await ws.send_json({"messages": history[-50:]})
        await ws.send_json(history[0])
        await ws.send_json([m.payload for m in history[-50:]])

    async with AsyncTestClient(app) as client, client.websocket_connect("/h") as ws:
        messages = (await ws.receive_json())["messages"]
        assert [(m["seq"], m["payload"]) for m in messages] == [(1, {"text": "one"}), (2, "two")]
        assert (await ws.receive_json())["payload"] == {"text": "one"}
        assert await ws.receive_json() == [{"text": "one"}, "two"]


async def test_group_statuses_and_removing_a_non_member_never_raises() -> None:
    app = NexiosApp()
    seen: dict[str, Any] = {}

    @app.ws_route("/s")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        one, two = Channel(ws), Channel(ws)
        seen["added"] = await ChannelBox.add_channel_to_group(one, "g")
        seen["again"] = await ChannelBox.add_channel_to_group(one, "g")
        await ChannelBox.add_channel_to_group(two, "g")
        seen["no_group"] = await ChannelBox.remove_channel_from_group(one, "nope")
        other = Channel(ws)
        seen["non_member"] = await ChannelBox.remove_channel_from_group(other, "g")
        seen["removed"] = await ChannelBox.remove_channel_from_group(one, "g")
        seen["last"] = await ChannelBox.remove_channel_from_group(two, "g")
        seen["send_empty"] = await ChannelBox.group_send("g", {"x": 1})
        seen["groups"] = await ChannelBox.show_groups()

    async with AsyncTestClient(app) as client, client.websocket_connect("/s") as ws:
        await ws.wait_closed()
    assert seen["added"] == ChannelAddStatusEnum.CHANNEL_ADDED
    assert seen["again"] == ChannelAddStatusEnum.CHANNEL_EXIST
    assert seen["no_group"] is ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
    assert seen["non_member"] is ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
    assert seen["removed"] is ChannelRemoveStatusEnum.CHANNEL_REMOVED
    assert seen["last"] is ChannelRemoveStatusEnum.GROUP_REMOVED
    assert seen["send_empty"] == GroupSendStatusEnum.NO_SUCH_GROUP
    assert seen["groups"] == {}


async def test_payload_types_frame_the_same_broadcast_differently() -> None:
    app = NexiosApp()

    @app.ws_route("/{kind}")
    async def handler(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, payload_type=kind), "mixed")
        await ws.send_text("ready")
        async for text in ws.iter_text():
            await ChannelBox.group_send("mixed", {"text": text})
            await ChannelBox.group_send("mixed", text)
            await ChannelBox.group_send("mixed", text.encode())

    async with (
        AsyncTestClient(app) as client,
        client.websocket_connect("/json") as js,
        client.websocket_connect("/text") as tx,
        client.websocket_connect("/bytes") as bn,
    ):
        for member in (js, tx, bn):
            await member.receive_text()
        await js.send_text("hé")
        assert await js.receive_json() == {"text": "hé"}
        assert await js.receive_json() == "hé"
        assert await js.receive_json() == "aMOp"  # bytes to a JSON member: base64
        assert orjson.loads(await tx.receive_text()) == {"text": "hé"}
        assert await tx.receive_text() == "hé"
        assert await tx.receive_bytes() == "hé".encode()
        assert orjson.loads(await bn.receive_bytes()) == {"text": "hé"}
        assert await bn.receive_bytes() == "hé".encode()
        assert await bn.receive_bytes() == "hé".encode()


async def test_disconnected_channels_leave_their_groups_and_presence() -> None:
    app = room_app()
    left: list[dict[str, Any]] = []
    app.events.on("channel.leave", left.append)
    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/room/p?user=ann") as ann:
            ann_id = (await ann.receive_json())["joined"]
            async with client.websocket_connect("/room/p?user=bob") as bob:
                bob_id = (await bob.receive_json())["joined"]
                members = await ChannelBox.presence("p")
                assert [(m.channel_id, m.metadata) for m in members] == [
                    (ann_id, {"user": "ann"}),
                    (bob_id, {"user": "bob"}),
                ]
            assert [m.channel_id for m in await ChannelBox.presence("p")] == [ann_id]
            assert left == [
                {
                    "group": "p",
                    "channel_id": bob_id,
                    "metadata": {"user": "bob"},
                    "reason": "disconnected",
                }
            ]
        assert await ChannelBox.presence("p") == []
        assert await ChannelBox.show_groups() == {}


async def test_expired_channel_is_closed_and_leaves_its_groups() -> None:
    async with AsyncTestClient(room_app(expires=0.2, presence_ttl=0.3)) as client:
        async with client.websocket_connect("/room/e") as member:
            await member.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                await member.receive_json()
            assert closed.value.code == 1000
            assert closed.value.reason == "channel expired"
        assert await ChannelBox.show_groups() == {}
        assert await ChannelBox.presence("e") == []


async def test_touch_and_receive_keep_a_channel_alive() -> None:
    app = NexiosApp()
    channels: list[Channel] = []

    @app.ws_route("/t")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        channel = Channel(ws, expires=0.05)
        channels.append(channel)
        assert channel.is_active
        time.sleep(0.06)
        assert channel.is_expired() and not channel.is_active
        channel.touch()
        assert not channel.is_expired()
        await channel.send({"echo": await channel.receive()})
        assert not channel.is_expired()

    async with AsyncTestClient(app) as client, client.websocket_connect("/t") as ws:
        await ws.send_json({"a": 1})
        assert await ws.receive_json() == {"echo": {"a": 1}}


async def test_send_to_reaches_one_channel() -> None:
    async with (
        AsyncTestClient(room_app()) as client,
        client.websocket_connect("/room/d") as ann,
        client.websocket_connect("/room/d") as bob,
    ):
        await ann.receive_json()
        bob_id = (await bob.receive_json())["joined"]
        assert await ChannelBox.send_to(bob_id, {"private": True})
        assert await bob.receive_json() == {"private": True}
        assert not await ChannelBox.send_to("missing", {"x": 1})


async def test_close_all_connections_closes_with_1001() -> None:
    async with AsyncTestClient(room_app()) as client:
        async with (
            client.websocket_connect("/room/x") as ann,
            client.websocket_connect("/room/y") as bob,
        ):
            await ann.receive_json()
            await bob.receive_json()
            await ChannelBox.close_all_connections()
            assert await ann.wait_closed() == 1001
            assert await bob.wait_closed() == 1001
        assert await ChannelBox.show_groups() == {}


async def test_flush_groups_and_history() -> None:
    async with AsyncTestClient(room_app()) as client:
        async with client.websocket_connect("/room/f") as ann:
            await ann.receive_json()
            await ann.send_json({"keep": 1})
            await ann.receive_json()
            await ChannelBox.flush_groups()
            assert await ChannelBox.show_groups() == {}
            assert [e.seq for e in await ChannelBox.show_history("f")] == [1]
            await ChannelBox.flush_history()
            assert list(await ChannelBox.show_history("f")) == []
            await ChannelBox.group_send("f", {"after": True}, save_history=True)
            assert [e.seq for e in await ChannelBox.show_history("f")] == [2]
            everything = await ChannelBox.show_history()
            assert isinstance(everything, dict) and list(everything) == ["f"]


async def test_history_bounds_prune_without_wiping_and_recover_reports_gaps() -> None:
    app = NexiosApp(history_limits=HistoryLimits(max_entries=5))

    @app.ws_route("/r")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for i in range(12):
            await ChannelBox.group_send("b", {"i": i}, save_history=True)
        await ws.send_text("done")

    async with AsyncTestClient(app) as client, client.websocket_connect("/r") as ws:
        await ws.receive_text()
        history = await ChannelBox.show_history("b")
        assert [e.seq for e in history] == [8, 9, 10, 11, 12]
        fine = await ChannelBox.recover("b", since=9)
        assert fine.complete and [e.seq for e in fine] == [10, 11, 12]
        gap = await ChannelBox.recover("b", since=2)
        assert not gap.complete and [e.seq for e in gap] == [8, 9, 10, 11, 12]
        ahead = await ChannelBox.recover("b", since=50)
        assert not ahead.complete and list(ahead) == []


async def test_seq_field_stamps_live_messages() -> None:
    app = NexiosApp()

    @app.ws_route("/q")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws), "q")
        await ChannelBox.group_send("q", {"a": 1}, save_history=True, seq_field="seq")
        await ChannelBox.group_send("q", {}, save_history=True, seq_field="seq")
        with pytest.raises(ConfigurationError, match="save_history=True"):
            await ChannelBox.group_send("q", {"a": 1}, seq_field="seq")
        with pytest.raises(ConfigurationError, match="already has"):
            await ChannelBox.group_send("q", {"seq": 1}, save_history=True, seq_field="seq")
        with pytest.raises(ConfigurationError, match="dict payloads"):
            await ChannelBox.group_send("q", "text", save_history=True, seq_field="seq")
        await ws.receive_text()

    async with AsyncTestClient(app) as client, client.websocket_connect("/q") as ws:
        assert await ws.receive_json() == {"seq": 1, "a": 1}
        assert await ws.receive_json() == {"seq": 2}
        await ws.send_text("end")


async def test_group_policy_can_refuse_a_join() -> None:
    async def only_public(channel: Channel, group: str) -> bool:
        return group.startswith("public-")

    app = NexiosApp(group_policy=only_public)

    @app.ws_route("/{group}")
    async def handler(ws: WebSocket, group: str) -> None:
        await ws.accept()
        try:
            await ChannelBox.add_channel_to_group(Channel(ws), group)
        except GroupAccessDenied as denied:
            await ws.close(4403, str(denied)[:100])
            return
        await ws.send_text("in")

    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/public-1") as ok:
            assert await ok.receive_text() == "in"
        async with client.websocket_connect("/secret") as refused:
            assert await refused.wait_closed() == 4403


async def test_misuse_is_refused_with_clear_errors() -> None:
    app = NexiosApp()
    errors: list[str] = []

    @app.ws_route("/m")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for call in (
            lambda: ChannelBox.add_channel_to_group(ws, "g"),  # type: ignore[arg-type]
            lambda: ChannelBox.add_channel_to_group(Channel(ws), ""),
            lambda: ChannelBox.group_send("g"),
        ):
            with pytest.raises(ConfigurationError) as error:
                await call()
            errors.append(str(error.value))

    async with AsyncTestClient(app) as client, client.websocket_connect("/m") as ws:
        await ws.wait_closed()
    assert "wrap the socket first" in errors[0]
    assert "non-empty str" in errors[1]
    assert "needs a payload" in errors[2]


async def test_configure_rejects_unknown_urls() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        ChannelBox.configure("kafka://localhost")
