"""The HTTP side of the wire: request heads that are too slow, too long or too many.

The guarded httptools protocol (``nexios run``'s default ``--http``) answers 408, 414,
431 and 503 and closes; the WebSocket wires answer an oversized handshake themselves
too (414/431), for servers running plain httptools or h11 in front of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.support.raw_socket import handshake_request, open_stream, read_http_response
from tests.support.wire import WIRE_NAMES, serve_app

pytestmark = pytest.mark.anyio

_TIMEOUT = 5.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text") or "?"})


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


async def _answer(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request``; the response status and whatever follows it until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    async with asyncio.timeout(_TIMEOUT):
        status, _, body = await read_http_response(reader)
        rest = await reader.read()  # EOF: the server closed the connection
    writer.close()
    return status, body + rest


async def _dropped(reader: asyncio.StreamReader) -> bool:
    """True if the server closed or reset this connection (within 0.2 s)."""
    try:
        async with asyncio.timeout(0.2):
            return await reader.read() == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def _http_get(port: int) -> int:
    status, _ = await _answer(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return status


# ---------------------------------------------------------------------- request heads


@pytest.mark.parametrize("wire", WIRE_NAMES)
@pytest.mark.parametrize("http", ["guarded", "httptools"])
async def test_handshake_path_over_8_kib_is_414_and_closed(wire: str, http: str) -> None:
    options: dict[str, Any] = {} if http == "guarded" else {"http": "httptools"}
    async with serve_app(app, wire=wire, **options) as url:
        port = _port(url)
        status, _ = await _answer(port, handshake_request(port, "/" + "a" * 9000))
        assert status == 414
        async with connect(url + "a" * 8000) as ws:  # just under the limit: fine
            await ws.send("hi")
            assert await ws.recv() == "hi"


@pytest.mark.parametrize("wire", WIRE_NAMES)
async def test_http_path_over_8_kib_is_414(wire: str) -> None:
    async with serve_app(app, wire=wire) as url:
        request = b"GET /" + b"p" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert (await _answer(_port(url), request))[0] == 414


@pytest.mark.parametrize("wire", WIRE_NAMES)
async def test_endless_header_is_431_after_16_kib(wire: str) -> None:
    async with serve_app(app, wire=wire) as url:
        port = _port(url)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.create_task(read_http_response(reader))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        async with asyncio.timeout(_TIMEOUT):
            while not answer.done() and sent < 1_000_000:
                writer.write(b"v" * 4096)
                sent += 4096
                await asyncio.sleep(0.001)
            status, _, _ = await answer
        assert status == 431
        assert sent < 100_000  # refused near the cap, not after a megabyte
        writer.transport.abort()
        assert await _http_get(port) == 200


async def test_many_short_headers_within_the_cap_are_fine() -> None:
    async with serve_app(app, wire=WIRE_NAMES[0]) as url:
        headers = "".join(f"X-H{n}: {'v' * 50}\r\n" for n in range(200))  # ~12 KB
        request = f"GET / HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        assert (await _answer(_port(url), request.encode()))[0] == 200


# ---------------------------------------------------------------------- slow heads


async def test_slow_request_head_is_closed_after_the_handshake_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_HANDSHAKE_TIMEOUT", "0.6")
    async with serve_app(app, wire=WIRE_NAMES[0]) as url:
        port = _port(url)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        answer = asyncio.create_task(read_http_response(reader))
        trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
        async with asyncio.timeout(_TIMEOUT):
            for byte in trickle:  # one byte every 20 ms: never a complete head
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.02)
            status, _, _ = await answer
            assert await reader.read() == b""
        elapsed = time.monotonic() - started
        assert status == 408
        assert 0.55 <= elapsed < 1.5, elapsed
        writer.close()
        # A client that sends its head at once is not affected; nor one that idles
        # after its head is complete (that is the app's business, not a slowloris).
        async with connect(url) as ws:
            await asyncio.sleep(1.0)
            await ws.send("still open")
            assert await ws.recv() == "still open"


async def test_kept_alive_connection_gets_the_timeout_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_HANDSHAKE_TIMEOUT", "0.5")
    async with serve_app(app, wire=WIRE_NAMES[0], timeout_keep_alive=30) as url:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(_TIMEOUT):
            assert (await read_http_response(reader))[0] == 200
            await asyncio.sleep(0.8)  # idle between requests: the keep-alive's business
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # then a head that never ends
            started = time.monotonic()
            assert (await read_http_response(reader))[0] == 408
        assert time.monotonic() - started < 1.2
        writer.close()


# ---------------------------------------------------------------------- connection cap


async def test_at_the_cap_the_oldest_unfinished_head_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_MAX_CONNECTIONS", "6")
    async with serve_app(app, wire=WIRE_NAMES[0]) as url:
        port = _port(url)
        slow = []
        for _ in range(6):  # slowloris: every slot taken by a head that never ends
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n")
            slow.append((reader, writer))
            await asyncio.sleep(0.02)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):  # healthy clients still get in, a slow socket going each time
                ws = await stack.enter_async_context(connect(url))
                await ws.send("hi")
                assert await ws.recv() == "hi"
            async with asyncio.timeout(_TIMEOUT):
                dropped = [await _dropped(reader) for reader, _ in slow]
        assert dropped == [True, True, True, False, False, False]  # the oldest three
        for _, writer in slow:
            writer.transport.abort()


async def test_at_the_cap_with_only_live_connections_new_ones_get_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXIOS_MAX_CONNECTIONS", "4")
    async with serve_app(app, wire=WIRE_NAMES[0]) as url:
        port = _port(url)
        streams = [await open_stream(port) for _ in range(4)]
        status, body = await _answer(port, handshake_request(port, "/"))
        assert status == 503 and b"Too many connections" in body
        streams[0][1].transport.abort()
        async with asyncio.timeout(_TIMEOUT):
            while True:  # the freed slot is usable as soon as the server saw it go
                try:
                    async with connect(url) as ws:
                        await ws.send("in")
                        assert await ws.recv() == "in"
                    break
                except Exception:
                    await asyncio.sleep(0.05)
        for _, writer in streams[1:]:
            writer.transport.abort()
