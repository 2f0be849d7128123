"""examples/chat: rooms, history, presence, typing, validation, rate limit, recovery.

In-process tests go through ``TestClient`` with the memory layer and memory history;
the others run ``nexios run examples.chat.app:app`` (one worker with SQLite history,
and two workers over Redis) and talk to it with the ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from nexios.history import HistoryLimits
from nexios.testing import TestClient, WebSocketTestSession
from nexios.websockets import ChannelBox
from tests.support.redis import REDIS_SERVER, RedisServer, redis_server  # noqa: F401
from tests.support.server import Server, serve

TIMEOUT = 5.0
ROOM = "lobby"
GROUP = f"chat:{ROOM}"


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


def next_of(ws: WebSocketTestSession, kind: str, limit: int = 20) -> dict[str, Any]:
    """The next message of type ``kind`` (skipping others, e.g. presence updates)."""
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind!r} message within {limit} messages")


@contextlib.contextmanager
def joined(
    client: TestClient, name: str, room: str = ROOM, since: int | None = None
) -> Iterator[tuple[WebSocketTestSession, dict[str, Any]]]:
    """A session that joined ``room``, and the server's ``joined`` reply."""
    query = f"/ws?name={name}&room={room}" + (f"&since={since}" if since is not None else "")
    with client.websocket_connect(query) as ws:
        yield ws, next_of(ws, "joined")


def seed(client: TestClient, count: int, group: str = GROUP) -> None:
    """Put ``count`` messages in the room's history as the app would."""

    async def send_all() -> None:
        for i in range(count):
            message = {"type": "message", "id": "seed", "name": "seed", "text": f"m{i}", "ts": 0}
            await ChannelBox.group_send(group, message, save_history=True, seq_field="seq")

    client.run(send_all())


def test_the_page_and_its_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/static/app.js"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "dropSocket" in script.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/missing.js").status_code == 404


def test_history_on_join_is_the_last_50(client: TestClient) -> None:
    seed(client, 60)
    with joined(client, "ada") as (_, reply):
        assert reply["replace"] is True
        assert reply["complete"] is True
        assert reply["last_seq"] == 60
        assert [m["text"] for m in reply["messages"]] == [f"m{i}" for i in range(10, 60)]
        assert [m["seq"] for m in reply["messages"]] == list(range(11, 61))


def test_messages_reach_their_room_only_and_are_saved(client: TestClient) -> None:
    with (
        joined(client, "ada") as (ada, _),
        joined(client, "bob") as (bob, _),
        joined(client, "carol", room="elsewhere") as (carol, _),
    ):
        bob.send_json({"type": "message", "text": "hi ada"})
        for ws in (ada, bob):
            message = next_of(ws, "message")
            assert message["text"] == "hi ada"
            assert message["name"] == "bob"
            assert message["seq"] == 1
        carol.send_json({"type": "ping"})
        assert carol.receive_json() == {"type": "pong"}  # nothing from lobby came first
        with joined(client, "dan") as (_, reply):
            assert [(m["name"], m["text"], m["seq"]) for m in reply["messages"]] == [
                ("bob", "hi ada", 1)
            ]


def test_presence_on_join_and_leave(client: TestClient) -> None:
    with joined(client, "ada") as (ada, first):
        assert [m["name"] for m in first["members"]] == ["ada"]
        with joined(client, "bob") as (_, second):
            assert [m["name"] for m in second["members"]] == ["ada", "bob"]
            assert {m["id"] for m in second["members"]} == {first["id"], second["id"]}
            update = next_of(ada, "presence")
            assert update == {
                "type": "presence",
                "event": "join",
                "member": {"id": second["id"], "name": "bob"},
                "reason": "joined",
            }
        update = next_of(ada, "presence")
        assert update["event"] == "leave"
        assert update["member"] == {"id": second["id"], "name": "bob"}
        assert [m.metadata["name"] for m in client.run(ChannelBox.presence(GROUP))] == ["ada"]


def test_typing_is_relayed_but_never_saved(client: TestClient) -> None:
    with joined(client, "ada") as (ada, _), joined(client, "bob") as (bob, bob_joined):
        bob.send_json({"type": "typing"})
        assert next_of(ada, "typing") == {"type": "typing", "id": bob_joined["id"], "name": "bob"}
        bob.send_json({"type": "message", "text": "done typing"})
        assert next_of(ada, "message")["text"] == "done typing"
    history = client.run(ChannelBox.show_history(GROUP))
    assert [entry.payload["type"] for entry in history] == ["message"]
    with joined(client, "carol") as (_, reply):
        assert [m["type"] for m in reply["messages"]] == ["message"]


# Each case: what the client sends after joining, and the error it must get back.
AFTER_JOIN_ERRORS = [
    (
        {"type": "message", "text": ""},
        "invalid_text",
        "Message must be 1 to 1000 characters.",
    ),
    (
        {"type": "message", "text": "x" * 1001},
        "invalid_text",
        "Message must be 1 to 1000 characters.",
    ),
    ({"type": "message"}, "missing_field", "Missing field: text."),
    ({"type": "dance"}, "unknown_type", "Unknown message type 'dance'."),
    ({"text": "no type"}, "missing_field", 'Every message is a JSON object with a "type".'),
    (["not", "an", "object"], "missing_field", 'Every message is a JSON object with a "type".'),
    ({"type": "resume", "since": -1}, "invalid_since", None),
    ({"type": "resume", "since": 2**63}, "invalid_since", None),
    ({"type": "resume", "since": 123456789012345678901234567890}, "invalid_since", None),
    ({"type": "resume", "since": 1.5}, "invalid_since", None),
    ({"type": "join", "name": "ada", "room": ROOM}, "already_joined", None),
]


@pytest.mark.parametrize(("sent", "code", "text"), AFTER_JOIN_ERRORS)
def test_invalid_messages_get_a_visible_error_and_the_connection_stays(
    client: TestClient, sent: Any, code: str, text: str | None
) -> None:
    with joined(client, "ada") as (ada, _):
        ada.send_json(sent)
        error = next_of(ada, "error")
        assert error["code"] == code
        if text is not None:
            assert error["message"] == text
        ada.send_json({"type": "message", "text": "still works"})
        assert next_of(ada, "message")["text"] == "still works"


def test_frames_that_are_not_json_text_get_an_error(client: TestClient) -> None:
    with joined(client, "ada") as (ada, _):
        ada.send_text("{broken")
        error = next_of(ada, "error")
        assert error["code"] == "invalid_json"
        assert error["message"].startswith("Invalid JSON")
        ada.send_bytes(b"\x00")
        assert next_of(ada, "error") == {
            "type": "error",
            "code": "binary_frame",
            "message": "Send JSON text frames, not binary ones.",
        }


@pytest.mark.parametrize(
    ("join", "code", "field", "text"),
    [
        ({"name": "", "room": ROOM}, "invalid_name", "name", "Name must be 1 to 32"),
        ({"name": "n" * 33, "room": ROOM}, "invalid_name", "name", "Name must be 1 to 32"),
        ({"name": "ada", "room": "Big Room"}, "invalid_room", "room", "Room must be 1 to 32"),
        ({"name": "ada", "room": "r" * 33}, "invalid_room", "room", "Room must be 1 to 32"),
        ({"name": "ada"}, "missing_field", "room", "Missing field: room."),
        ({"room": ROOM}, "missing_field", "name", "Missing field: name."),
    ],
)
def test_bad_joins_are_refused_and_the_client_can_try_again(
    client: TestClient, join: dict[str, Any], code: str, field: str, text: str
) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "join", **join})
        error = ws.receive_json()
        assert error["type"] == "error"
        assert (error["code"], error["field"]) == (code, field)
        assert error["message"].startswith(text)
        ws.send_json({"type": "message", "text": "too early"})
        assert ws.receive_json() == {
            "type": "error",
            "code": "not_joined",
            "message": "Join a room first.",
        }
        ws.send_json({"type": "join", "name": "ada", "room": ROOM})
        assert next_of(ws, "joined")["name"] == "ada"


def test_bad_join_in_the_query_string_is_reported(client: TestClient) -> None:
    with client.websocket_connect("/ws?name=ada&room=NO!") as ws:
        assert ws.receive_json()["code"] == "invalid_room"
        ws.send_json({"type": "join", "name": "ada", "room": "ok-room"})
        assert next_of(ws, "joined")["room"] == "ok-room"


@pytest.mark.parametrize("since", ["-1", "1.5", "\u00b2", "9223372036854775808", "9" * 30])
def test_bad_since_in_the_query_string_is_reported(client: TestClient, since: str) -> None:
    with client.websocket_connect(f"/ws?name=ada&room={ROOM}&since={since}") as ws:
        assert ws.receive_json()["code"] == "invalid_since"
        ws.send_json({"type": "join", "name": "ada", "room": ROOM, "since": 0})
        assert next_of(ws, "joined")["complete"] is True


def test_more_than_5_messages_a_second_are_refused(client: TestClient) -> None:
    with joined(client, "ada") as (ada, _):
        for i in range(6):
            ada.send_json({"type": "message", "text": f"spam {i}"})
        replies = [next_of(ada, kind) for kind in ["message"] * 5 + ["error"]]
        assert [r["text"] for r in replies[:5]] == [f"spam {i}" for i in range(5)]
        assert replies[5] == {
            "type": "error",
            "code": "rate_limited",
            "message": "Slow down: at most 5 messages per second.",
        }
    assert len(client.run(ChannelBox.show_history(GROUP))) == 5


def test_recovery_with_since_sends_what_was_missed(client: TestClient) -> None:
    with joined(client, "ada") as (ada, _):
        with joined(client, "bob") as (bob, _):
            ada.send_json({"type": "message", "text": "before"})
            last_seen = next_of(bob, "message")["seq"]
        for text in ("while away 1", "while away 2"):
            ada.send_json({"type": "message", "text": text})
            next_of(ada, "message")
        with joined(client, "bob", since=last_seen) as (bob, reply):
            assert reply["replace"] is False
            assert reply["complete"] is True
            assert [m["text"] for m in reply["messages"]] == ["while away 1", "while away 2"]
            assert reply["last_seq"] == 3
            bob.send_json({"type": "resume", "since": 2})
            recovered = next_of(bob, "recovered")
            assert recovered["since"] == 2
            assert [m["seq"] for m in recovered["messages"]] == [3]
            assert (recovered["replace"], recovered["complete"]) == (False, True)


@pytest.fixture
def small_history(chat_app: Any) -> Iterator[TestClient]:
    chat_app.channels.configure(history_limits=HistoryLimits(max_entries=5))
    with TestClient(chat_app, timeout=TIMEOUT) as client:
        yield client


def test_recovery_when_more_was_missed_than_history_keeps(small_history: TestClient) -> None:
    client = small_history
    seed(client, 8)  # history keeps 4..8 only
    with joined(client, "bob", since=1) as (bob, reply):
        assert reply["complete"] is False
        assert reply["replace"] is True
        assert [m["seq"] for m in reply["messages"]] == [4, 5, 6, 7, 8]
        bob.send_json({"type": "resume", "since": 2})
        recovered = next_of(bob, "recovered")
        assert (recovered["complete"], recovered["replace"]) == (False, True)
        bob.send_json({"type": "resume", "since": 3})  # 4..8 are all there
        recovered = next_of(bob, "recovered")
        assert (recovered["complete"], recovered["replace"]) == (True, False)
        assert [m["seq"] for m in recovered["messages"]] == [4, 5, 6, 7, 8]


def test_recovery_from_a_seq_the_history_never_had(client: TestClient) -> None:
    seed(client, 2)
    with joined(client, "bob", since=99) as (_, reply):
        assert reply["complete"] is False
        assert reply["replace"] is True
        assert [m["seq"] for m in reply["messages"]] == [1, 2]


# ---------------------------------------------------------------------- real servers


async def receive(ws: ClientConnection, kind: str, limit: int = 50) -> dict[str, Any]:
    """The next message of type ``kind`` on a real connection (bounded wait)."""
    for _ in range(limit):
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind!r} message within {limit} messages")


@contextlib.asynccontextmanager
async def join_real(
    server: Server, name: str, room: str = ROOM, since: int | None = None
) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    async with connect(server.ws_url("/ws"), open_timeout=TIMEOUT) as ws:
        join: dict[str, Any] = {"type": "join", "name": name, "room": room}
        if since is not None:
            join["since"] = since
        await ws.send(json.dumps(join))
        yield ws, await receive(ws, "joined")


@pytest.mark.anyio
async def test_over_a_real_server_with_sqlite_history(tmp_path: Path) -> None:
    env = {
        "NEXIOS_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}",
        "NEXIOS_HISTORY_MAX_ENTRIES": "5",
    }
    with serve("examples.chat.app:app", env=env) as server:
        async with join_real(server, "ada") as (ada, _):
            async with join_real(server, "bob") as (bob, bob_joined):
                assert [m["name"] for m in bob_joined["members"]] == ["ada", "bob"]
                await bob.send(json.dumps({"type": "typing"}))
                assert (await receive(ada, "typing"))["name"] == "bob"
                await bob.send(json.dumps({"type": "message", "text": "hello"}))
                last_seen = (await receive(bob, "message"))["seq"]
                await bob.send(json.dumps({"type": "message", "text": ""}))
                error = await receive(bob, "error")
                assert error["message"] == "Message must be 1 to 1000 characters."
            # bob's join was skipped while waiting for typing, "hello" while waiting here.
            update = await receive(ada, "presence")
            assert (update["event"], update["member"]["name"]) == ("leave", "bob")
            for i in range(3):
                await ada.send(json.dumps({"type": "message", "text": f"missed {i}"}))
                await receive(ada, "message")
        async with join_real(server, "bob", since=last_seen) as (_, reply):
            assert (reply["complete"], reply["replace"]) == (True, False)
            assert [m["text"] for m in reply["messages"]] == ["missed 0", "missed 1", "missed 2"]
        async with join_real(server, "ada") as (ada, _):
            for i in range(3, 6):
                await ada.send(json.dumps({"type": "message", "text": f"missed {i}"}))
                await receive(ada, "message")
        # 7 messages, 5 kept: bob, who saw seq 1, cannot be given a gap-free page.
        async with join_real(server, "bob", since=last_seen) as (_, reply):
            assert (reply["complete"], reply["replace"]) == (False, True)
            assert [m["seq"] for m in reply["messages"]] == [3, 4, 5, 6, 7]
    # The history is in the file: a new server process still has it.
    with serve("examples.chat.app:app", env=env) as server:
        async with join_real(server, "carol") as (_, reply):
            assert [m["text"] for m in reply["messages"]][-1] == "missed 5"
            assert reply["last_seq"] == 7


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
            clients: list[ClientConnection] = []
            pids: list[str] = []
            for i, server in enumerate(homes):
                ws, _ = await stack.enter_async_context(join_real(server, f"user{i}", "multi"))
                clients.append(ws)
                line = f"user{i} joined room multi"
                log = await asyncio.to_thread(server.wait_for_log, line, TIMEOUT)
                pids.append(re.findall(rf"{line} \(pid (\d+)\)", log)[0])
            assert pids[2] == pids[3] and pids[2] not in pids[:2], pids
            last = clients[-1]
            await last.send(json.dumps({"type": "ping"}))
            await receive(last, "pong")
            for i, ws in enumerate(clients):
                await ws.send(json.dumps({"type": "message", "text": f"from user{i}"}))
                # Sent one after the other, so every client sees the same order.
                for other in clients:
                    assert (await receive(other, "message"))["text"] == f"from user{i}"
            # Presence and history are shared too, whichever process answers.
            texts = [f"from user{i}" for i in range(len(clients))]
            names = [f"user{i}" for i in range(len(clients))]
            async with join_real(workers, "late0", "multi") as (_, reply):
                assert sorted(m["name"] for m in reply["members"]) == sorted([*names, "late0"])
                assert [m["text"] for m in reply["messages"]] == texts
                async with join_real(single, "late1", "multi") as (_, reply):
                    everyone = sorted([*names, "late0", "late1"])
                    assert sorted(m["name"] for m in reply["members"]) == everyone
                    assert [m["text"] for m in reply["messages"]] == texts
    assert (tmp_path / "chat-history.db").exists()
