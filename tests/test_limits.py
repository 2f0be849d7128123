"""nexios.limits: size, rate, connections per address and idle time, on by default.

Unit tests pin the token bucket and the size arithmetic; in-process tests check what a
handler and a client see (``WebSocketDisconnect(code)``, the close code, one warning);
over a real server, hostile clients are closed one by one with their codes while 50
healthy clients keep echoing without a single disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from nexios import NexiosApp, WebSocketDisconnect
from nexios.exceptions import ConfigurationError
from nexios.limits import Limits, MessageLimiter
from nexios.testing import TestClient, WebSocketDenied
from nexios.websockets import WebSocket, WebSocketConsumer
from tests.support.server import serve, wait_for

KIB = 1024


def text(data: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> dict[str, Any]:
    return {"type": "websocket.receive", "bytes": data}


# --------------------------------------------------------------------------- token bucket


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(rate: float | None, burst: int, clock: Clock | None = None) -> MessageLimiter:
    return MessageLimiter(Limits(messages_per_second=rate, burst=burst), clock=clock or Clock())


def test_bucket_allows_a_burst_then_refuses() -> None:
    bucket = limiter(10, 3)
    assert [bucket.check(text("m")) for _ in range(3)] == [False] * 3
    assert bucket.tokens == 0
    assert bucket.check(text("m")) is True
    assert bucket.violation is not None and bucket.violation[0] == 1008
    assert "messages_per_second=10 (burst=3)" in bucket.violation[1]


def test_bucket_refills_at_the_rate_and_caps_at_the_burst() -> None:
    clock = Clock()
    bucket = limiter(10, 3, clock)
    for _ in range(3):
        assert not bucket.check(text("m"))
    clock.now = 0.1  # +1 token, found by the message itself (no tick in between)
    assert not bucket.check(text("m"))
    assert bucket.check(text("m"))

    clock = Clock()
    fresh = limiter(10, 3, clock)
    clock.now = 60.0
    fresh.tick()  # a long quiet spell earns no more than the burst
    assert fresh.tokens == 3
    assert [fresh.check(text("m")) for _ in range(4)] == [False, False, False, True]


def test_bucket_accumulates_fractions() -> None:
    clock = Clock()
    bucket = limiter(2.5, 1, clock)
    assert not bucket.check(text("m"))
    clock.now = 0.2
    bucket.tick()
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.check(text("m"))  # half a token is not a message

    clock = Clock()
    bucket = limiter(2.5, 1, clock)
    assert not bucket.check(text("m"))
    for now in (0.1, 0.2, 0.3, 0.4):
        clock.now = now
        bucket.tick()
    assert not bucket.check(text("m"))


def test_sustained_rate_at_the_limit_is_allowed_beyond_it_refused() -> None:
    clock = Clock()
    bucket = limiter(100, 10, clock)
    for i in range(1, 2001):  # 20 s at exactly 100/s, ticks once a second
        clock.now = i / 100
        assert not bucket.check(text("m")), i
        if i % 100 == 0:
            bucket.tick()
    clock = Clock()
    bucket = limiter(100, 10, clock)
    refused_at = None
    for i in range(1, 2001):  # 110/s: the burst covers only the first second or so
        clock.now = i / 110
        if bucket.check(text("m")):
            refused_at = i
            break
    assert refused_at is not None and 100 < refused_at < 150


def test_at_most_burst_plus_rate_times_t_pass() -> None:
    clock = Clock()
    bucket = limiter(50, 20, clock)
    passed = 0
    for step in range(1, 1001):  # a client trying 1000/s for 1 s, ticks every 0.1 s
        clock.now = step / 1000
        if bucket.check(text("m")):
            break
        passed += 1
        if step % 100 == 0:
            bucket.tick()
    assert passed <= 20 + 50 * clock.now + 1


def test_tick_reports_idle_time() -> None:
    clock = Clock(100.0)
    bucket = MessageLimiter(Limits(), clock=clock)
    assert bucket.tick(101.0) == 1.0
    bucket.check(text("hello"))
    assert bucket.tick(102.5) == 0.0
    assert bucket.tick(110.0) == 7.5


def test_no_rate_limit_means_no_refusal() -> None:
    bucket = limiter(None, 1)
    assert not any(bucket.check(text("m")) for _ in range(10_000))
    assert bucket.tick(1.0) == 0.0


# --------------------------------------------------------------------------- message size


@pytest.mark.parametrize(
    ("message", "broken"),
    [
        (text("a" * 64 * KIB), False),
        (text("a" * (64 * KIB + 1)), True),
        (text("é" * (32 * KIB)), False),  # 2 bytes each: exactly 64 KiB
        (text("é" * (32 * KIB) + "a"), True),
        (text("€" * 21_846), True),  # 3 bytes each: 65,538 bytes in 21,846 characters
        (text("😀" * (16 * KIB)), False),
        (text("😀" * (16 * KIB) + "a"), True),
        (binary(b"\x00" * 64 * KIB), False),
        (binary(b"\x00" * (64 * KIB + 1)), True),
        (text(""), False),
        (binary(b""), False),
    ],
)
def test_size_is_counted_in_utf8_bytes(message: dict[str, Any], broken: bool) -> None:
    bucket = MessageLimiter(Limits(), clock=Clock())
    assert bucket.check(message) is broken
    if broken:
        assert bucket.violation is not None and bucket.violation[0] == 1009


# --------------------------------------------------------------------------- settings


def test_defaults() -> None:
    limits = Limits()
    assert (
        limits.max_message_size,
        limits.messages_per_second,
        limits.burst,
        limits.max_connections_per_client,
        limits.idle_timeout,
    ) == (64 * KIB, 100.0, 1000, 100, 300.0)
    assert NexiosApp().limits == Limits.from_env({}) == limits


def test_from_env() -> None:
    env = {
        "NEXIOS_MAX_MESSAGE_SIZE": "1024",
        "NEXIOS_MESSAGES_PER_SECOND": "2.5",
        "NEXIOS_MESSAGE_BURST": "7",
        "NEXIOS_MAX_CONNECTIONS_PER_CLIENT": "off",
        "NEXIOS_IDLE_TIMEOUT": "0",
    }
    assert Limits.from_env(env) == Limits(1024, 2.5, 7, None, None)
    assert not Limits.unlimited().per_message
    with pytest.raises(ConfigurationError, match="NEXIOS_MAX_MESSAGE_SIZE"):
        Limits.from_env({"NEXIOS_MAX_MESSAGE_SIZE": "64k"})
    with pytest.raises(ConfigurationError, match="NEXIOS_MESSAGE_BURST"):
        Limits.from_env({"NEXIOS_MESSAGE_BURST": "off"})


def test_env_reaches_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXIOS_IDLE_TIMEOUT", "12")
    assert NexiosApp().limits.idle_timeout == 12.0
    assert NexiosApp(limits=Limits(idle_timeout=5)).limits.idle_timeout == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_size": 0},
        {"max_message_size": 1.5},
        {"messages_per_second": -1},
        {"burst": 0},
        {"max_connections_per_client": 0},
        {"idle_timeout": 0},
    ],
)
def test_bad_limits_fail_early(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Limits(**kwargs)


def test_app_refuses_something_that_is_not_limits() -> None:
    with pytest.raises(ConfigurationError, match="Limits"):
        NexiosApp(limits={"max_message_size": 10})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- in process


def recording_app(limits: Limits) -> tuple[NexiosApp, list[int]]:
    """``/echo`` echoes text and records the code of the WebSocketDisconnect it sees."""
    codes: list[int] = []
    app = NexiosApp(limits=limits)

    @app.ws_route("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect as disconnect:
            codes.append(disconnect.code)

    class Consumer(WebSocketConsumer):
        encoding = "json"

        async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    app.add_ws_route(Consumer.as_route("/consumer"))
    return app, codes


def test_oversized_message_closes_1009_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    app, codes = recording_app(Limits(max_message_size=100))
    payload = "SECRET-PAYLOAD" * 10
    with caplog.at_level(logging.DEBUG, logger="nexios"), TestClient(app) as client:
        with client.websocket_connect("/echo") as ws:
            ws.send_text("fine")
            assert ws.receive_text() == "fine"
            ws.send_text(payload)
            assert ws.wait_closed() == 1009
            assert ws._session.close_reason == "message too big"
        with client.websocket_connect("/consumer") as ws:
            ws.send_text("[" * 101)
            assert ws.wait_closed() == 1009
    assert codes == [1009, 1009]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "WebSocket /echo from testclient:50000: message of 140 bytes exceeds " in (
        warnings[0].getMessage()
    )
    assert "max_message_size=100; closing with 1009" in warnings[0].getMessage()
    assert "SECRET-PAYLOAD" not in caplog.text


def test_flood_closes_1008_after_the_burst() -> None:
    app, codes = recording_app(Limits(messages_per_second=1, burst=5))
    with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        for i in range(20):
            ws.send_text(str(i))
        echoed: list[str] = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                echoed.append(ws.receive_text())
    assert closed.value.code == 1008 and closed.value.reason == "rate limit exceeded"
    assert len(echoed) >= 5
    assert codes == [1008]


def test_connections_per_client_refused_with_429(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = recording_app(Limits(max_connections_per_client=2))
    with caplog.at_level(logging.WARNING, logger="nexios"), TestClient(app) as client:
        first = client.websocket_connect("/echo").__enter__()
        with client.websocket_connect("/echo") as second:
            with pytest.raises(WebSocketDenied) as denied, client.websocket_connect("/echo"):
                pass
            assert denied.value.status_code == 429
            second.send_text("still served")
            assert second.receive_text() == "still served"
        first.close()
        assert app.websocket_stats() == {"open": 0, "clients": 0, "closing": 0}
        with client.websocket_connect("/echo") as again:
            again.send_text("admitted")
            assert again.receive_text() == "admitted"
    assert "max_connections_per_client=2; handshake refused (429)" in caplog.text


def test_idle_connection_closed_1001(caplog: pytest.LogCaptureFixture) -> None:
    app, codes = recording_app(Limits(idle_timeout=0.2))
    with caplog.at_level(logging.WARNING, logger="nexios"), TestClient(app) as client:
        with client.websocket_connect("/echo") as ws:
            assert ws.wait_closed() == 1001
            assert ws._session.close_reason == "idle timeout"
    assert codes == [1001]
    assert "(idle_timeout=0.2); closing with 1001" in caplog.text


def test_limits_off_means_no_limiter() -> None:
    app = NexiosApp(limits=Limits.unlimited())
    seen: list[Any] = []

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        seen.append(ws._limits)
        await ws.accept()
        await ws.send_text(str(len(await ws.receive_text())))

    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("x" * 1_000_000)
        assert ws.receive_text() == "1000000"
    assert seen == [None]


# --------------------------------------------------------------------------- real server


async def _closed_code(ws: ClientConnection) -> int | None:
    """Drain ``ws`` until it closes; the code the server sent (None: no close frame)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def _attack(url: str, send: Callable[[ClientConnection], Awaitable[None]]) -> int | None:
    async with connect(url, max_size=None, max_queue=None) as ws:
        reader = asyncio.create_task(_closed_code(ws))
        with contextlib.suppress(websockets.ConnectionClosed):
            await send(ws)
        return await asyncio.wait_for(reader, 10)


@pytest.mark.anyio
async def test_hostile_clients_closed_while_healthy_clients_echo() -> None:
    with serve("tests.support.security_app:room_app") as server:
        stop = asyncio.Event()
        rounds = [0] * 50
        failures: list[BaseException] = []

        async def healthy(index: int) -> None:
            try:
                async with connect(server.ws_url("/echo")) as ws:
                    while not stop.is_set():
                        message = f"{index}:{rounds[index]}"
                        await ws.send(message)
                        assert await asyncio.wait_for(ws.recv(), 10) == message
                        rounds[index] += 1
                        await asyncio.sleep(0.05)  # a polite client: 20 messages/s
            except BaseException as error:
                failures.append(error)
                raise

        tasks = [asyncio.create_task(healthy(i)) for i in range(50)]
        await _wait_async(lambda: min(rounds) >= 3 or bool(failures), 20)
        before = list(rounds)

        async def oversized(ws: ClientConnection) -> None:
            await ws.send("x" * (100 * KIB))

        async def over_server_cap(ws: ClientConnection) -> None:
            await ws.send("x" * (2 * 1024 * KIB))

        async def flood(ws: ClientConnection) -> None:
            for i in range(5000):
                await ws.send(str(i))

        async def invalid_json(ws: ClientConnection) -> None:
            await ws.send("{not json")

        async def binary(ws: ClientConnection) -> None:
            await ws.send(b"\x00\x01binary")

        codes = {
            "oversized": await _attack(server.ws_url("/echo"), oversized),
            "over-server-cap": await _attack(server.ws_url("/echo"), over_server_cap),
            "flood": await _attack(server.ws_url("/echo"), flood),
            "invalid-json-consumer": await _attack(server.ws_url("/consumer/json"), invalid_json),
            "binary-for-text-consumer": await _attack(server.ws_url("/consumer/text"), binary),
            "binary-for-iter_text": await _attack(server.ws_url("/echo"), binary),
        }
        async with connect(server.ws_url("/json")) as ws:  # invalid JSON, handled: stays open
            await ws.send("{not json")
            assert await ws.recv() == '{"error":"invalid JSON"}'
            await ws.send('{"ok": true}')
            assert await ws.recv() == '{"ok":true}'

        await _wait_async(
            lambda: all(r >= b + 3 for r, b in zip(rounds, before, strict=True)) or bool(failures),
            20,
        )
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert server.process.poll() is None, "the server must stay up"
        log = server.log()

    assert failures == []
    assert codes == {
        "oversized": 1009,
        "over-server-cap": 1009,
        "flood": 1008,
        "invalid-json-consumer": 1007,
        "binary-for-text-consumer": 1003,
        "binary-for-iter_text": 1003,
    }
    assert log.count("exceeds max_message_size=65536; closing with 1009") == 1
    assert log.count("more than messages_per_second=100 (burst=1000); closing with 1008") == 1


@pytest.mark.anyio
async def test_per_client_and_idle_limits_over_a_real_server() -> None:
    env = {"NEXIOS_MAX_CONNECTIONS_PER_CLIENT": "3", "NEXIOS_IDLE_TIMEOUT": "0.6"}
    with serve("tests.support.security_app:room_app", env=env) as server:
        url = server.ws_url("/echo")
        async with connect(url) as a, connect(url) as b, connect(url) as talker:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 429
            # The idle sweep closes a and b (nothing sent); talker keeps talking.
            idle = asyncio.gather(_closed_code(a), _closed_code(b))
            while not idle.done():
                await talker.send("ping")
                assert await asyncio.wait_for(talker.recv(), 5) == "ping"
                await asyncio.sleep(0.1)
            assert await idle == [1001, 1001]
            assert a.close_reason == "idle timeout"
            async with connect(url) as again:  # their slots are free again
                await again.send("in")
                assert await again.recv() == "in"
        wait_for(lambda: server.log().count("(idle_timeout=0.6); closing with 1001") >= 2)
        assert "max_connections_per_client=3; handshake refused (429)" in server.log()


async def _wait_async(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
