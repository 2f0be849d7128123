"""``nexios.client``, the Python client: its logic against a scripted server, then the
real endpoint under ``nexios run`` (memory; two workers on Redis) with faults — a server
restart recovered from sqlite history, Redis killed for 5 s, history flushed (new
epoch), tokens that expire while messages flow — and ``nexios listen``.

The scripted server is a real WebSocket server (``websockets``) whose every frame the
test writes, so the client's ordering, recovery, retries and timers are checked exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from nexios.client import Client, Message, Recovery, connect
from nexios.exceptions import ProtocolError
from tests.support.redis import REDIS_SERVER, RedisServer, redis_server  # noqa: F401
from tests.support.server import Server, free_port, wait_for
from tests.support.server import serve as serve_app

pytestmark = pytest.mark.anyio
TIMEOUT = 5.0
APP = "tests.support.protocol_app:app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------- a scripted server


class Peer:
    """The server side of one client connection, scripted by the test."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.done = asyncio.Event()

    async def recv(self) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
            if frame.get("type") != "pong":
                return frame

    async def expect(self, kind: str) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == kind, frame
        return frame

    async def reply(self, command: dict[str, Any], result: dict[str, Any] | None = None) -> None:
        await self.send({"id": command["id"], "result": result or {}})

    async def refuse(self, command: dict[str, Any], code: int, message: str = "no") -> None:
        await self.send({"id": command["id"], "error": {"code": code, "message": message}})

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def message(self, seq: int, epoch: str = "e1", group: str = "room") -> None:
        await self.send(
            {"type": "message", "group": group, "seq": seq, "epoch": epoch, "data": seq}
        )

    async def accept(self, groups: dict[str, Any] | None = None, **result: Any) -> dict[str, Any]:
        """Answer the connect frame; each listed group gets ``groups[name]`` or a fresh start."""
        connect = await self.expect("connect")
        answers = {
            name: (groups or {}).get(
                name, {"epoch": "e1", "seq": 0, "complete": True, "recovered": 0}
            )
            for name in connect.get("groups") or {}
        }
        await self.reply(
            connect, {"client": "c1", "ping": 0, "expires": None, **result, "groups": answers}
        )
        return connect

    async def close(self, code: int = 1012) -> None:
        await self.ws.close(code)
        self.done.set()


class Script:
    """A WebSocket server speaking ``nexios.v1``; ``await script.peer()`` per connection."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        peer = Peer(ws)
        await self.peers.put(peer)
        closed = asyncio.ensure_future(ws.wait_closed())
        await asyncio.wait(
            {closed, asyncio.ensure_future(peer.done.wait())}, return_when="FIRST_COMPLETED"
        )

    async def peer(self) -> Peer:
        return await asyncio.wait_for(self.peers.get(), TIMEOUT)


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[Script]:
    script = Script()
    async with serve(script.handler, "127.0.0.1", 0, subprotocols=["nexios.v1"]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        script.url = f"ws://127.0.0.1:{port}/connect"
        yield script


async def started(script: Script, client: Client, **result: Any) -> Peer:
    """Start ``client`` and accept its connect (``result`` fields in the reply)."""
    starting = asyncio.ensure_future(client.start())
    peer = await script.peer()
    await peer.accept(**result)
    await starting
    return peer


async def subscribed(
    script: Script, client: Client, peer: Peer, **options: Any
) -> tuple[Any, list[Recovery]]:
    """Subscribe to "room" (answered fresh at seq 0) and collect recoveries."""
    recoveries: list[Recovery] = []
    task = asyncio.ensure_future(
        client.subscribe("room", on_recovered=recoveries.append, **options)
    )
    command = await peer.expect("subscribe")
    await peer.reply(command, {"epoch": "e1", "seq": 0, "complete": True, "recovered": 0})
    return await task, recoveries


async def take(sub: Any, count: int) -> list[Any]:
    return [(await sub.get(TIMEOUT)).seq for _ in range(count)]


async def test_order_dedupe_and_a_gap_filled_from_history() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT)
        peer = await started(script, client)
        sub, recoveries = await subscribed(script, client, peer)
        for seq in (1, 2, 2, 1, 5, 4, 5):
            await peer.message(seq)
        history = await peer.expect("history")
        # Asked for what is missing: 3, and 4 unless it had arrived by then.
        assert (history["since"], history["epoch"]) == (2, "e1")
        assert history["limit"] in (1, 2)
        await peer.message(3)  # a copy while history is read: no harm
        page = [{"seq": seq, "data": seq} for seq in range(3, 3 + history["limit"])]
        await peer.reply(history, {"messages": page, "epoch": "e1", "seq": 5, "complete": True})
        assert await take(sub, 5) == [1, 2, 3, 4, 5]
        await peer.message(6)
        assert await take(sub, 1) == [6]
        assert recoveries == [] and sub.pending() == 0
        await client.close()


async def test_an_unfillable_gap_and_an_epoch_change_are_reported() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT)
        peer = await started(script, client)
        sub, recoveries = await subscribed(script, client, peer)
        await peer.message(1)
        await peer.message(4)
        history = await peer.expect("history")
        await peer.reply(history, {"messages": [], "epoch": "e1", "seq": 4, "complete": False})
        assert await take(sub, 2) == [1, 4]
        assert recoveries == [Recovery(False, 0, "gap")]
        await peer.message(1, epoch="e2")  # the history was lost: numbers start again
        await peer.message(2, epoch="e2")
        assert await take(sub, 2) == [1, 2]
        assert (sub.epoch, recoveries[-1]) == ("e2", Recovery(False, 0, "epoch"))
        await peer.send(
            {"type": "resync", "group": "room", "epoch": "e3", "seq": 10, "reason": "epoch"}
        )
        await peer.message(11, epoch="e3")
        assert await take(sub, 1) == [11]
        assert len(recoveries) == 3
        await client.close()


async def test_reconnect_resubscribes_from_the_position_and_merges_early_pushes() -> None:
    states: list[str] = []
    async with scripted() as script:
        client = connect(
            script.url, timeout=TIMEOUT, min_delay=0.01, on_state=lambda s, c: states.append(s)
        )
        peer = await started(script, client)
        sub, recoveries = await subscribed(script, client, peer, presence=True)
        for seq in (1, 2):
            await peer.message(seq)
        assert await take(sub, 2) == [1, 2]
        await peer.close(1012)
        peer = await script.peer()
        connect_frame = await peer.expect("connect")
        assert connect_frame["groups"] == {"room": {"since": 2, "epoch": "e1", "presence": True}}
        for seq in (2, 3, 4):  # replayed before the reply (2: already had it)
            await peer.message(seq)
        members = [{"id": "c1", "info": {"name": "ada"}}]
        answer = {"epoch": "e1", "seq": 9, "complete": True, "recovered": 2, "presence": members}
        await peer.reply(connect_frame, {"client": "c1", "ping": 0, "groups": {"room": answer}})
        await peer.send({"type": "join", "group": "room", "member": {"id": "c2", "info": {}}})
        assert await take(sub, 2) == [3, 4]
        assert recoveries == [Recovery(True, 2, "subscribe")]
        await peer.send(
            {"type": "leave", "group": "room", "member": {"id": "c1", "info": {}}, "reason": "left"}
        )
        await peer.message(5)
        assert await take(sub, 1) == [5]
        assert sub.members == {"c2": {}}
        assert client.reconnects == 1
        assert states[:4] == ["connecting", "connected", "connecting", "connected"]
        # Again, from a position the server cannot serve any more: told, and on from its seq.
        await peer.close(1012)
        peer = await script.peer()
        connect_frame = await peer.expect("connect")
        assert connect_frame["groups"]["room"]["since"] == 5
        incomplete = {"epoch": "e1", "seq": 40, "complete": False, "recovered": 0}
        await peer.reply(connect_frame, {"client": "c1", "ping": 0, "groups": {"room": incomplete}})
        await peer.message(41)
        assert await take(sub, 1) == [41]
        assert recoveries[-1] == Recovery(False, 0, "subscribe")
        await client.close()


async def test_no_frame_within_ping_and_grace_replaces_the_socket() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT, min_delay=0.01, ping_grace=0.2)
        await started(script, client, ping=0.2)  # then silent
        began = time.monotonic()
        second = await script.peer()  # the server went silent: a new socket
        assert time.monotonic() - began >= 0.35
        await second.accept(ping=0)
        ping = asyncio.ensure_future(client.ping())
        await second.reply(await second.expect("ping"))
        await ping
        assert client.reconnects == 1
        await client.close()


async def test_server_pings_are_answered() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT)
        peer = await started(script, client, ping=25)
        await peer.send({"type": "ping"})
        assert json.loads(await asyncio.wait_for(peer.ws.recv(), TIMEOUT)) == {"type": "pong"}
        await client.close()


async def test_a_command_times_out_and_publish_retries_keep_their_key() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=0.3, retries=1, min_delay=0.01)
        peer = await started(script, client)
        publishing = asyncio.ensure_future(client.publish("room", {"n": 1}))
        first = await peer.expect("publish")
        second = await peer.expect("publish")  # no reply: retried once, same key
        assert first["idempotency_key"] == second["idempotency_key"]
        assert first["id"] != second["id"]
        with pytest.raises(ProtocolError) as caught:
            await publishing
        assert caught.value.code == 408
        await client.close()


async def test_a_publish_lost_with_its_connection_is_sent_again() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT, min_delay=0.01)
        peer = await started(script, client)
        publishing = asyncio.ensure_future(client.publish("room", "x", key="k1"))
        assert (await peer.expect("publish"))["idempotency_key"] == "k1"
        await peer.close(1012)
        peer = await script.peer()
        await peer.accept()
        again = await peer.expect("publish")
        assert again["idempotency_key"] == "k1"
        await peer.reply(again, {"seq": 7, "epoch": "e1"})
        assert await publishing == {"seq": 7, "epoch": "e1"}
        await client.close()


async def test_tokens_expired_refreshed_and_refused() -> None:
    handed: list[str] = []

    async def get_token() -> str:
        handed.append(f"t{len(handed) + 1}")
        return handed[-1]

    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT, get_token=get_token, min_delay=0.01)
        starting = asyncio.ensure_future(client.start())
        peer = await script.peer()
        frame = await peer.expect("connect")
        assert frame["token"] == "t1"
        await peer.refuse(frame, 419, "expired")  # the client gets a new one
        await peer.close(4001)
        peer = await script.peer()
        frame = await peer.expect("connect")
        assert frame["token"] == "t2"
        await peer.reply(frame, {"client": "c1", "ping": 0, "expires": 0.4, "groups": {}})
        await starting
        refresh = await peer.expect("refresh")  # half the lifetime later
        assert refresh["token"] == "t3"
        await peer.reply(refresh, {"expires": 600})
        assert client.reconnects == 0
        sub_task = asyncio.ensure_future(client.subscribe("room"))
        command = await peer.expect("subscribe")
        await peer.reply(command, {"epoch": "e1", "seq": 0, "complete": True, "recovered": 0})
        sub = await sub_task
        await peer.send(
            {"type": "disconnect", "code": 4500, "reason": "unauthorized", "reconnect": False}
        )
        await peer.close(4500)
        with pytest.raises(ProtocolError) as caught:
            await sub.get(TIMEOUT)
        assert caught.value.code == 4500
        assert client.state == "disconnected"
        with pytest.raises(ProtocolError):
            await client.publish("room", 1)
        await client.close()


async def test_a_full_queue_drops_the_oldest_and_says_so() -> None:
    async with scripted() as script:
        client = connect(script.url, timeout=TIMEOUT)
        peer = await started(script, client)
        sub, recoveries = await subscribed(script, client, peer, max_queue=3)
        for n in range(5):
            await peer.send({"type": "message", "group": "room", "data": n})
        await peer.message(1)
        ping = asyncio.ensure_future(client.ping())  # its reply comes after the pushes
        await peer.reply(await peer.expect("ping"))
        await ping
        assert [m.data for m in [await sub.get(TIMEOUT) for _ in range(3)]] == [3, 4, 1]
        assert recoveries == [Recovery(False, 0, "overflow")] * 3
        await client.close()


# ---------------------------------------------------------------------- a real server


class States:
    """``on_state`` for a client: counts connects, so a test can wait for the next one."""

    def __init__(self) -> None:
        self.connects = 0
        self.changed = asyncio.Event()

    def __call__(self, state: str, code: int | None) -> None:
        if state == "connected":
            self.connects += 1
        self.changed.set()

    async def connected(self, count: int) -> None:
        async with asyncio.timeout(30):
            while self.connects < count:
                self.changed.clear()
                await self.changed.wait()


async def post(server: Server, group: str, body: Any, live: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(
            f"{server.http_url}/publish/{group}", json=body, params={"live": "1"} if live else {}
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def receive(sub: Any, count: int) -> list[Message]:
    return [await sub.get(TIMEOUT * 2) for _ in range(count)]


async def test_the_real_endpoint_hooks_policies_and_publishers() -> None:
    with serve_app(APP) as server:
        url = server.ws_url("/connect")
        async with connect(url, timeout=TIMEOUT) as ada, connect(url, timeout=TIMEOUT) as bob:
            room = await ada.subscribe("room", presence=True)
            their = await bob.subscribe("room")
            live = await ada.subscribe("live:typing")
            first = await bob.publish("room", {"upper": "hi"}, key="k1")
            again = await bob.publish("room", {"upper": "hi"}, key="k1")
            assert first == again and first["seq"] == 1
            assert (await post(server, "room", {"from": "http"}))["seq"] == 2
            for sub in (room, their):
                got = await receive(sub, 2)
                assert [(m.seq, m.data) for m in got] == [
                    (1, {"upper": "HI"}),
                    (2, {"from": "http"}),
                ]
            assert await bob.publish("live:typing", "...") == {}
            assert await live.get(TIMEOUT) == Message("live:typing", "...")
            for group, code in (("secret:x", 403), ("Not A Group", 404)):
                with pytest.raises(ProtocolError) as caught:
                    await ada.subscribe(group)
                assert caught.value.code == code
            for data, group, code in (
                ({"reject": "spam"}, "room", 400),
                ("x", "readonly:news", 403),
            ):
                with pytest.raises(ProtocolError) as caught:
                    await ada.publish(group, data)
                assert caught.value.code == code
            assert set(room.members) == {ada.client_id, bob.client_id}
            assert room.members[bob.client_id]["name"] == "anonymous"
            await bob.close()
            assert (await ada.history("room", since=0))["seq"] == 2
            # bob's leave reached ada: ask for presence after it (the reply follows the push).
            members = await ada.presence("room")
            assert [m["id"] for m in members] == [ada.client_id]
            assert set(room.members) == {ada.client_id}
            assert room.pending() == 0


async def test_a_restarted_server_is_recovered_from_sqlite_history(tmp_path: Path) -> None:
    env = {"NEXIOS_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}"}
    port = free_port()
    states = States()
    recoveries: list[Recovery] = []
    client = connect(
        f"ws://127.0.0.1:{port}/connect", timeout=TIMEOUT, max_delay=0.5, on_state=states
    )
    try:
        with serve_app(APP, env=env, port=port) as server:
            sub = await client.subscribe("room", on_recovered=recoveries.append)
            for n in range(10):
                await post(server, "room", {"n": n})
            assert [m.seq for m in await receive(sub, 10)] == list(range(1, 11))
        # The server is gone; another process on the same history takes 50 messages.
        with serve_app(APP, env=env) as other:
            for n in range(10, 60):
                await post(other, "room", {"n": n})
        with serve_app(APP, env=env, port=port) as server:
            await states.connected(2)
            missed = await receive(sub, 50)
            assert [m.seq for m in missed] == list(range(11, 61))
            assert [m.data["n"] for m in missed] == list(range(10, 60))
            assert recoveries == [Recovery(True, 50, "subscribe")]
            await post(server, "room", {"n": 60})
            assert (await sub.get(TIMEOUT)).seq == 61
            assert sub.pending() == 0
    finally:
        await client.close()


def both_workers_started(server: Server) -> None:
    wait_for(lambda: server.log().count("Application startup complete") >= 2, timeout=20)


async def pids_of(subs: list[Any], clients: list[Client]) -> set[int]:
    return {sub.members[c.client_id]["pid"] for sub, c in zip(subs, clients, strict=True)}


async def publish_all(
    client: Client, group: str, name: str, count: int, failures: list[int]
) -> None:
    """Publish ``count`` messages, each retried with its key until the server has it."""
    for n in range(count):
        key = f"{name}-{n}"
        while True:
            try:
                await client.publish(group, {"p": name, "n": n}, key=key)
                break
            except ProtocolError as error:
                assert error.code in (408, 429, 500, 503), error
                failures.append(int(error.code))


@pytest.mark.slow
@pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
async def test_two_workers_on_redis_killed_for_5_seconds(tmp_path: Path) -> None:
    count = 150
    with RedisServer(durable=True) as redis:
        env = {"NEXIOS_CHANNELS_URL": redis.url()}
        with serve_app(APP, env=env, args=["--workers", "2"]) as server:
            url = server.ws_url("/connect")
            await asyncio.to_thread(both_workers_started, server)
            async with contextlib.AsyncExitStack() as stack:
                clients: list[Client] = []
                subs: list[Any] = []
                for _ in range(40):  # until both workers hold a subscriber (the kernel picks)
                    client = await stack.enter_async_context(
                        connect(url, timeout=TIMEOUT, max_delay=1)
                    )
                    clients.append(client)
                    subs.append(await client.subscribe("feed", presence=True))
                    if len(clients) >= 2 and len(await pids_of(subs, clients)) == 2:
                        break
                assert len(await pids_of(subs, clients)) == 2, "one worker took every connection"
                failures: list[int] = []
                publishers = [
                    asyncio.ensure_future(publish_all(clients[i], "feed", f"p{i}", count, failures))
                    for i in (0, -1)
                ]
                first = subs[0]
                seen = [await first.get(TIMEOUT) for _ in range(30)]
                redis.kill()
                await asyncio.sleep(5)  # the outage itself
                redis.start()
                await asyncio.wait_for(asyncio.gather(*publishers), 60)
                seen += await receive(first, 2 * count - 30)
                for sub in subs[1:]:
                    others = await receive(sub, 2 * count)
                    assert [m.seq for m in others] == [m.seq for m in seen]
                assert [m.seq for m in seen] == list(range(1, 2 * count + 1))
                published = sorted((m.data["p"], m.data["n"]) for m in seen)
                assert published == sorted((p, n) for p in ("p0", "p-1") for n in range(count))
                assert all(sub.pending() == 0 for sub in subs)
                # The outage hit publishes in flight (each one retried past the client's own
                # retries), yet each message is there once.
                assert failures and set(failures) <= {408, 503}


@pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
async def test_history_flushed_gives_a_new_epoch_and_the_client_is_told(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis_server.flush()
    env = {"NEXIOS_CHANNELS_URL": redis_server.url()}
    with serve_app(APP, env=env) as server:
        recoveries: list[Recovery] = []
        async with connect(server.ws_url("/connect"), timeout=TIMEOUT) as client:
            sub = await client.subscribe("room", on_recovered=recoveries.append)
            for n in range(3):
                await post(server, "room", {"n": n})
            old = await receive(sub, 3)
            redis_server.flush()  # the history's numbering is gone
            await post(server, "room", {"n": 3})
            new = await sub.get(TIMEOUT)
            assert (new.seq, new.data) == (1, {"n": 3})
            assert new.epoch != old[0].epoch
            assert recoveries == [Recovery(False, 0, "epoch")]


async def test_an_expiring_token_is_refreshed_while_messages_flow() -> None:
    with serve_app(APP, env={"PROTOCOL_TOKENS": "1"}) as server:

        async def get_token() -> str:
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{server.http_url}/token", params={"ttl": "2"})
                token: str = response.json()["token"]
                return token

        async with connect(
            server.ws_url("/connect"), get_token=get_token, timeout=TIMEOUT
        ) as client:
            sub = await client.subscribe("room")
            began = time.monotonic()
            sent = 0
            while time.monotonic() - began < 4.5:  # more than two lifetimes of a token
                await post(server, "room", {"n": sent})
                sent += 1
                await asyncio.sleep(0.05)
            got = await receive(sub, sent)
            assert [m.data["n"] for m in got] == list(range(sent))
            assert client.reconnects == 0
        async with httpx.AsyncClient() as http:
            issued = (await http.get(f"{server.http_url}/tokens")).json()["count"]
        assert issued >= 4  # the first, then at least one refresh per second


async def test_without_a_token_the_client_stops() -> None:
    with serve_app(APP, env={"PROTOCOL_TOKENS": "1"}) as server:
        client = connect(server.ws_url("/connect"), token="forged", timeout=TIMEOUT)
        with pytest.raises(ProtocolError) as caught:
            await client.start()
        assert caught.value.code == 4500
        assert client.state == "disconnected"
        await client.close()


# ---------------------------------------------------------------------- nexios listen


def test_nexios_listen_prints_a_groups_messages() -> None:
    with serve_app(APP) as server:
        for n in range(3):
            httpx.post(f"{server.http_url}/publish/news", json={"n": n}).raise_for_status()
        result = subprocess.run(
            [
                *(sys.executable, "-m", "nexios", "listen", server.ws_url("/connect"), "news"),
                *("--since", "0", "--count", "3"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(line["group"], line["seq"], line["data"]) for line in lines] == [
            ("news", n + 1, {"n": n}) for n in range(3)
        ]
        refused = subprocess.run(
            [sys.executable, "-m", "nexios", "listen", server.ws_url("/connect"), "secret:x"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 1
        assert "403" in refused.stderr
