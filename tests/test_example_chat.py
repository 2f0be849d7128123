"""examples/chat: rooms, history, presence, typing, validation, rate limit, recovery.

The chat speaks the client protocol (``docs/protocol.md``) through ``/connect``. The
in-process tests send its frames through ``TestClient`` (memory layer, memory history);
the others run ``nexios run examples.chat.app:app`` (one worker with SQLite history, and
two workers over Redis) and talk to it with the Python client, ``nexios.client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from nexios.client import Client, Subscription, connect
from nexios.exceptions import ProtocolError
from nexios.history import HistoryLimits
from nexios.testing import TestClient
from nexios.websockets import ChannelBox
from tests.support.protocol_conn import Conn, protocol
from tests.support.redis import REDIS_SERVER, RedisServer, redis_server  # noqa: F401
from tests.support.server import Server, serve

TIMEOUT = 5.0
ROOM = "chat:lobby"
TYPING = "typing:lobby"


# ---------------------------------------------------------------------- in process


@pytest.fixture
def chat_app() -> Iterator[Any]:
    """The chat app on memory:// with memory history; its settings restored after."""
    app = importlib.import_module("examples.chat.app").app
    saved = app.channels.overrides
    app.channels.configure(channels_url="memory://", history_url="memory://")
    yield app
    app.channels.overrides = saved


@pytest.fixture
def client(chat_app: Any) -> Iterator[TestClient]:
    with TestClient(chat_app, timeout=TIMEOUT) as client:
        yield client


@contextlib.contextmanager
def joined(client: TestClient, name: str, room: str = ROOM, **options: Any) -> Iterator[Conn]:
    """A connection named ``name`` subscribed to ``room`` (with presence)."""
    with protocol(client, token=name) as conn:
        conn.joined = conn.call("subscribe", group=room, presence=True, **options)  # type: ignore[attr-defined]
        assert conn.push("join")["member"]["id"] == conn.client  # its own, after the list
        yield conn


def seed(client: TestClient, count: int, group: str = ROOM) -> None:
    """Put ``count`` messages in the room's history as the app would."""

    async def send_all() -> None:
        for i in range(count):
            message = {"id": "seed", "name": "seed", "text": f"m{i}", "ts": 0}
            await ChannelBox.group_send(group, message, save_history=True)

    client.run(send_all())


def test_the_page_its_static_files_and_the_client(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/static/app.js"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert 'from "/_nexios/nexios.js"' in script.text
    assert client.get("/_nexios/nexios.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/missing.js").status_code == 404


def test_history_on_join_is_the_last_50(client: TestClient) -> None:
    seed(client, 60)
    with joined(client, "ada") as ada:
        assert ada.joined["seq"] == 60  # type: ignore[attr-defined]
        page = ada.call("history", group=ROOM, limit=50)
        assert [m["data"]["text"] for m in page["messages"]] == [f"m{i}" for i in range(10, 60)]
        assert [m["seq"] for m in page["messages"]] == list(range(11, 61))


def test_messages_reach_their_room_only_and_are_saved(client: TestClient) -> None:
    with (
        joined(client, "ada") as ada,
        joined(client, "bob") as bob,
        joined(client, "carol", room="chat:elsewhere") as carol,
    ):
        assert bob.call("publish", group=ROOM, data={"text": "hi ada"})["seq"] == 1
        for conn in (ada, bob):
            message = conn.push("message")
            assert (message["group"], message["seq"]) == (ROOM, 1)
            data = message["data"]
            assert (data["text"], data["name"], data["id"]) == ("hi ada", "bob", bob.client)
        carol.nothing_more()  # nothing from the lobby
        with joined(client, "dan") as dan:
            history = dan.call("history", group=ROOM)
            assert [(m["data"]["name"], m["data"]["text"]) for m in history["messages"]] == [
                ("bob", "hi ada")
            ]


def test_the_sender_is_the_servers_word(client: TestClient) -> None:
    with joined(client, "ada") as ada:
        ada.call("publish", group=ROOM, data={"text": "hi", "name": "mallory", "id": "x"})
        data = ada.push("message")["data"]
        assert (data["name"], data["id"]) == ("ada", ada.client)
        assert set(data) == {"id", "name", "text", "ts"}


def test_presence_on_join_and_leave(client: TestClient) -> None:
    with joined(client, "ada") as ada:
        assert ada.joined["presence"] == [{"id": ada.client, "info": {"name": "ada"}}]  # type: ignore[attr-defined]
        with joined(client, "bob") as bob:
            names = {m["info"]["name"] for m in bob.joined["presence"]}  # type: ignore[attr-defined]
            assert names == {"ada", "bob"}
            assert ada.push("join") == {
                "type": "join",
                "group": ROOM,
                "member": {"id": bob.client, "info": {"name": "bob"}},
            }
        leave = ada.push("leave")
        assert (leave["member"], leave["reason"]) == (
            {"id": bob.client, "info": {"name": "bob"}},
            "disconnected",
        )
        assert [m.metadata["name"] for m in client.run(ChannelBox.presence(ROOM))] == ["ada"]


def test_typing_is_relayed_but_never_saved(client: TestClient) -> None:
    with joined(client, "ada") as ada, joined(client, "bob") as bob:
        ada.call("subscribe", group=TYPING)
        assert bob.call("publish", group=TYPING, data={}) == {}  # not saved: no seq
        typing = ada.push("message")
        assert typing == {
            "type": "message",
            "group": TYPING,
            "data": {"id": bob.client, "name": "bob"},
        }
        bob.call("publish", group=ROOM, data={"text": "done typing"})
        assert ada.push("message")["data"]["text"] == "done typing"
    history = client.run(ChannelBox.show_history(ROOM))
    assert [entry.payload["text"] for entry in history] == ["done typing"]
    assert len(client.run(ChannelBox.show_history(TYPING))) == 0


# What the client publishes to the room, and the error it must get back.
BAD_MESSAGES = [
    ({"text": ""}, 400, "Message must be 1 to 1000 characters."),
    ({"text": "   "}, 400, "Message must be 1 to 1000 characters."),
    ({"text": "x" * 1001}, 400, "Message must be 1 to 1000 characters."),
    ({"nope": 1}, 400, "Message must be 1 to 1000 characters."),
    (["not", "an", "object"], 400, "Message must be 1 to 1000 characters."),
    (None, 400, '"publish" needs "data": any JSON value but null'),
]


@pytest.mark.parametrize(("data", "code", "text"), BAD_MESSAGES)
def test_invalid_messages_get_an_error_and_the_connection_stays(
    client: TestClient, data: Any, code: int, text: str
) -> None:
    with joined(client, "ada") as ada:
        assert ada.refused("publish", group=ROOM, data=data) == {"code": code, "message": text}
        ada.call("publish", group=ROOM, data={"text": "still works"})
        assert ada.push("message")["data"]["text"] == "still works"


@pytest.mark.parametrize("name", ["", "   ", "n" * 33, "tab\there"])
def test_a_bad_name_refuses_the_connection(client: TestClient, name: str) -> None:
    with client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws:
        ws.send_json({"id": 1, "type": "connect", "token": name})
        assert ws.receive_json()["error"] == {
            "code": 401,
            "message": "Name must be 1 to 32 printable characters.",
        }
        assert ws.receive_json()["code"] == 4500
        assert ws.wait_closed() == 4500


@pytest.mark.parametrize("group", ["chat:Big Room", "chat:" + "r" * 33, "lobby", "typing:"])
def test_a_bad_room_is_refused_and_the_client_can_try_again(client: TestClient, group: str) -> None:
    with protocol(client, token="ada") as ada:
        assert ada.refused("subscribe", group=group) == {
            "code": 404,
            "message": "Room must be 1 to 32 characters: lowercase letters, digits and dashes.",
        }
        assert ada.refused("publish", group=group, data={"text": "x"})["code"] == 404
        assert ada.call("subscribe", group="chat:ok-room")["complete"] is True


def test_more_than_5_messages_a_second_are_refused_with_429(client: TestClient) -> None:
    with joined(client, "ada") as ada:
        ids = [
            ada.send({"type": "publish", "group": ROOM, "data": {"text": f"spam {i}"}})
            for i in range(6)
        ]
        replies = [ada.reply(command_id) for command_id in ids]
        assert [r["result"]["seq"] for r in replies[:5]] == [1, 2, 3, 4, 5]
        assert replies[5]["error"] == {
            "code": 429,
            "message": "Slow down: at most 5 messages per second.",
        }
    assert len(client.run(ChannelBox.show_history(ROOM))) == 5


def test_recovery_with_since_sends_what_was_missed(client: TestClient) -> None:
    with joined(client, "ada") as ada:
        with joined(client, "bob") as bob:
            ada.call("publish", group=ROOM, data={"text": "before"})
            seen = bob.push("message")
        for text in ("while away 1", "while away 2"):
            ada.call("publish", group=ROOM, data={"text": text})
        with protocol(client, token="bob") as bob:
            result = bob.call("subscribe", group=ROOM, since=seen["seq"], epoch=seen["epoch"])
            assert (result["complete"], result["recovered"], result["seq"]) == (True, 2, 3)
            missed = bob.messages(2)
            assert [m["data"]["text"] for m in missed] == ["while away 1", "while away 2"]


@pytest.fixture
def small_history(chat_app: Any) -> Iterator[TestClient]:
    chat_app.channels.configure(history_limits=HistoryLimits(max_entries=5))
    with TestClient(chat_app, timeout=TIMEOUT) as client:
        yield client


def test_recovery_when_more_was_missed_than_history_keeps(small_history: TestClient) -> None:
    client = small_history
    seed(client, 8)  # history keeps 4..8 only
    with protocol(client, token="bob") as bob:
        epoch = bob.call("history", group=ROOM)["epoch"]
        result = bob.call("subscribe", group=ROOM, since=1, epoch=epoch)
        assert (result["complete"], result["recovered"], result["seq"]) == (False, 0, 8)
        page = bob.call("history", group=ROOM, limit=50)
        assert [m["seq"] for m in page["messages"]] == [4, 5, 6, 7, 8]
        bob.nothing_more()  # nothing replayed
        bob.call("unsubscribe", group=ROOM)
        result = bob.call("subscribe", group=ROOM, since=3, epoch=epoch)  # 4..8 are all there
        assert (result["complete"], result["recovered"]) == (True, 5)


# ---------------------------------------------------------------------- real servers


@contextlib.asynccontextmanager
async def join_real(
    server: Server, name: str, room: str = ROOM, since: int | None = None
) -> AsyncIterator[tuple[Client, Subscription]]:
    async with connect(server.ws_url("/connect"), token=name, timeout=TIMEOUT) as client:
        yield client, await client.subscribe(room, since=since, presence=True)


async def next_text(sub: Subscription) -> str:
    text: str = (await sub.get(TIMEOUT)).data["text"]
    return text


@pytest.mark.anyio
async def test_over_a_real_server_with_sqlite_history(tmp_path: Path) -> None:
    env = {
        "NEXIOS_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}",
        "NEXIOS_HISTORY_MAX_ENTRIES": "5",
    }
    with serve("examples.chat.app:app", env=env) as server:
        async with join_real(server, "ada") as (ada, room):
            async with join_real(server, "bob") as (bob, bobs):
                assert {info["name"] for info in bobs.members.values()} == {"ada", "bob"}
                typing = await ada.subscribe(TYPING)
                await bob.publish(TYPING, {})
                assert (await typing.get(TIMEOUT)).data["name"] == "bob"
                await bob.publish(ROOM, {"text": "hello"})
                assert await next_text(bobs) == "hello"
                last_seen = bobs.seq
                with pytest.raises(ProtocolError) as caught:
                    await bob.publish(ROOM, {"text": ""})
                assert caught.value.message == "Message must be 1 to 1000 characters."
            assert await next_text(room) == "hello"
            for i in range(3):
                await ada.publish(ROOM, {"text": f"missed {i}"})
            assert [await next_text(room) for _ in range(3)] == [f"missed {i}" for i in range(3)]
            assert {info["name"] for info in room.members.values()} == {"ada"}  # bob left
        async with join_real(server, "bob", since=last_seen) as (_, bobs):
            assert [await next_text(bobs) for _ in range(3)] == [f"missed {i}" for i in range(3)]
        async with join_real(server, "ada") as (ada, _):
            for i in range(3, 6):
                await ada.publish(ROOM, {"text": f"missed {i}"})
        # 7 messages, 5 kept: bob, who saw seq 1, cannot be given a gap-free replay.
        recoveries: list[Any] = []
        async with connect(server.ws_url("/connect"), token="bob", timeout=TIMEOUT) as bob:
            bobs = await bob.subscribe(ROOM, since=last_seen, on_recovered=recoveries.append)
            assert [(r.complete, r.recovered) for r in recoveries] == [(False, 0)]
            assert bobs.seq == 7
            page = await bobs.history(limit=50)
            assert [m["seq"] for m in page["messages"]] == [3, 4, 5, 6, 7]
    # The history is in the file: a new server process still has it.
    with serve("examples.chat.app:app", env=env) as server:
        async with join_real(server, "carol") as (carol, _):
            page = await carol.history(ROOM, limit=50)
            assert page["messages"][-1]["data"]["text"] == "missed 5"
            assert page["seq"] == 7


@pytest.mark.anyio
@pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
async def test_two_workers_and_a_second_server_over_redis(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    redis_server.flush()
    env = {"NEXIOS_CHANNELS_URL": redis_server.url()}

    # uvicorn's workers share one listening socket and the kernel picks the worker of each
    # connection, so members of a --workers 2 server may all land in one process. The
    # second server is another process for certain: its members and the first server's
    # must hear each other through Redis. Both use the app's default history,
    # chat-history.db in the working directory: one file.
    def run(*args: str) -> contextlib.AbstractContextManager[Server]:
        return serve("examples.chat.app:app", env=env, args=args, cwd=tmp_path)

    with run("--workers", "2") as workers, run() as single:
        homes = [workers, workers, single, single]
        async with contextlib.AsyncExitStack() as stack:
            clients: list[Client] = []
            rooms: list[Subscription] = []
            pids: list[str] = []
            for i, server in enumerate(homes):
                client, room = await stack.enter_async_context(
                    join_real(server, f"user{i}", "chat:multi")
                )
                clients.append(client)
                rooms.append(room)
                line = f"user{i} connected"
                log = await asyncio.to_thread(server.wait_for_log, line, TIMEOUT)
                pids.append(re.findall(rf"{line} \(pid (\d+)\)", log)[0])
            assert pids[2] == pids[3] and pids[2] not in pids[:2], pids
            for i, client in enumerate(clients):
                await client.publish("chat:multi", {"text": f"from user{i}"})
                # Sent one after the other, so every client sees the same order.
                for room in rooms:
                    message = await room.get(TIMEOUT)
                    assert (message.seq, message.data["text"]) == (i + 1, f"from user{i}")
            # Presence and history are shared too, whichever process answers.
            texts = [f"from user{i}" for i in range(len(clients))]
            names = [f"user{i}" for i in range(len(clients))]
            async with join_real(workers, "late0", "chat:multi") as (late, room):
                assert sorted(i["name"] for i in room.members.values()) == sorted([*names, "late0"])
                page = await late.history("chat:multi", limit=50)
                assert [m["data"]["text"] for m in page["messages"]] == texts
                async with join_real(single, "late1", "chat:multi") as (late, room):
                    everyone = sorted([*names, "late0", "late1"])
                    assert sorted(i["name"] for i in room.members.values()) == everyone
                    page = await late.history("chat:multi", limit=50)
                    assert [m["data"]["text"] for m in page["messages"]] == texts
    assert (tmp_path / "chat-history.db").exists()
