"""The HTTP side under a real server: ``nexios run`` (uvicorn) over TCP, httpx as the client.

The app is ``tests/support/http_app.py``. Streams are checked from both ends: what the
client reads, and — through the app's ``/status`` — that the server's generator ran its
``finally`` once the client went away.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support.server import Server, serve
from tests.support.sse import EventReader

pytestmark = pytest.mark.anyio
TIMEOUT = 10.0
DATA = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("static")
    (directory / "data.bin").write_bytes(DATA)
    return directory


@pytest.fixture(scope="module")
def server(static_dir: Path) -> Iterator[Server]:
    with serve("tests.support.http_app:app", env={"STATIC_DIR": str(static_dir)}) as running:
        yield running


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http:
        yield http


async def status(client: httpx.AsyncClient) -> dict[str, int]:
    reply: dict[str, int] = (await client.get("/status")).json()
    return reply


async def wait_until_streams_closed(client: httpx.AsyncClient) -> dict[str, int]:
    """Poll the server until every stream it opened has closed (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        counts = await status(client)
        if counts["opened"] == counts["closed"]:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"streams still open on the server: {counts}")
        await _pause()


async def _pause() -> None:
    await anyio.sleep(0.02)


async def read_events(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    reader, events = EventReader(), []
    async for line in lines:
        event = reader.feed(line)
        if event is not None:
            events.append(event)
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {events}")


async def test_sse_stream_resume_and_disconnect(client: httpx.AsyncClient) -> None:
    before = await status(client)
    async with client.stream("GET", "/events") as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        first = await read_events(response.aiter_lines(), 3)
    assert [event["id"] for event in first] == ["1", "2", "3"]
    assert first[0] == {"event": "tick", "id": "1", "data": '{"n":1}'}
    # A reconnecting EventSource sends the last id it saw; the stream resumes after it.
    headers = {"last-event-id": first[-1]["id"]}
    async with client.stream("GET", "/events", headers=headers) as response:
        resumed = await read_events(response.aiter_lines(), 2)
    assert [event["id"] for event in resumed] == ["4", "5"]
    counts = await wait_until_streams_closed(client)
    assert counts["opened"] == before["opened"] + 2


async def test_sse_keep_alive_comments_while_idle(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/events?every=3600&ping=0.05") as response:
        events = await read_events(response.aiter_lines(), 3)
    assert events[0]["id"] == "1"
    assert events[1:] == [{"comment": "ping"}, {"comment": "ping"}]
    await wait_until_streams_closed(client)


async def test_streaming_response_stops_when_the_client_leaves(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/forever") as response:
        lines = response.aiter_lines()
        assert [await anext(lines) for _ in range(3)] == ["line 1", "line 2", "line 3"]
    await wait_until_streams_closed(client)


async def test_cors_preflight_and_headers(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/db",
        headers={"origin": "https://app.example", "access-control-request-method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    simple = await client.get("/items/1", headers={"origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


async def test_lifespan_state_url_for_and_converted_params(
    client: httpx.AsyncClient, server: Server
) -> None:
    assert (await client.get("/db")).json() == {
        "db": "pool-1",
        "url": f"{server.http_url}/items/3",
    }
    assert (await client.get("/items/42")).json() == {"n": 42}
    assert (await client.get("/items/99999999999999999999999")).status_code == 404


async def test_an_unhandled_error_is_a_500_logged_once_by_the_server(
    client: httpx.AsyncClient, server: Server
) -> None:
    response = await client.get("/crash")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert "secret" not in response.text
    log = server.wait_for_log("ZeroDivisionError: secret internals")
    assert log.count("ZeroDivisionError: secret internals") == 1


async def test_range_request_on_a_static_file(client: httpx.AsyncClient) -> None:
    part = await client.get("/static/data.bin", headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    assert (await client.get("/static/data.bin")).content == DATA


async def test_body_limit_holds_for_a_streamed_upload(client: httpx.AsyncClient) -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 65536):
            yield b"x" * 65536

    small = await client.post("/count", content=chunks(512 * 1024))  # chunked, no length
    assert small.json() == {"size": 512 * 1024}
    declared = await client.post("/count", content=b"x" * (1024 * 1024 + 1))
    assert declared.status_code == 413
    try:
        streamed = await client.post("/count", content=chunks(4 * 1024 * 1024))
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server answered 413 and closed while the client was still sending
    else:
        assert streamed.status_code == 413
    assert (await client.get("/items/1")).status_code == 200  # the server is fine


async def test_large_upload_is_spooled_to_disk(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256)) * 12 * 1024  # 3 MiB: past the 1 MiB in-memory spool
    response = await client.post("/upload", files={"file": ("big.bin", payload)})
    reply: dict[str, Any] = response.json()
    assert reply == {
        "size": len(payload),
        "in_memory": False,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
