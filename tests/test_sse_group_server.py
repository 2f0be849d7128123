"""A group as Server-Sent Events over a real ``nexios run``, read with httpx streaming.

- One process: publishers over HTTP while the page reads; the page drops its
  connection (and later the server ends it) while publishing goes on; each time it
  reconnects with ``Last-Event-ID`` and ends with every message once, in order.
- Two processes on one Redis: a publish on one reaches a page on the other; the page
  drops and reconnects to the *other* process, which recovers what it missed from the
  shared history.
- A page that stops reading (a bare socket with a tiny receive buffer) is evicted within
  its send deadline, leaves presence, and a healthy page of the same group misses
  nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis import REDIS_SERVER, RedisServer
from tests.support.server import serve
from tests.support.sse import Page, StreamReader

pytestmark = pytest.mark.anyio

APP = "tests.support.sse_app:app"
TIMEOUT = httpx.Timeout(10, read=None)  # the reader bounds its own waits


@contextlib.asynccontextmanager
async def opened(http: httpx.AsyncClient, url: str, page: Page) -> AsyncIterator[StreamReader]:
    """The page's stream (with its Last-Event-ID), past the prelude."""
    async with http.stream("GET", url, headers=page.headers()) as response:
        assert response.status_code == 200
        stream = StreamReader(response.aiter_lines())
        assert await stream.next() == {"retry": "100"}
        event = await stream.next()
        assert event is not None and "data" not in event  # the position
        page.take(event)
        yield stream


async def post(http: httpx.AsyncClient, base: str, group: str, count: int, **body: Any) -> int:
    response = await http.post(f"{base}/publish/{group}?count={count}", json=body)
    response.raise_for_status()
    seq: int = response.json()["seq"]
    return seq


async def paced(http: httpx.AsyncClient, bases: list[str], group: str, count: int) -> None:
    """``count`` messages, one by one, alternating between servers."""
    for n in range(count):
        await post(http, bases[n % len(bases)], group, 1, paced=n)
        await asyncio.sleep(0.002)


async def nobody_in(http: httpx.AsyncClient, base: str, group: str) -> None:
    async with asyncio.timeout(10):
        while (await http.get(f"{base}/presence/{group}")).json():
            await asyncio.sleep(0.02)


async def test_a_page_recovers_after_drops_and_server_ends() -> None:
    with serve(APP) as server:
        base = server.http_url
        page = Page()
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            async with opened(http, f"{base}/events/room?name=ada", page) as stream:
                assert (await http.get(f"{base}/presence/room")).json() == ["ada"]
                await asyncio.gather(*(post(http, base, "room", 25, by=p) for p in range(4)))
                await page.read(stream, 100)
            # The page's connection is gone: publishing goes on while it is away and
            # while it comes back.
            publishing = asyncio.create_task(paced(http, [base], "room", 100))
            await nobody_in(http, base, "room")
            async with opened(http, f"{base}/events/room", page) as stream:
                await publishing
                await page.read(stream, 200)
                # Now the server ends the stream while publishing goes on.
                publishing = asyncio.create_task(paced(http, [base], "room", 100))
                await http.post(f"{base}/end")
                while (event := await stream.next()) is not None:
                    page.take(event)
            async with opened(http, f"{base}/events/room", page) as stream:
                await publishing
                await page.read(stream, 300)
    assert page.seqs() == list(range(1, 301))
    assert len({epoch for _, epoch, _ in page.messages}) == 1


@pytest.fixture
def redis() -> Any:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


async def test_two_processes_on_redis_a_page_moves_between_them(redis: RedisServer) -> None:
    env = {"NEXIOS_CHANNELS_URL": redis.url()}
    with serve(APP, env=env) as first, serve(APP, env=env) as second:
        bases = [first.http_url, second.http_url]
        page = Page()
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            async with opened(http, f"{bases[0]}/events/r2", page) as stream:
                # Published on the other process only, two publishers at once.
                await asyncio.gather(*(post(http, bases[1], "r2", 50, by=p) for p in range(2)))
                await page.read(stream, 100)
            publishing = asyncio.create_task(paced(http, bases, "r2", 100))
            await nobody_in(http, bases[0], "r2")
            async with opened(http, f"{bases[1]}/events/r2", page) as stream:
                await publishing
                await page.read(stream, 200)
    assert page.seqs() == list(range(1, 201))
    assert len({epoch for _, epoch, _ in page.messages}) == 1


def open_stalled_page(port: int, path: str) -> socket.socket:
    """Start an event stream on a bare socket with a tiny receive buffer; never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


async def test_a_page_that_stops_reading_is_evicted_and_others_miss_nothing() -> None:
    env = {"NEXIOS_SEND_TIMEOUT": "1"}
    count, pad = 400, "x" * 16_000  # 6.4 MB: more than the socket buffers hold
    with serve(APP, env=env) as server:
        base = server.http_url
        page = Page()
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            async with opened(http, f"{base}/events/stall?name=healthy", page) as stream:
                stalled = open_stalled_page(server.port, "/events/stall?name=stalled")
                try:
                    await _until_members(http, base, ["healthy", "stalled"])
                    started = time.monotonic()
                    reading = asyncio.create_task(page.read(stream, count))
                    await post(http, base, "stall", count, pad=pad)
                    await reading
                    await _until_members(http, base, ["healthy"])
                    stats = (await http.get(f"{base}/stats")).json()
                    evicted_after = time.monotonic() - started
                finally:
                    stalled.close()
        log = server.log()
    assert page.seqs() == list(range(1, count + 1))
    assert stats == {"evictions": 1, "channels": 1}
    assert "outbox full" in log or "send deadline missed" in log
    print(f"\nstalled page evicted {evicted_after:.2f}s after publishing began")


async def _until_members(http: httpx.AsyncClient, base: str, names: list[str]) -> None:
    async with asyncio.timeout(20):
        while sorted((await http.get(f"{base}/presence/stall")).json()) != sorted(names):
            await asyncio.sleep(0.02)


async def test_sigterm_with_open_streams_exits_without_waiting_for_them() -> None:
    # The server tells streaming responses it is stopping (http.disconnect), so they end
    # at once instead of holding the graceful shutdown (10 s) until cancelled.
    with serve(APP, args=["--timeout-graceful-shutdown", "10"]) as server:
        pages = [Page() for _ in range(3)]
        async with httpx.AsyncClient(timeout=TIMEOUT) as http, contextlib.AsyncExitStack() as open_:
            streams = [
                await open_.enter_async_context(
                    opened(http, f"{server.http_url}/events/room?name=p{i}", page)
                )
                for i, page in enumerate(pages)
            ]
            await post(http, server.http_url, "room", 3)
            for page, stream in zip(pages, streams, strict=True):
                await page.read(stream, 3)
            server.process.terminate()
            began = time.monotonic()
            await asyncio.to_thread(server.process.wait, 8)
            took = time.monotonic() - began
            for stream in streams:  # each stream ended: no more events
                with contextlib.suppress(httpx.RemoteProtocolError, httpx.ReadError):
                    assert await stream.next() is None
    print(f"\nexit {took:.2f}s after SIGTERM with 3 open streams")
    assert took < 5, server.log()[-2000:]
    assert "Traceback" not in server.log()
