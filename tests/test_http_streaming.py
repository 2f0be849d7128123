"""StreamingResponse, Server-Sent Events and background tasks, through the TestClient.

The same behaviour over TCP, under uvicorn, is in ``test_http_server.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.http import (
    BackgroundTask,
    BackgroundTasks,
    EventSourceResponse,
    JSONResponse,
    Request,
    ServerSentEvent,
    StreamingResponse,
    last_event_id,
)
from nexios.http.datastructures import Message
from nexios.testing import AsyncTestClient, TestClient
from tests.support.sse import EventReader

pytestmark = pytest.mark.anyio


class Probe:
    """What a stream did: chunks made, whether its ``finally`` ran; awaitable milestones."""

    def __init__(self) -> None:
        self.made = 0
        self.closed = asyncio.Event()
        self.stopped = False


def stream_app(probe: Probe) -> NexiosApp:
    app = NexiosApp()

    @app.get("/numbers")
    async def numbers(request: Request, count: int = 3) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for n in range(count):
                yield f"{n}\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/sync")
    async def sync_numbers() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:  # blocking: iterated in the thread pool
            for n in range(3):
                yield f"{n}:{threading.current_thread().name}\n".encode()

        return StreamingResponse(chunks())

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    probe.made += 1
                    yield b"tick\n"
                    await asyncio.sleep(0.001)
            except (asyncio.CancelledError, GeneratorExit):
                # Cancelled where it waits, or closed at its yield when the send that
                # follows the disconnect raised first (which one wins is the loop's pick).
                probe.stopped = True
                raise
            finally:
                probe.closed.set()

        return StreamingResponse(chunks())

    return app


def test_async_and_sync_iterators_stream() -> None:
    with TestClient(stream_app(Probe())) as client:
        numbers = client.get("/numbers?count=4")
        sync = client.get("/sync")
        head = client.head("/numbers")
    assert numbers.text == "0\n1\n2\n3\n"
    assert numbers.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-length" not in numbers.headers  # chunked
    lines = sync.text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["0", "1", "2"]
    assert all(line.split(":")[1] != threading.current_thread().name for line in lines)
    assert head.status_code == 200 and head.content == b""


def test_disconnect_stops_the_iterator_and_runs_its_finally() -> None:
    probe = Probe()
    with TestClient(stream_app(probe)) as client:
        with client.stream("GET", "/forever") as response:
            lines = response.iter_lines()
            assert [next(lines) for _ in range(5)] == ["tick"] * 5
        # Leaving the block disconnected the client; close() waited for the app to end.
        assert probe.closed.is_set() and probe.stopped
        made = probe.made
        assert client.get("/numbers").status_code == 200
        assert probe.made == made  # nothing more was produced after the disconnect


def test_whole_body_and_text_content_are_refused() -> None:
    with pytest.raises(TypeError, match="takes an iterator of chunks"):
        StreamingResponse("all at once")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an async iterable"):
        StreamingResponse(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SSE


def test_event_wire_format() -> None:
    assert ServerSentEvent("hi").encode() == b"data: hi\n\n"
    assert ServerSentEvent("a\nb\r\nc").encode() == b"data: a\ndata: b\ndata: c\n\n"
    assert ServerSentEvent({"x": [1, 2]}).encode() == b'data: {"x":[1,2]}\n\n'
    assert ServerSentEvent(b"raw").encode() == b"data: raw\n\n"
    assert (
        ServerSentEvent("d", event="update", id=7, retry=2500).encode()
        == b"event: update\nid: 7\nretry: 2500\ndata: d\n\n"
    )
    assert ServerSentEvent(comment="keep\nalive").encode() == b": keep\n: alive\n\n"
    assert ServerSentEvent("").encode() == b"data: \n\n"
    with pytest.raises(ValueError, match="must be one line"):
        ServerSentEvent("x", id="1\n2")
    with pytest.raises(ValueError, match="must be one line"):
        ServerSentEvent("x", event="a\rb")
    with pytest.raises(ValueError, match="NUL"):
        ServerSentEvent("x", id="a\x00")
    with pytest.raises(ValueError, match="milliseconds"):
        ServerSentEvent(retry=-1)
    with pytest.raises(ValueError, match="ping_interval"):
        EventSourceResponse(iter(()), ping_interval=0)


def parse_events(
    lines: Iterator[str], count: int, *, until_end: bool = False
) -> list[dict[str, str]]:
    """Read ``count`` events (comments included, as {"comment": ...}), or all of them."""
    reader, events = EventReader(), []
    for line in lines:
        event = reader.feed(line)
        if event is not None:
            events.append(event)
            if len(events) == count:
                return events
    if until_end:
        return events
    raise AssertionError(f"the stream ended after {events}")


def sse_app(probe: Probe, gate: asyncio.Event) -> NexiosApp:
    app = NexiosApp()

    @app.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        start = int(last_event_id(request) or 0)

        async def ticks() -> AsyncIterator[Any]:
            try:
                for n in range(start + 1, start + 3):
                    probe.made += 1
                    yield ServerSentEvent({"n": n}, id=n)
                await gate.wait()  # silent: only keep-alive comments now
                yield "after the pause"
            finally:
                probe.closed.set()

        return EventSourceResponse(ticks(), ping_interval=0.01, retry=1500)

    return app


def test_sse_events_pings_and_last_event_id() -> None:
    probe, gate = Probe(), asyncio.Event()
    with TestClient(sse_app(probe, gate)) as client:
        headers = {"last-event-id": "41"}
        with client.stream("GET", "/events", headers=headers) as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-accel-buffering"] == "no"
            lines = response.iter_lines()
            first = parse_events(lines, 3)
            assert first == [
                {"retry": "1500"},
                {"id": "42", "data": '{"n":42}'},
                {"id": "43", "data": '{"n":43}'},
            ]
            pings = parse_events(lines, 2)
            assert pings == [{"comment": "ping"}, {"comment": "ping"}]
            client.run(_set(gate))
            rest = parse_events(lines, 10**6, until_end=True)
            assert rest[-1] == {"data": "after the pause"}  # and the stream ended
            assert all(event == {"comment": "ping"} for event in rest[:-1])
        assert probe.closed.is_set()


def test_sse_last_event_id_from_the_query_when_no_header() -> None:
    probe = Probe()
    with TestClient(sse_app(probe, asyncio.Event())) as client:
        with client.stream("GET", "/events?lastEventId=9") as response:
            assert parse_events(response.iter_lines(), 2)[1]["id"] == "10"


async def test_sse_disconnect_while_idle_is_noticed_without_a_write() -> None:
    # No event and no ping for an hour: only the disconnect listener can end it.
    probe = Probe()
    app = NexiosApp()

    @app.get("/quiet")
    async def quiet() -> EventSourceResponse:
        async def nothing() -> AsyncIterator[str]:
            try:
                yield "hello"
                await asyncio.Event().wait()
                yield "never"
            finally:
                probe.closed.set()

        return EventSourceResponse(nothing(), ping_interval=3600)

    async with AsyncTestClient(app) as client:
        async with client.stream("GET", "/quiet") as response:
            async for line in response.aiter_lines():
                if line == "data: hello":
                    break
        async with asyncio.timeout(5):
            await probe.closed.wait()


async def _set(event: asyncio.Event) -> None:
    event.set()


# --------------------------------------------------------------------------- background


def test_background_tasks_run_after_the_response_in_order() -> None:
    app = NexiosApp()
    done: list[str] = []
    sent: list[Message] = []

    async def note(what: str) -> None:
        done.append(f"async {what} after {len(sent)} messages")

    def blocking(what: str) -> None:
        done.append(f"sync {what} on {threading.current_thread().name != 'MainThread'}")

    @app.post("/order")
    async def order() -> JSONResponse:
        tasks = BackgroundTasks()
        tasks.add_task(note, "mail")
        tasks.add_task(blocking, what="audit")
        return JSONResponse({"ok": True}, background=tasks)

    @app.get("/single")
    async def single() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"x"

        return StreamingResponse(body(), background=BackgroundTask(note, "stream"))

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        async def record(message: Message) -> None:
            if message["type"].startswith("http."):
                sent.append(message)
            await send(message)

        await app(scope, receive, record)

    with TestClient(recording_app) as client:
        assert client.post("/order").json() == {"ok": True}
        assert client.get("/single").text == "x"
    assert done == [
        "async mail after 2 messages",
        "sync audit on True",
        "async stream after 5 messages",
    ]


def test_background_task_needs_a_callable() -> None:
    from nexios.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="needs a function"):
        BackgroundTask("send_mail")  # type: ignore[arg-type]
