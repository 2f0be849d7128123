"""A group as Server-Sent Events (``app.sse_group``), in process through the test client.

Each test reads the stream as a browser's ``EventSource`` would (``tests/support/sse.py``:
the last id is what a reconnect sends as ``Last-Event-ID``) and checks every message:
each seq once, in order, none missing. The same endpoint over a real ``nexios run`` and
Redis is in ``tests/test_sse_group_server.py``; in Chromium with a real ``EventSource``
in ``tests/test_sse_group_browser.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import nexios.eventstream
from nexios import AuthError, NexiosApp, Request
from nexios.eventstream import EVENT_FRAMER, EventStream, encode_event, parse_event_id
from nexios.exceptions import ConfigurationError
from nexios.framing import FrameSet
from nexios.history.base import HistoryLimits
from nexios.http import Response
from nexios.runtime import Channel, OutboxLimits
from nexios.sse_group import SSEGroup
from nexios.testing import AsyncTestClient
from nexios.websockets import ChannelBox
from tests.support.redis import RedisServer
from tests.support.sse import Page, StreamReader
from tests.support.sse_app import make_app

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def running(app: NexiosApp) -> AsyncIterator[AsyncTestClient]:
    """The app served by the test client, with its channels current for ChannelBox."""
    async with AsyncTestClient(app) as client, app.channels.activated():
        yield client


@contextlib.asynccontextmanager
async def connect(
    client: AsyncTestClient, path: str, page: Page | None = None, **headers: str
) -> AsyncIterator[StreamReader]:
    """Open the stream as ``page`` (reconnecting: with its Last-Event-ID)."""
    sent = {**(page.headers() if page else {}), **headers}
    async with client.stream("GET", path, headers=sent) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        yield StreamReader(response.aiter_lines())


async def publish(group: str, count: int, **extra: Any) -> list[int]:
    sent = [
        await ChannelBox.group_send(group, {"n": n, **extra}, save_history=True)
        for n in range(count)
    ]
    return [outcome.seq for outcome in sent]


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.005)


async def members(group: str) -> int:
    return len(await ChannelBox.presence(group))


# --------------------------------------------------------------------------- delivery


async def test_saved_messages_arrive_in_order_with_seq_and_epoch_ids() -> None:
    app = make_app()
    async with running(app) as client, connect(client, "/events/lobby") as stream:
        assert await stream.next() == {"retry": "100"}
        assert await stream.next() == {"id": "0:"}  # the page's position: nothing yet
        # Eight publishers at once: the page still gets 1, 2, 3... each once.
        await asyncio.gather(*(publish("lobby", 10, by=p) for p in range(8)))
        page = Page()
        await page.read(stream, 80)
        assert page.seqs() == list(range(1, 81))
        epochs = {epoch for _, epoch, _ in page.messages}
        assert len(epochs) == 1 and len(epochs.pop()) == 16
        assert sorted((m["by"], m["n"]) for _, _, m in page.messages) == sorted(
            (p, n) for p in range(8) for n in range(10)
        )
        assert page.last_event_id == f"80:{page.messages[-1][1]}"


async def test_payload_kinds_become_data_lines() -> None:
    app = make_app()
    async with running(app) as client, connect(client, "/events/kinds") as stream:
        await stream.next()
        await stream.next()
        await ChannelBox.group_send("kinds", "two\nlines\r\nthree")
        await ChannelBox.group_send("kinds", b"\x00\xff")
        await ChannelBox.group_send("kinds", {"text": "a\nb", "wide": 2**70})
        assert await stream.next() == {"data": "two\nlines\nthree"}  # no id: unsaved
        assert await stream.next() == {"data": base64.b64encode(b"\x00\xff").decode()}
        assert await stream.next() == {"data": '{"text":"a\\nb","wide":1180591620717411303424}'}


async def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed() -> None:
    app = make_app()
    page = Page()
    async with running(app) as client:
        await publish("r", 5)  # before the page: not for it
        async with connect(client, "/events/r") as stream:
            await stream.next()
            page.take(await stream.next())
            assert page.last_event_id.startswith("5:")
            await publish("r", 10)
            await page.read(stream, 10)  # seq 6..10, and stop reading: the "drop"
        await until(lambda: _no_members(app))
        await publish("r", 7)  # missed while away: 16..22 (11..15 too, unread)
        # A publisher keeps going while the page rejoins: the replay and the live
        # messages meet without a duplicate or a gap.
        burst = asyncio.create_task(publish("r", 30))
        async with connect(client, "/events/r", page) as stream:
            assert await stream.next() == {"retry": "100"}
            position = await stream.next()
            assert position == {"id": page.last_event_id}  # starts where the page was
            await burst
            await page.read(stream, 52)
        assert page.seqs() == list(range(6, 53))


async def _no_members(app: NexiosApp) -> bool:
    return app.channels.stats().channels == 0


async def test_a_page_with_no_message_yet_resumes_from_its_position() -> None:
    app = make_app()
    page = Page()
    async with running(app) as client:
        await publish("quiet", 3)
        async with connect(client, "/events/quiet") as stream:
            await stream.next()
            page.take(await stream.next())
        assert parse_event_id(page.last_event_id) is not None
        await until(lambda: _no_members(app))
        await publish("quiet", 4)  # 4..7, published while it was away
        async with connect(client, "/events/quiet", page) as stream:
            await page.read(stream, 7)
        assert page.seqs() == [4, 5, 6, 7]


async def test_since_and_epoch_in_the_query_for_a_first_connection() -> None:
    app = make_app()
    async with running(app) as client:
        seqs = await publish("q", 6)
        epoch = (await ChannelBox.recover("q", 0)).epoch
        page = Page()
        async with connect(client, f"/events/q?since=4&epoch={epoch}") as stream:
            await stream.next()
            page.take(await stream.next())
            assert page.last_event_id == f"4:{epoch}"  # set, so a reconnect resumes at 4
            await page.read(stream, seqs[-1])
        assert page.seqs() == [5, 6]
        # On a reconnect the browser sends Last-Event-ID, which wins over the URL's since.
        async with connect(client, f"/events/q?since=1&epoch={epoch}", page) as stream:
            await publish("q", 1)
            await page.read(stream, 7)
        assert page.seqs() == [5, 6, 7]
        for query in ("since=x", "since=-1", "epoch=abc", f"since={'9' * 21}"):
            response = await client.get(f"/events/q?{query}")
            assert response.status_code == 400, query


async def test_another_epoch_starts_with_a_resync_then_goes_on_live() -> None:
    app = make_app()
    async with running(app) as client:
        await publish("e", 3)
        page = Page()
        page.last_event_id = "2:0123456789abcdef"  # from a history that is gone
        async with connect(client, "/events/e", page) as stream:
            await stream.next()
            resync = await stream.next()
            assert resync is not None and resync["event"] == "resync"
            page.take(resync)
            await publish("e", 1)
            await page.read(stream, 4)
        epoch = (await ChannelBox.recover("e", 0)).epoch
        assert page.named == [
            (
                "resync",
                {
                    "type": "nexios.resync",
                    "group": "e",
                    "reason": "epoch_changed",
                    "epoch": epoch,
                    "last_seq": 3,
                },
            )
        ]
        assert resync["id"] == f"3:{epoch}"
        assert page.seqs() == [4]  # nothing replayed from the other numbering


async def test_more_missed_than_history_keeps_is_a_gap_resync() -> None:
    app = make_app(history_limits=HistoryLimits(max_entries=5))
    async with running(app) as client:
        await publish("g", 12)
        epoch = (await ChannelBox.recover("g", 0)).epoch
        for last_id in (f"2:{epoch}", "not an id", "7:"):
            page = Page()
            page.last_event_id = last_id
            async with connect(client, "/events/g", page) as stream:
                await stream.next()
                page.take(await stream.next() or {})
            if last_id == "7:":  # no epoch: seq 8..12 are still kept, so it recovers
                assert page.named == [] and page.last_event_id == f"7:{epoch}"
                continue
            assert [(name, body["reason"]) for name, body in page.named] == [("resync", "gap")]
            assert page.last_event_id == f"12:{epoch}", last_id


async def test_unsaved_messages_leave_the_position_alone() -> None:
    app = make_app()
    async with running(app) as client:
        page = Page()
        async with connect(client, "/events/u") as stream:
            await stream.next()
            page.take(await stream.next())
            await publish("u", 2)
            await ChannelBox.group_send("u", {"typing": True})
            page.take(await stream.next() or {})
            page.take(await stream.next() or {})
            page.take(await stream.next() or {})
        assert [seq for seq, _, _ in page.messages] == [1, 2, 0]
        assert page.last_event_id.startswith("2:")


# --------------------------------------------------------------------------- membership


async def test_presence_and_events_follow_the_stream() -> None:
    app = make_app()
    seen: list[tuple[str, str, Any]] = []

    @app.events.on("channel.join")
    @app.events.on("channel.leave")
    def record(event: dict[str, Any]) -> None:
        seen.append((event["group"], event["reason"], event["metadata"]))

    async with running(app) as client:
        async with connect(client, "/events/p?name=ada") as stream:
            await stream.next()
            presence = await ChannelBox.presence("p")
            assert [member.metadata for member in presence] == [{"name": "ada"}]
            stats = ChannelBox.stats()
            assert (stats.channels, stats.senders) == (1, {"asgi": 1})
        await until(lambda: _no_members(app))
        assert await ChannelBox.presence("p") == []
    assert seen == [("p", "joined", {"name": "ada"}), ("p", "disconnected", {"name": "ada"})]


async def test_the_server_ending_the_streams_ends_the_response() -> None:
    app = make_app()
    async with running(app) as client, connect(client, "/events/end") as stream:
        await stream.next()
        await stream.next()
        await ChannelBox.close_all_connections(1012, "bye")
        assert await stream.next() is None  # the body ended: EventSource reconnects
        assert app.channels.stats().channels == 0


async def test_keep_alive_comments_only_while_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_PING", "0.05")
    app = make_app()
    async with running(app) as client, connect(client, "/events/k") as stream:
        await stream.next()
        await stream.next()
        assert await stream.next(comments=True) == {"comment": "ping"}
        await publish("k", 1)
        event = await stream.next(comments=True)
        while event == {"comment": "ping"}:  # one may have been on its way
            event = await stream.next(comments=True)
        assert event is not None and event["data"] == '{"n":0}'
        assert await stream.next(comments=True) == {"comment": "ping"}


async def test_a_page_that_stops_reading_is_evicted_then_recovers() -> None:
    # The test client holds 16 chunks; past them a write waits, as on a full socket,
    # and a write that makes no progress for send_timeout evicts the page.
    app = make_app(outbox=OutboxLimits(send_timeout=0.3))
    page = Page()
    async with running(app) as client:
        async with connect(client, "/events/slow") as stream:
            await stream.next()
            page.take(await stream.next())
            await publish("slow", 60)  # while nobody reads
            await until(lambda: _evicted(app))
            event = await stream.next()
            while event is not None:  # what was written before the eviction, then the end
                page.take(event)
                event = await stream.next()
        received = page.seqs()
        assert received == list(range(1, len(received) + 1)) and len(received) < 60
        await until(lambda: _no_members(app))
        async with connect(client, "/events/slow", page) as stream:
            await page.read(stream, 60)
        assert page.seqs() == list(range(1, 61))


async def test_an_overflowed_page_rejoins_with_a_resync_not_a_second_eviction() -> None:
    # Evicted because its queue overflowed, the page missed more than its queue holds:
    # replaying that would overflow it again at once (and forever, at every reconnect).
    app = make_app(outbox=OutboxLimits(max_messages=32, send_timeout=30))
    page = Page()
    async with running(app) as client:
        async with connect(client, "/events/full") as stream:
            await stream.next()
            page.take(await stream.next())
            await publish("full", 80)
            assert app.channels.evictions == 1
            while (event := await stream.next()) is not None:
                page.take(event)
        await until(lambda: _no_members(app))
        async with connect(client, "/events/full", page) as stream:
            await stream.next()
            page.take(await stream.next() or {})
            assert [(name, body["reason"]) for name, body in page.named] == [("resync", "gap")]
            assert page.last_event_id.startswith("80:")
            await publish("full", 3)
            await page.read(stream, 83)
        assert app.channels.evictions == 1
        assert page.seqs()[-3:] == [81, 82, 83]


async def _evicted(app: NexiosApp) -> bool:
    return app.channels.evictions == 1


async def test_send_to_reaches_one_page_and_receive_says_it_cannot() -> None:
    app = make_app()
    async with running(app) as client, connect(client, "/events/one") as stream:
        await stream.next()
        await stream.next()
        (channel,) = (await ChannelBox.show_groups())["one"].values()
        assert await ChannelBox.send_to(channel.id, {"only": "you"})
        await channel.send({"direct": True})
        assert await stream.next() == {"data": '{"only":"you"}'}
        assert await stream.next() == {"data": '{"direct":true}'}
        with pytest.raises(ConfigurationError, match="only sends"):
            await channel.receive()
        assert channel.is_active


# --------------------------------------------------------------------------- admission


async def test_auth_hooks_origins_and_the_group_policy() -> None:
    async def ws_auth(connection: Any) -> Any:
        token = connection.query_params.get("token") or connection.cookies.get("token")
        if token == "banned":
            raise AuthError(403, "banned")
        return {"name": token} if token else None

    async def policy(channel: Channel, group: str) -> bool:
        return group != "secret" or channel.websocket.user["name"] == "root"

    app = NexiosApp(ws_auth=ws_auth, group_policy=policy, allowed_origins=["https://a.example"])
    app.sse_group("/events/{room}", group="{room}")
    app.sse_group("/public/{room}", group="{room}", auth=False, allowed_origins="*")
    async with running(app) as client:
        assert (await client.get("/events/x")).status_code == 401
        assert (await client.get("/events/x?token=banned")).status_code == 403
        assert (await client.get("/events/secret?token=ada")).status_code == 403
        origin = {"origin": "https://evil.example"}
        assert (await client.get("/events/x?token=ada", headers=origin)).status_code == 403
        async with connect(client, "/public/x", **origin):
            pass
        async with connect(client, "/events/secret?token=root", origin="https://a.example"):
            (channel,) = (await ChannelBox.show_groups())["secret"].values()
            assert channel.websocket.user == {"name": "root"}
        async with connect(client, "/events/x", cookie="token=ada"):
            pass
        assert app.channels.stats().channels == 0  # refused pages left no member behind


async def test_head_answers_without_joining() -> None:
    app = make_app()
    async with running(app) as client:
        response = await client.head("/events/h")
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-type"].startswith("text/event-stream")
        assert app.channels.stats().channels == 0


async def test_group_functions_and_bad_group_names() -> None:
    app = NexiosApp()
    app.add_route(SSEGroup("/mine", group=lambda stream: f"user:{stream.query_params['u']}"))
    app.sse_group("/news", group="news", name="news")
    async with running(app) as client:
        async with connect(client, "/mine?u=7"):
            assert list(await ChannelBox.show_groups()) == ["user:7"]
        assert (await client.get(f"/mine?u={'x' * 2000}")).status_code == 400
        assert app.url_path_for("news") == "/news"


def test_registration_errors_say_what_to_do() -> None:
    app = NexiosApp()
    with pytest.raises(ConfigurationError, match=r"\{user\} is not a path parameter"):
        app.sse_group("/events/{room}", group="{user}")
    with pytest.raises(ConfigurationError, match="write them as"):
        app.sse_group("/events/{room}", group="{room!r}")
    with pytest.raises(ConfigurationError, match="group name"):
        app.sse_group("/events", group="")
    with pytest.raises(ConfigurationError, match="ping_interval"):
        app.sse_group("/events", group="g", ping_interval=0)
    with pytest.raises(ConfigurationError, match="retry"):
        app.sse_group("/events", group="g", retry=-5)
    with pytest.raises(ConfigurationError, match="async def auth"):
        app.sse_group("/events", group="g", auth=lambda stream: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metadata"):
        app.sse_group("/events", group="g", metadata={"a": 1})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the connection


def test_event_ids_and_the_framer() -> None:
    assert parse_event_id("42:9f3c2a1b0d4e5f60") == (42, "9f3c2a1b0d4e5f60")
    assert parse_event_id("0:") == (0, None)
    for bad in ("", "42", ":abc", "-1:a", "1:a b", "٣:a", "1:" + "a" * 65, "9" * 21 + ":a"):
        assert parse_event_id(bad) is None, bad
    saved = FrameSet("json", b'{"a":1}', group="g", seq=7, epoch="ab")
    assert encode_event(saved) == b'id: 7:ab\ndata: {"a":1}\n\n'
    notice = FrameSet(
        "json", b'{"type":"nexios.resync","epoch":"cd","last_seq":0}', notice="resync"
    )
    assert encode_event(notice).startswith(b"event: resync\nid: 0:cd\ndata: {")
    frame = EVENT_FRAMER(saved)
    assert frame.asgi() == {"type": "http.response.body", "body": frame.payload, "more_body": True}
    assert saved.get(EVENT_FRAMER.key, EVENT_FRAMER) is saved.get("sse", EVENT_FRAMER)
    with pytest.raises(TypeError):
        frame.wire()


async def test_a_stream_nobody_serves_leaves_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # A middleware that replaces the response: the stream is never served.
    monkeypatch.setattr(nexios.eventstream, "OPEN_BOUND", 0.05)
    app = make_app()

    @app.middleware("http")
    async def swallow(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/events/"):
            return Response(b"replaced", 200)
        return response  # type: ignore[no-any-return]

    async with running(app) as client:
        assert (await client.get("/events/lost")).content == b"replaced"
        await until(lambda: _no_members(app))
        assert await ChannelBox.presence("lost") == []


async def test_an_event_stream_made_by_hand_is_a_member() -> None:
    app = NexiosApp()

    @app.get("/feed")
    async def feed(request: Request) -> Response:
        stream = EventStream(request, ping_interval=None)
        await ChannelBox.add_channel_to_group(Channel(stream, framer=EVENT_FRAMER), "feed")
        return stream.response

    async with running(app) as client, connect(client, "/feed") as stream:
        await ChannelBox.group_send("feed", {"hi": 1}, save_history=True)
        event = await stream.next()
        assert event is not None and event["data"] == '{"hi":1}' and event["id"].startswith("1:")


# --------------------------------------------------------------------------- Redis


async def test_a_flushed_redis_tells_connected_pages_to_resync() -> None:
    with RedisServer() as redis:
        app = make_app(channels_url=redis.url())
        page = Page()
        async with running(app) as client, connect(client, "/events/f") as stream:
            await stream.next()
            page.take(await stream.next())
            await publish("f", 3)
            await page.read(stream, 3)
            old_epoch = page.messages[-1][1]
            redis.flush()  # history and its numbering are gone
            await publish("f", 2)
            resync = await stream.next()
            assert resync is not None and resync["event"] == "resync"
            page.take(resync)
            await page.read(stream, 2)
        ((name, notice),) = page.named
        assert (
            name == "resync"
            and notice["reason"] == "epoch_changed"
            and notice["epoch"] != old_epoch
        )
        assert resync["id"] == f"0:{notice['epoch']}"
        assert [(seq, epoch) for seq, epoch, _ in page.messages[3:]] == [
            (1, notice["epoch"]),
            (2, notice["epoch"]),
        ]


async def test_channels_unavailable_answers_a_stream_to_retry() -> None:
    redis = RedisServer().start()
    app = make_app(channels_url=redis.url())
    try:
        async with running(app) as client:
            redis.kill()
            response = await client.get("/events/down")
            assert response.status_code == 200
            assert response.text.startswith("retry: 2000\n\n: channels unavailable")
            assert app.channels.stats().channels == 0
    finally:
        redis.kill()
