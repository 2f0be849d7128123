"""nexios.server: hand-built frames parse as websockets frames; the sink under real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

import nexios.server
from nexios.server import (
    FRAMES_EXTENSION,
    FrameSink,
    NexiosWebSocketProtocol,
    build_frame,
    frame_once_protocol_path,
)

pytestmark = pytest.mark.anyio

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
_TIMEOUT = 5.0


def _client_parse(data: bytes) -> list[Frame]:
    """Feed bytes to websockets' client-side parser (which rejects masked frames)."""
    client = websockets.ClientProtocol(parse_uri("ws://test/"), state=State.OPEN, max_size=None)
    client.receive_data(data)
    assert client.parser_exc is None, client.parser_exc
    return [event for event in client.events_received() if isinstance(event, Frame)]


# ---------------------------------------------------------------------- build_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [True, False])
def test_build_frame_round_trips_through_the_client_parser(size: int, text: bool) -> None:
    payload = (b"x" * size) if text else bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    frame = build_frame(payload, text=text)

    (parsed,) = _client_parse(frame)

    assert parsed.opcode is (Opcode.TEXT if text else Opcode.BINARY)
    assert parsed.fin
    assert bytes(parsed.data) == payload
    # Byte for byte what websockets itself would send as a server.
    assert frame == parsed.serialize(mask=False)


@pytest.mark.parametrize(("size", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_build_frame_picks_the_shortest_length_encoding(size: int, header: int) -> None:
    assert len(build_frame(b"a" * size, text=True)) == header + size


def test_frames_concatenate_into_a_stream() -> None:
    stream = build_frame(b"one", text=True) + build_frame(b"\x00" * 300, text=False)
    frames = _client_parse(stream)
    assert [(f.opcode, bytes(f.data)) for f in frames] == [
        (Opcode.TEXT, b"one"),
        (Opcode.BINARY, b"\x00" * 300),
    ]


# ---------------------------------------------------------------------- version pin


def test_protocol_path_offered_for_the_tested_uvicorn() -> None:
    assert uvicorn.__version__.startswith("0.54")
    assert frame_once_protocol_path() == "nexios.server:NexiosWebSocketProtocol"


@pytest.mark.parametrize("version", ["0.53.9", "0.55.0", "1.0.0"])
def test_protocol_path_withheld_outside_the_tested_range(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nexios.server.uvicorn, "__version__", version)
    assert frame_once_protocol_path() is None


def test_exports() -> None:
    for name in nexios.server.__all__:
        assert hasattr(nexios.server, name), name


# ---------------------------------------------------------------------- real uvicorn


@contextlib.asynccontextmanager
async def serve(app: App, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn with our protocol on this loop; yield its ws:// URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ws=NexiosWebSocketProtocol,
        http="h11",
        lifespan="off",
        log_level="warning",
        ws_per_message_deflate=options.pop("ws_per_message_deflate", False),
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        async with asyncio.timeout(_TIMEOUT):
            await task
        sock.close()


def _sink(scope: dict[str, Any]) -> FrameSink | None:
    sink: FrameSink | None = scope.get("extensions", {}).get(FRAMES_EXTENSION)
    return sink


async def test_sink_frames_interleave_with_asgi_sends() -> None:
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

    async with serve(app) as url, connect(url, compression=None) as client:
        await client.send("go")
        received = [await client.recv() for _ in range(6)]

    assert received == ["1 asgi", "2 sink é", b"3 asgi", big, "", "6 asgi"]


async def test_sink_refuses_after_close() -> None:
    results: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        assert sink is not None
        await receive()
        await send({"type": "websocket.accept"})
        assert not sink.closed
        await send({"type": "websocket.close", "code": 1000})
        results.extend([sink.closed, sink.write(build_frame(b"late", text=True))])

    async with serve(app) as url, connect(url, compression=None) as client:
        with pytest.raises(websockets.ConnectionClosedOK):
            await client.recv()

    assert results == [True, False]


async def test_extension_absent_when_deflate_is_negotiated() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        offered = FRAMES_EXTENSION in scope.get("extensions", {})
        await send({"type": "websocket.send", "text": f"sink={offered}"})
        await receive()

    async with serve(app, ws_per_message_deflate=True) as url:
        async with connect(url, compression="deflate") as client:
            assert await client.recv() == "sink=False"
        # The server allows deflate but this client did not ask: frames stay plain.
        async with connect(url, compression=None) as client:
            assert await client.recv() == "sink=True"


async def test_abort_disconnects_the_peer_and_the_app() -> None:
    app_saw: list[dict[str, Any]] = []
    after_abort: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sink = _sink(scope)
        assert sink is not None
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        sink.abort()
        after_abort.extend([sink.closed, sink.write(build_frame(b"gone", text=True))])
        app_saw.append(await receive())

    async with serve(app) as url, connect(url, compression=None) as client:
        await client.send("abort, please")
        with pytest.raises(websockets.ConnectionClosedError):
            async with asyncio.timeout(_TIMEOUT):
                await client.recv()

    assert after_abort == [True, False]
    assert app_saw and app_saw[0]["type"] == "websocket.disconnect"
