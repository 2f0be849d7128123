"""The WebSocket wires under real uvicorn: ASGI semantics, the frame sink, protocol rules.

Every test runs on both wires (``picows``: the compiled one ``nexios run`` uses by
default; ``sansio``: the fallback), in this test's event loop, against real sockets:
the websockets client for well-behaved peers, bare streams for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from nexios.server import FRAMES_EXTENSION, build_frame
from tests.support.autobahn_app import raw_app as echo_app
from tests.support.raw_socket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    client_frame,
    close_payload,
    open_stream,
    read_frame,
)
from tests.support.wire import WIRE_NAMES, serve_app

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("wire", WIRE_NAMES)]

_TIMEOUT = 5.0


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def recorder(seen: list[dict[str, Any]]) -> Any:
    """An app that accepts, then records the one message that ends the connection."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    return app


async def _closed_with(reader: asyncio.StreamReader) -> int:
    """Read frames until a close frame; its code (1005 when empty)."""
    async with asyncio.timeout(_TIMEOUT):
        while True:
            opcode, _, payload = await read_frame(reader)
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else 1005


# ---------------------------------------------------------------------- messages


async def test_echo_text_binary_unicode_large_and_fragmented(wire: str) -> None:
    big = bytes(range(256)) * 4000  # 1 MB: a 64-bit length
    async with serve_app(echo_app, wire=wire) as url, connect(url, max_size=None) as ws:
        for message in ["hello", "é, 中文, 🎉", "", b"\x00\xff", big, "x" * 70_000]:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(["frag", "mented", " text"])  # three frames, one message
        assert await ws.recv() == "fragmented text"
        await ws.send([b"a", b"", b"b"])
        assert await ws.recv() == b"ab"


async def test_many_messages_in_one_read_keep_their_order(wire: str) -> None:
    async with serve_app(echo_app, wire=wire) as url:
        reader, writer = await open_stream(_port(url))
        writer.write(b"".join(client_frame(TEXT, str(n).encode()) for n in range(500)))
        async with asyncio.timeout(_TIMEOUT):
            got = [(await read_frame(reader))[2] for _ in range(500)]
        assert got == [str(n).encode() for n in range(500)]
        writer.close()


async def test_client_close_reaches_the_app_and_is_answered(wire: str) -> None:
    seen: list[dict[str, Any]] = []
    app = recorder(seen)

    async with serve_app(app, wire=wire) as url, connect(url) as ws:
        await ws.close(4001, "bye now")
        assert ws.close_code == 4001
        async with asyncio.timeout(_TIMEOUT):
            while not seen:
                await asyncio.sleep(0.01)
    assert seen[0]["type"] == "websocket.disconnect"
    assert (seen[0]["code"], seen[0].get("reason")) == (4001, "bye now")


async def test_app_close_reaches_the_client_and_the_app(wire: str) -> None:
    after: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})
        after.append(await receive())
        with pytest.raises(RuntimeError, match=r"after sending 'websocket\.close'"):
            await send({"type": "websocket.send", "text": "late"})
        after.append("raised")

    async with serve_app(app, wire=wire) as url, connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4002, "done")
    assert after[0]["type"] == "websocket.disconnect" and after[0]["code"] == 4002
    assert after[1] == "raised"


async def test_abrupt_disconnect_reaches_the_app(wire: str) -> None:
    seen: list[dict[str, Any]] = []
    app = recorder(seen)

    async with serve_app(app, wire=wire) as url:
        _reader, writer = await open_stream(_port(url))
        writer.transport.abort()
        async with asyncio.timeout(_TIMEOUT):
            while not seen:
                await asyncio.sleep(0.01)
    assert seen[0]["type"] == "websocket.disconnect"


# ---------------------------------------------------------------------- handshake answers


async def test_close_before_accept_is_403_and_http_response_is_sent(wire: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.close"})
            return
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 429,
                "headers": [(b"x-why", b"busy")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"later", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b", please"})

    async with serve_app(app, wire=wire) as url:
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with connect(url + "deny"):
                pass
        assert denied.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url + "busy"):
                pass
        response = refused.value.response
        assert response.status_code == 429
        assert response.headers["x-why"] == "busy"
        assert response.body == b"later, please"


async def test_app_error_before_accept_is_500(wire: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("boom")

    async with serve_app(app, wire=wire) as url:
        with pytest.raises(websockets.InvalidStatus) as failed:
            async with connect(url):
                pass
        assert failed.value.response.status_code == 500


async def test_subprotocol_and_headers_reach_the_client(wire: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        assert scope["subprotocols"] == ["one", "two"]
        await send({"type": "websocket.accept", "subprotocol": "two", "headers": [(b"x-a", b"1")]})
        query = scope["query_string"].decode()
        await send({"type": "websocket.send", "text": f"{scope['path']}?{query}"})
        await receive()

    async with (
        serve_app(app, wire=wire) as url,
        connect(url + "p%20ath?q=1", subprotocols=["one", "two"]) as ws,
    ):
        assert ws.subprotocol == "two"
        assert ws.response.headers["x-a"] == "1"
        assert await ws.recv() == "/p ath?q=1"


# ---------------------------------------------------------------------- protocol errors


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([client_frame(TEXT, b"\xff\xfe")], 1007),
        ([client_frame(TEXT, b"ok", fin=False), client_frame(CONTINUATION, b"\xc3")], 1007),
        ([client_frame(TEXT, b"x", rsv=4)], 1002),
        ([client_frame(CONTINUATION, b"orphan")], 1002),
        ([client_frame(TEXT, b"a", fin=False), client_frame(TEXT, b"b")], 1002),
        ([client_frame(CLOSE, close_payload(1005))], 1002),
        ([client_frame(CLOSE, close_payload(999))], 1002),
        ([client_frame(0x3, b"")], 1002),
        ([client_frame(TEXT, b"unmasked", mask=False)], 1002),
        ([client_frame(PING, b"", fin=False)], 1002),
    ],
    ids=[
        "bad-utf8",
        "bad-utf8-fragmented",
        "rsv-bit",
        "orphan-continuation",
        "interleaved-message",
        "close-1005",
        "close-999",
        "reserved-opcode",
        "unmasked",
        "fragmented-ping",
    ],
)
async def test_protocol_errors_close_with_the_right_code(
    wire: str, frames: list[bytes], code: int
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return

    async with serve_app(app, wire=wire) as url:
        reader, writer = await open_stream(_port(url))
        writer.write(b"".join(frames))
        assert await _closed_with(reader) == code
        async with asyncio.timeout(_TIMEOUT):
            assert await reader.read() == b""  # and the server closed the TCP connection
            while not seen or seen[-1]["type"] != "websocket.disconnect":
                await asyncio.sleep(0.01)
        writer.close()
    assert all(message["type"] != "websocket.receive" for message in seen)


@pytest.mark.parametrize(
    "after", [client_frame(CLOSE), client_frame(TEXT, b"late"), client_frame(PING)]
)
async def test_frames_after_a_close_in_the_same_read_are_ignored(wire: str, after: bytes) -> None:
    async with serve_app(echo_app, wire=wire) as url:
        reader, writer = await open_stream(_port(url))
        writer.write(client_frame(CLOSE, close_payload(4000, "bye")) + after)
        assert await _closed_with(reader) == 4000  # the close is answered, not a 1002
        writer.close()


async def test_invalid_utf8_floods_log_one_line(
    wire: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nexios.wire")
    async with serve_app(echo_app, wire=wire) as url:
        for _ in range(20):
            reader, writer = await open_stream(_port(url))
            writer.write(client_frame(TEXT, b"\xed\xa0\x80"))  # an encoded surrogate
            assert await _closed_with(reader) == 1007
            writer.close()
    lines = [r for r in caplog.records if r.name == "nexios.wire" and "UTF-8" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is None and "closing with 1007" in lines[0].getMessage()


async def test_message_over_max_size_is_1009_single_or_fragmented(wire: str) -> None:
    sizes: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            sizes.append(len(message["bytes"]))
            await send(message | {"type": "websocket.send"})

    async with serve_app(app, wire=wire, ws_max_size=1000) as url:
        reader, writer = await open_stream(_port(url))
        writer.write(client_frame(BINARY, b"x" * 5000))
        assert await _closed_with(reader) == 1009
        writer.close()
        reader, writer = await open_stream(_port(url))
        writer.write(client_frame(BINARY, b"x" * 600, fin=False))
        writer.write(client_frame(CONTINUATION, b"x" * 600))
        assert await _closed_with(reader) == 1009
        writer.close()
        async with connect(url) as ws:  # the limit itself passes
            await ws.send(b"y" * 1000)
            assert await ws.recv() == b"y" * 1000
    assert sizes == [1000]  # nothing over the limit reached the app


async def test_too_many_fragments_is_1009(wire: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXIOS_WS_MAX_FRAGMENTS", "50")
    async with serve_app(echo_app, wire=wire) as url:
        async with connect(url) as ws:  # 50 frames is fine (49 + an empty final one)
            await ws.send(["x"] * 49)
            assert await ws.recv() == "x" * 49
        reader, writer = await open_stream(_port(url))
        frames = [client_frame(TEXT, b"", fin=False)]
        frames += [client_frame(CONTINUATION, b"", fin=False) for _ in range(100)]
        writer.write(b"".join(frames))
        assert await _closed_with(reader) == 1009
        writer.close()


async def test_ping_flood_is_1008_and_pings_within_the_limit_get_pongs(
    wire: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXIOS_WS_MAX_CONTROL_FRAMES", "20")
    async with serve_app(echo_app, wire=wire) as url:
        reader, writer = await open_stream(_port(url))
        writer.write(b"".join(client_frame(PING, str(n).encode()) for n in range(10)))
        async with asyncio.timeout(_TIMEOUT):
            pongs = [await read_frame(reader) for _ in range(10)]
        assert pongs == [(PONG, True, str(n).encode()) for n in range(10)]
        writer.write(b"".join(client_frame(PING, b"") for _ in range(30)))
        assert await _closed_with(reader) == 1008
        writer.close()


# ---------------------------------------------------------------------- keepalive, shutdown


async def test_keepalive_closes_a_peer_that_never_answers_pings(wire: str) -> None:
    async with serve_app(echo_app, wire=wire, ws_ping_interval=0.2, ws_ping_timeout=0.3) as url:
        reader, writer = await open_stream(_port(url))
        async with connect(url) as healthy:  # the websockets client answers pings
            opcode, _, _ = await read_frame(reader)
            assert opcode == PING  # the server pings the silent peer...
            assert await _closed_with(reader) == 1011  # ...and gives up on it
            await healthy.send("still here")
            assert await healthy.recv() == "still here"
        writer.close()


async def test_shutdown_closes_with_1001_for_client_and_app(wire: str) -> None:
    seen: list[dict[str, Any]] = []
    app = recorder(seen)

    async with serve_app(app, wire=wire) as url:
        ws = await connect(url)
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(_TIMEOUT):
            await ws.recv()
    assert ws.close_code == 1001
    assert seen[0]["code"] == 1001


# ---------------------------------------------------------------------- frame sink


def _sink(scope: dict[str, Any]) -> Any:
    return scope.get("extensions", {}).get(FRAMES_EXTENSION)


async def test_sink_frames_interleave_with_asgi_sends(wire: str) -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        assert sink is not None
        assert await receive() == {"type": "websocket.connect"}
        assert not sink.write(build_frame(b"too early", text=True))  # before accept
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.send", "text": "1 asgi"})
        assert sink.write(build_frame("2 sink é".encode(), text=True))
        await send({"type": "websocket.send", "bytes": b"3 asgi"})
        assert sink.write(build_frame(big, text=False))
        assert sink.write(build_frame(b"", text=True))
        await send({"type": "websocket.send", "text": "6 asgi"})
        assert sink.buffered() >= 0
        await receive()

    async with serve_app(app, wire=wire) as url, connect(url, compression=None) as client:
        await client.send("go")
        received = [await client.recv() for _ in range(6)]

    assert received == ["1 asgi", "2 sink é", b"3 asgi", big, "", "6 asgi"]


async def test_sink_refuses_after_close(wire: str) -> None:
    results: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        assert not sink.closed
        await send({"type": "websocket.close", "code": 1000})
        results.extend([sink.closed, sink.write(build_frame(b"late", text=True))])

    async with serve_app(app, wire=wire) as url, connect(url, compression=None) as client:
        with pytest.raises(websockets.ConnectionClosedOK):
            await client.recv()

    assert results == [True, False]


async def test_extension_absent_when_deflate_is_negotiated(wire: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        offered = FRAMES_EXTENSION in scope.get("extensions", {})
        await send({"type": "websocket.send", "text": f"sink={offered}"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})

    async with serve_app(app, wire=wire, ws_per_message_deflate=True) as url:
        async with connect(url, compression="deflate") as client:
            assert await client.recv() == "sink=False"
            await client.send("compressible " * 100)
            assert await client.recv() == "compressible " * 100
        # The server allows deflate but this client did not ask: frames stay plain.
        async with connect(url, compression=None) as client:
            assert await client.recv() == "sink=True"


async def test_abort_disconnects_the_peer_and_the_app(wire: str) -> None:
    app_saw: list[dict[str, Any]] = []
    after_abort: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        sink.abort()
        after_abort.extend([sink.closed, sink.write(build_frame(b"gone", text=True))])
        app_saw.append(await receive())

    async with serve_app(app, wire=wire) as url, connect(url, compression=None) as client:
        await client.send("abort, please")
        with pytest.raises(websockets.ConnectionClosedError):
            async with asyncio.timeout(_TIMEOUT):
                await client.recv()

    assert after_abort == [True, False]
    assert app_saw and app_saw[0]["type"] == "websocket.disconnect"


async def test_on_writable_fires_once_when_a_stalled_peer_drains(wire: str) -> None:
    events: list[str] = []
    ready = asyncio.Event()
    drained = asyncio.Event()
    chunk = build_frame(b"z" * 65_000, text=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        while not sink.writing_paused:  # the peer does not read: fill its buffers
            assert sink.write(chunk)
            await asyncio.sleep(0)

        def writable() -> None:
            events.append(f"writable paused={sink.writing_paused}")
            drained.set()

        sink.on_writable(writable)
        events.append("registered")
        ready.set()
        await receive()

    async with serve_app(app, wire=wire) as url:
        reader, writer = await open_stream(_port(url))
        async with asyncio.timeout(_TIMEOUT):
            await ready.wait()
            assert not drained.is_set()
            while not drained.is_set():  # now read: the server's buffer drains
                await reader.read(1 << 20)
        await asyncio.sleep(0.05)
        writer.close()
    assert events == ["registered", "writable paused=False"]


async def test_on_writable_is_not_called_after_the_connection_is_lost(wire: str) -> None:
    events: list[str] = []
    ready = asyncio.Event()
    chunk = build_frame(b"z" * 65_000, text=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        while not sink.writing_paused:
            assert sink.write(chunk)
            await asyncio.sleep(0)
        sink.on_writable(lambda: events.append("called"))
        ready.set()
        events.append((await receive())["type"])
        await asyncio.sleep(0.05)

    async with serve_app(app, wire=wire) as url:
        _reader, writer = await open_stream(_port(url), rcvbuf=4096)
        async with asyncio.timeout(_TIMEOUT):
            await ready.wait()
            writer.transport.abort()
            while len(events) < 1:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    assert events == ["websocket.disconnect"]


async def test_on_writable_when_not_paused_runs_next_iteration_and_none_cancels(
    wire: str,
) -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        sink.on_writable(lambda: events.append("first"))
        events.append("registered")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        sink.on_writable(lambda: events.append("cancelled"))
        sink.on_writable(None)
        await asyncio.sleep(0.05)
        await send({"type": "websocket.close"})

    async with serve_app(app, wire=wire) as url, connect(url) as client:
        with pytest.raises(websockets.ConnectionClosedOK):
            await client.recv()
    assert events == ["registered", "first"]


async def test_an_empty_message_then_close_ends_the_connection(wire: str) -> None:
    # picows sends a frame as writelines([header, payload]): here the payload is empty.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": ""})
        await send({"type": "websocket.send", "bytes": b""})
        await send({"type": "websocket.close", "code": 4000})

    async with serve_app(app, wire=wire) as url, connect(url) as client:
        assert await client.recv() == ""
        assert await client.recv() == b""
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        async with asyncio.timeout(_TIMEOUT):
            await client.wait_closed()  # the server closed its side of the TCP connection too


# ---------------------------------------------------------------------- backpressure


async def test_app_send_waits_while_the_peer_does_not_read(wire: str) -> None:
    progress: list[int] = []
    backlog: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})
        for n in range(400):
            await send({"type": "websocket.send", "bytes": b"b" * 65_536})
            progress.append(n)
            backlog.append(sink.buffered())

    async with serve_app(app, wire=wire) as url:
        reader, writer = await open_stream(_port(url), rcvbuf=4096)
        writer.transport.pause_reading()
        async with asyncio.timeout(_TIMEOUT):
            while True:  # until the app's sends stop making progress
                seen = len(progress)
                await asyncio.sleep(0.2)
                if len(progress) == seen:
                    break
        assert len(progress) < 400
        writer.transport.resume_reading()
        async with asyncio.timeout(_TIMEOUT):
            while len(progress) < 400:
                await reader.read(1 << 20)
        writer.close()
    # Sends waited for the buffer to drain instead of piling 26 MB into it.
    assert max(backlog) < 1024 * 1024


async def test_pings_with_unread_pongs_stop_reading_instead_of_growing_the_buffer(
    wire: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXIOS_WS_MAX_CONTROL_FRAMES", "off")
    peak = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        await receive()
        await send({"type": "websocket.accept"})

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], sink.buffered())
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        try:
            await receive()
        finally:
            sampler.cancel()

    async with serve_app(app, wire=wire, ws_ping_interval=None) as url:
        _reader, writer = await open_stream(_port(url), rcvbuf=4096)
        writer.transport.pause_reading()  # never read the pongs
        writer.transport.set_write_buffer_limits(high=1 << 30)
        burst = client_frame(PING, b"p" * 125) * 10_000  # 1.3 MB of pongs owed per burst
        for _ in range(20):
            writer.write(burst)
            await asyncio.sleep(0.05)
        sent_all = writer.transport.get_write_buffer_size() == 0
        writer.transport.abort()
    # Reading paused once the server's write buffer passed its high-water mark: the
    # pings wait in the kernel and in this client, not as pongs in the server's memory.
    assert peak[0] < 512 * 1024, peak[0]
    assert not sent_all  # the server stopped taking pings
