"""Counting through a real app: every message, byte, handshake outcome, close, broadcast,
delivery, eviction, drop, history append and recovery shows in ``/metrics`` exactly once;
with metrics off the connection's paths are the plain ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexios import NexiosApp
from nexios.exceptions import BackendUnavailableError, WebSocketDisconnect
from nexios.limits import Limits, MessageLimiter
from nexios.metrics import MULTIPROC_ENV, SAMPLE_EVERY, Metrics
from nexios.ops.meter import ConnectionMeter, MeteredLimiter
from nexios.runtime import OutboxLimits, OverflowPolicy
from nexios.security import AuthError
from nexios.testing import AsyncTestClient, WebSocketDenied
from nexios.websockets import Channel, ChannelBox, WebSocket
from tests.support.redis import RedisServer
from tests.test_metrics import samples, value
from tests.test_runtime import StuckPeer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


def counted_app(**options: Any) -> NexiosApp:
    options.setdefault("metrics", True)
    app = NexiosApp(**options)

    @app.ws_route("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])

    @app.ws_route("/room/{name}")
    async def room(ws: WebSocket, name: str) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, payload_type="text"), name)
        await ws.send_text("in")
        async for text in ws.iter_text():
            await ChannelBox.group_send(name, text)

    @app.ws_route("/refuse")
    async def refuse(ws: WebSocket) -> None:
        await ws.close()  # before accept: the handler refuses the handshake

    return app


def raw_scope(path: str) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
    }


async def stuck_member(app: NexiosApp, group: str, members: int) -> asyncio.Task[None]:
    """A member of ``group`` whose sends never complete; returns once the group has
    ``members`` members. The task ends when the member is closed."""
    stuck = StuckPeer()
    await stuck.incoming.put({"type": "websocket.connect"})
    task = asyncio.create_task(app(raw_scope(f"/room/{group}"), stuck.receive, stuck.send))
    await stuck.accepted.wait()
    async with asyncio.timeout(5):
        while len((await ChannelBox.show_groups()).get(group, ())) < members:
            await asyncio.sleep(0.01)
    return task


async def scrape(client: AsyncTestClient) -> bytes:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.content


async def test_every_message_and_byte_of_a_connection_is_counted_once() -> None:
    sent = ["hello", "héllo wörld", "€" * 10, ""]
    binary = [b"\x00\x01", b"x" * 1000]
    async with AsyncTestClient(counted_app()) as client:
        async with client.websocket_connect("/echo") as ws:
            for text in sent:
                await ws.send_text(text)
                assert await ws.receive_text() == text
            for data in binary:
                await ws.send_bytes(data)
                assert await ws.receive_bytes() == data
            text = await scrape(client)
            assert value(text, "nexios_connections") == 1
        nbytes = sum(len(t.encode()) for t in sent) + sum(len(b) for b in binary)
        text = await scrape(client)
    assert value(text, "nexios_messages_received_total") == 6
    assert value(text, "nexios_received_bytes_total") == nbytes
    assert value(text, "nexios_messages_sent_total") == 6
    assert value(text, "nexios_sent_bytes_total") == nbytes
    assert value(text, "nexios_connections") == 0
    assert value(text, "nexios_handshakes_total", outcome="accepted") == 1
    assert value(text, "nexios_connections_closed_total", code="1000") == 1


async def test_handshake_refusals_are_counted_by_reason() -> None:
    async def auth(ws: WebSocket) -> str:
        if ws.query_params.get("token") != "good":
            raise AuthError(401, "bad token")
        return "user"

    app = counted_app(
        allowed_origins=["https://ok.example"],
        limits=Limits(max_connections_per_client=1),
    )

    @app.ws_route("/private", auth=auth)
    async def private(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()

    async with AsyncTestClient(app) as client:
        for path, headers in (
            ("/nowhere", {}),
            ("/echo", {"origin": "https://evil.example"}),
            ("/private?token=bad", {}),
            ("/refuse", {}),
        ):
            with pytest.raises(WebSocketDisconnect):
                async with client.websocket_connect(path, headers=headers) as ws:
                    await ws.receive_text()
        async with client.websocket_connect("/private?token=good") as first:
            with pytest.raises(WebSocketDenied) as limit:
                async with client.websocket_connect("/echo") as ws:
                    await ws.receive_text()
            assert limit.value.status_code == 429
            await first.send_text("bye")
        text = await scrape(client)
    outcomes = {
        dict(labels)["outcome"]: v
        for (name, labels), v in samples(text).items()
        if name == "nexios_handshakes_total"
    }
    assert outcomes == {
        "accepted": 1,
        "unknown_path": 1,
        "origin": 1,
        "limit": 1,
        "auth": 1,
        "handler": 1,
    }
    # Only the accepted connection has a close to count.
    closes = [
        v for (name, _), v in samples(text).items() if name == "nexios_connections_closed_total"
    ]
    assert closes == [1]


async def test_broadcasts_are_counted_once_and_deliveries_per_member() -> None:
    app = counted_app()
    async with AsyncTestClient(app) as client:
        sessions = [client.websocket_connect("/room/lobby") for _ in range(3)]
        members = [await s.__aenter__() for s in sessions]
        for member in members:
            assert await member.receive_text() == "in"
        for i in range(5):
            await members[0].send_text(f"m{i}")
        for member in members:
            assert [await member.receive_text() for _ in range(5)] == [f"m{i}" for i in range(5)]
        text = await scrape(client)
        assert value(text, "nexios_groups") == 1
        assert value(text, "nexios_group_members") == 3
        for session in sessions:
            await session.__aexit__(None, None, None)
        text = await scrape(client)
    assert value(text, "nexios_broadcasts_total") == 5
    assert value(text, "nexios_deliveries_total") == 15
    # Direct sends ("in" to each member) and deliveries, each counted once.
    assert value(text, "nexios_messages_sent_total") == 3 + 15
    assert value(text, "nexios_sent_bytes_total") == 3 * len("in") + 15 * 2
    assert value(text, "nexios_messages_received_total") == 5
    assert value(text, "nexios_group_members") == 0
    # One group message in SAMPLE_EVERY (and one direct send in as many per connection)
    # is timed: 5 broadcasts and 3 + 5 sends sample nothing yet.
    assert SAMPLE_EVERY > 8 and value(text, "nexios_send_seconds_count") == 0


async def test_sampled_sends_are_timed() -> None:
    async with AsyncTestClient(counted_app()) as client:
        async with client.websocket_connect("/echo") as ws:
            for i in range(SAMPLE_EVERY * 2):
                await ws.send_text(str(i))
                assert await ws.receive_text() == str(i)
        text = await scrape(client)
    assert value(text, "nexios_send_seconds_count") == 2


async def test_an_evicted_member_is_counted_by_reason_and_its_close_code() -> None:
    app = counted_app(outbox=OutboxLimits(max_messages=4))
    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/room/lobby") as healthy:
            assert await healthy.receive_text() == "in"
            stuck_app = await stuck_member(app, "lobby", members=2)
            for i in range(10):
                await ChannelBox.group_send("lobby", f"m{i}")
                assert await healthy.receive_text() == f"m{i}"
            async with asyncio.timeout(5):
                await stuck_app
            text = await scrape(client)
    assert value(text, "nexios_evictions_total", reason="outbox_full") == 1
    assert value(text, "nexios_evictions_total", reason="send_timeout") == 0
    assert value(text, "nexios_connections_closed_total", code="1013") == 1


async def test_messages_dropped_by_a_drop_policy_are_counted() -> None:
    app = counted_app(outbox=OutboxLimits(max_messages=2, policy=OverflowPolicy.DROP_NEWEST))
    async with AsyncTestClient(app) as client:
        stuck_app = await stuck_member(app, "lobby", members=1)
        # "in" is in flight (its send never completes); then 2 queue and 8 are dropped.
        for i in range(10):
            await ChannelBox.group_send("lobby", f"m{i}")
        text = await scrape(client)
        assert value(text, "nexios_outbox_drops_total") == 8
        assert app.channels.dropped == 8
        stuck_app.cancel()
        await asyncio.gather(stuck_app, return_exceptions=True)


async def test_history_appends_and_recoveries_are_counted() -> None:
    app = counted_app()
    async with AsyncTestClient(app) as client:
        for i in range(3):
            await ChannelBox.group_send("news", f"n{i}", save_history=True)
        # Joins with `since` go through the runtime, as the protocol endpoint's do.
        probe = Probe(app)
        assert (await probe.join("news", 1)).complete
        assert not (await probe.join("news", 1, epoch="another-epoch")).complete
        text = await scrape(client)
    assert value(text, "nexios_history_append_seconds_count") == 3
    assert value(text, "nexios_broadcasts_total") == 3
    assert value(text, "nexios_recoveries_total", result="complete") == 1
    assert value(text, "nexios_recoveries_total", result="incomplete") == 1


class Probe:
    """Joins a group through the runtime with a socket the test holds (the protocol
    endpoint's way of recovering)."""

    def __init__(self, app: NexiosApp) -> None:
        self.app = app

    async def join(self, group: str, since: int, epoch: str | None = None) -> Any:
        peer = StuckPeer()
        ws = WebSocket(raw_scope("/echo"), peer.receive, peer.send)
        await peer.incoming.put({"type": "websocket.connect"})
        await ws.accept()
        channel = Channel(ws, payload_type="text")
        page = await self.app.channels.read_history(group, limit=0)
        return await self.app.channels.join(
            channel, group, since=since, epoch=page.epoch if epoch is None else epoch
        )


async def test_publish_errors_and_the_layer_link_are_counted(redis_server: RedisServer) -> None:
    with RedisServer() as redis:
        app = counted_app(channels_url=redis.url())
        async with AsyncTestClient(app) as client:
            text = await scrape(client)
            assert value(text, "nexios_layer_up") == 1
            redis.stop()
            with pytest.raises(BackendUnavailableError):
                await ChannelBox.group_send("lobby", "lost")
            async with asyncio.timeout(10):
                while value(await scrape(client), "nexios_layer_up") != 0:
                    await asyncio.sleep(0.05)
            redis.start()
            async with asyncio.timeout(10):
                while value(text := await scrape(client), "nexios_layer_up") != 1:
                    await asyncio.sleep(0.05)
    assert value(text, "nexios_publish_errors_total") == 1
    assert value(text, "nexios_broadcasts_total") == 0
    assert value(text, "nexios_layer_reconnects_total") == 1


async def test_with_metrics_off_a_connection_has_the_plain_paths() -> None:
    seen: dict[str, Any] = {}
    app = NexiosApp(metrics=False)

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        seen["limiter"] = type(ws._limits)
        seen["send"] = ws._send
        seen["transmit"] = ws._transmit

    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/ws"):
            pass
        assert (await client.get("/metrics")).status_code == 404
    assert app.ops.metrics is None and app.channels.metrics is None
    assert seen["limiter"] is MessageLimiter
    assert not isinstance(getattr(seen["send"], "__self__", None), ConnectionMeter)
    assert seen["send"] is seen["transmit"]


def test_metrics_follow_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXIOS_METRICS", "1")
    assert NexiosApp().ops.metrics is not None
    assert NexiosApp(metrics=False).ops.metrics is None
    monkeypatch.setenv("NEXIOS_METRICS", "off")
    assert NexiosApp().ops.metrics is None
    monkeypatch.delenv("NEXIOS_METRICS")
    assert NexiosApp().ops.metrics is None


def test_a_bad_metrics_option_says_what_it_takes() -> None:
    with pytest.raises(TypeError, match=r"takes True, False or a nexios\.metrics\.Metrics"):
        NexiosApp(metrics="yes")  # type: ignore[arg-type]


def test_the_metered_limiter_still_applies_the_limits() -> None:
    metrics = Metrics()
    limiter = MeteredLimiter(Limits(max_message_size=10), metrics)
    assert not limiter.check({"type": "websocket.receive", "text": "short"})
    assert limiter.check({"type": "websocket.receive", "bytes": b"x" * 11})
    assert limiter.violation is not None and limiter.violation[0] == 1009
    unlimited = MeteredLimiter(Limits.unlimited(), metrics)
    assert not unlimited.check({"type": "websocket.receive", "bytes": b"x" * 10**6})
    assert metrics.received_messages == 3
    assert metrics.received_bytes == 5 + 11 + 10**6


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("text"), st.text(max_size=40)),
            st.tuples(st.just("bytes"), st.binary(max_size=40)),
            st.tuples(st.just("tick"), st.floats(min_value=0, max_value=2)),
        ),
        max_size=200,
    ),
    max_size=st.integers(min_value=1, max_value=60),
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
)
def test_the_metered_limiter_decides_as_the_limiter_does(
    steps: list[tuple[str, Any]], max_size: int, rate: float, burst: int
) -> None:
    now = [0.0]
    limits = Limits(max_message_size=max_size, messages_per_second=rate, burst=burst)
    plain = MessageLimiter(limits, clock=lambda: now[0])
    metered = MeteredLimiter(limits, Metrics(), clock=lambda: now[0])
    for kind, given_value in steps:
        if kind == "tick":
            now[0] += given_value
            assert plain.tick(now[0]) == metered.tick(now[0])
            continue
        message = {"type": "websocket.receive", kind: given_value}
        assert plain.check(message) == metered.check(message), (kind, given_value)
        assert plain.violation == metered.violation
        if plain.violation is not None:
            return  # the connection is closed at the first violation
    assert (plain.received, plain.allowance) == (metered.received, metered.allowance)
