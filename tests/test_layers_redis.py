"""The Redis channel layer: the conformance suite, then broker faults on a real server."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest
import redis.asyncio as aioredis

from nexios._redis import CommandQueue, client_from_url
from nexios.exceptions import BackendUnavailableError, ChannelError, ConfigurationError
from nexios.history.base import HistoryLimits
from nexios.history.memory import MemoryHistoryStore
from nexios.history.redis import RedisHistoryStore
from nexios.layers import base, layer_from_url
from nexios.layers.base import PresenceRecord, WireMessage
from nexios.layers.redis import RedisLayer
from tests.conformance.layer import ChannelLayerConformance, Recorder
from tests.support.redis import RedisServer, free_port

OTHER_ORIGIN = uuid.uuid4().bytes
"""The origin of a layer that plays "another process" inside this one."""


def _text(data: str) -> WireMessage:
    return WireMessage("text", data.encode())


async def started(
    url: str,
    recorder: Recorder | None = None,
    *,
    origin: bytes | None = None,
    key_prefix: str = "nexios",
) -> RedisLayer:
    layer = RedisLayer(url, origin=origin, key_prefix=key_prefix)
    await layer.start(recorder or Recorder())
    return layer


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a synchronous condition (a health flag) until true, within ``timeout``."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


class TestRedisLayer(ChannelLayerConformance):
    @pytest.fixture
    async def layer(self, redis_url: str, recorder: Recorder) -> AsyncIterator[RedisLayer]:
        layer = await started(redis_url, recorder)
        yield layer
        await layer.stop()

    @pytest.fixture
    async def second_layer(
        self, redis_url: str, second_recorder: Recorder
    ) -> AsyncIterator[RedisLayer]:
        layer = await started(redis_url, second_recorder, origin=OTHER_ORIGIN)
        yield layer
        await layer.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test database, to look at (or spoil) what the layer wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, free to be killed, restarted and frozen."""
    with RedisServer() as server:
        yield server


# configuration


def test_layer_from_url_builds_a_redis_layer(redis_url: str) -> None:
    limits = HistoryLimits(max_entries=3, max_age=None)
    layer = layer_from_url(redis_url, history_limits=limits)
    assert isinstance(layer, RedisLayer)
    assert layer.url == redis_url
    history = layer.default_history()
    assert isinstance(history, RedisHistoryStore)
    assert history.url == redis_url and history.limits is limits


def test_origin_must_be_sixteen_bytes() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        RedisLayer("redis://127.0.0.1:6379/0", origin=b"short")


def test_invalid_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Invalid Redis URL"):
        RedisLayer("redis://127.0.0.1:notaport/0")


def test_origin_defaults_to_the_process_id_read_at_each_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = RedisLayer("redis://127.0.0.1:6379/0")
    assert layer.origin == base.PROCESS_ID
    forked = uuid.uuid4().bytes  # what the child of a fork would have drawn
    monkeypatch.setattr(base, "PROCESS_ID", forked)
    assert layer.origin == forked
    assert RedisLayer("redis://127.0.0.1:6379/0", origin=OTHER_ORIGIN).origin == OTHER_ORIGIN


def test_health_hides_the_password() -> None:
    layer = RedisLayer("redis://user:s3cret@127.0.0.1:6379/0")
    health = layer.health()
    assert "s3cret" not in health.url and "user:***@127.0.0.1:6379" in health.url
    assert not health.connected and health.details["address"] == "127.0.0.1:6379"


@pytest.mark.anyio
async def test_start_fails_fast_when_redis_is_unreachable() -> None:
    port = free_port()
    layer = RedisLayer(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    with anyio.fail_after(2), pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        await layer.start(Recorder())
    assert not layer.health().connected


# delivery details


@pytest.mark.anyio
async def test_one_pubsub_connection_serves_every_group(
    redis_url: str, raw: aioredis.Redis
) -> None:
    layer = await started(redis_url)
    for i in range(20):
        await layer.subscribe(f"g{i}")
    pubsub_clients = await raw.client_list(_type="pubsub")
    assert len(pubsub_clients) == 1
    assert int(pubsub_clients[0]["sub"]) == 20
    await layer.stop()
    assert await raw.client_list(_type="pubsub") == []


@pytest.mark.anyio
async def test_messages_of_this_process_are_skipped(redis_url: str) -> None:
    recorder = Recorder()
    layer = await started(redis_url, recorder)
    same_process = await started(redis_url)
    other_process = await started(redis_url, origin=OTHER_ORIGIN)
    await layer.subscribe("room")
    await same_process.publish("room", _text("from this process"))
    await other_process.publish("room", _text("from another"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"from another")]
    for instance in (layer, same_process, other_process):
        await instance.stop()


@pytest.mark.anyio
async def test_subscribe_before_start_takes_effect_on_start(redis_url: str) -> None:
    recorder = Recorder()
    layer = RedisLayer(redis_url)
    await layer.subscribe("early")
    await layer.start(recorder)
    other = await started(redis_url, origin=OTHER_ORIGIN)
    await other.publish("early", _text("hi"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("early", b"hi")]
    await layer.stop()
    await other.stop()


@pytest.mark.anyio
async def test_undecodable_messages_are_skipped_and_logged_once(
    redis_url: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    layer = await started(redis_url, recorder)
    other = await started(redis_url, origin=OTHER_ORIGIN)
    await layer.subscribe("room")
    with caplog.at_level(logging.WARNING, logger="nexios.layers.redis"):
        await raw.publish("nexios:{g:room}", b"not a wire message")
        await raw.publish("nexios:{g:room}", b"\x09" * 40)
        await other.publish("room", _text("fine"))
        await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"fine")]
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1
    assert layer.health().details["undecodable"] == 2
    await layer.stop()
    await other.stop()


@pytest.mark.anyio
async def test_a_failing_receiver_does_not_stop_delivery(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()

    def receiver(group: str, message: WireMessage) -> None:
        if message.data == b"boom":
            raise RuntimeError("receiver bug")
        recorder(group, message)

    layer = RedisLayer(redis_url)
    await layer.start(receiver)
    other = await started(redis_url, origin=OTHER_ORIGIN)
    await layer.subscribe("room")
    await other.publish("room", _text("boom"))
    await other.publish("room", _text("after"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"after")]
    assert any("receiver failed" in r.getMessage() for r in caplog.records)
    await layer.stop()
    await other.stop()


@pytest.mark.anyio
async def test_a_stopped_layer_refuses_work_until_started_again(redis_url: str) -> None:
    recorder = Recorder()
    layer = await started(redis_url, recorder)
    with pytest.raises(ChannelError, match="already"):
        await layer.start(recorder)
    await layer.subscribe("before stop")
    await layer.stop()
    with pytest.raises(BackendUnavailableError, match="stopped"):
        await layer.publish("room", _text("late"))
    with pytest.raises(BackendUnavailableError, match="stopped"):
        await layer.presence_list("room")
    # an app's lifespan may run more than once with the same layer
    await layer.start(recorder)
    assert layer.health().connected and layer.health().subscribed_groups == 0
    other = await started(redis_url, origin=OTHER_ORIGIN)
    await layer.subscribe("room")
    await other.publish("room", _text("again"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"again")]
    await layer.stop()
    await other.stop()


@pytest.mark.anyio
async def test_key_prefix_separates_apps(redis_url: str, raw: aioredis.Redis) -> None:
    recorder = Recorder()
    app1 = await started(redis_url, recorder, key_prefix="app1")
    app2 = await started(redis_url, key_prefix="app2", origin=OTHER_ORIGIN)
    app1_elsewhere = await started(redis_url, key_prefix="app1", origin=OTHER_ORIGIN)
    await app1.subscribe("room")
    await app2.publish("room", _text("other app"))
    await app1_elsewhere.publish("room", _text("same app"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"same app")]

    await app2.presence_add("room", "c", b"", ttl=30)
    assert await app1.presence_list("room") == []
    assert await app2.presence_list("room") == [PresenceRecord("room", "c", b"")]
    assert await raw.exists("app2:{g:room}:p", "app2:{g:room}:pi", "app2:pidx") == 3
    for layer in (app1, app2, app1_elsewhere):
        await layer.stop()


@pytest.mark.anyio
async def test_presence_expiry_is_judged_by_server_time(
    redis_url: str, raw: aioredis.Redis
) -> None:
    layer = await started(redis_url)
    await layer.presence_add("room", "c1", b"info", ttl=30)
    seconds, micros = await raw.time()
    server_ms = seconds * 1000 + micros // 1000
    score = await raw.zscore("nexios:{g:room}:p", "c1")
    assert score is not None and abs(score - (server_ms + 30_000)) < 1000
    assert await raw.hget("nexios:{g:room}:pi", "c1") == b"info"
    # the expiry index holds the same expiry, for reaping without a scan of every group
    assert await raw.zrange("nexios:pidx", 0, -1, withscores=True) == [(b"room\xffc1", score)]
    # the last member leaving leaves no key behind
    assert await layer.presence_remove("room", "c1")
    assert await raw.exists("nexios:{g:room}:p", "nexios:{g:room}:pi", "nexios:pidx") == 0
    await layer.stop()


# broker faults


@pytest.mark.anyio
async def test_kill_and_restart_redis(own_redis: RedisServer) -> None:
    recorder = Recorder()
    layer = await started(own_redis.url(), recorder)
    other = await started(own_redis.url(), origin=OTHER_ORIGIN)
    groups = ["a", "b", "c"]
    for group in groups:
        await layer.subscribe(group)

    own_redis.kill()
    expected = rf"127\.0\.0\.1:{own_redis.port}.*nothing was sent"
    with anyio.fail_after(2.5), pytest.raises(BackendUnavailableError, match=expected):
        await other.publish("a", _text("into the void"))
    with anyio.fail_after(2.5), pytest.raises(BackendUnavailableError):
        await layer.presence_add("a", "c1", b"", ttl=30)
    await wait_until(lambda: not layer.health().connected)
    down = layer.health()
    assert down.last_error and down.details["down_since"] is not None

    own_redis.start()  # the same port
    restarted = time.monotonic()
    await wait_until(lambda: layer.health().connected and other.health().connected)
    reconnect_time = time.monotonic() - restarted
    for group in groups:
        await other.publish(group, _text(group))
    await recorder.wait_for_count(len(groups))
    assert recorder.data() == [(group, group.encode()) for group in groups]
    health = layer.health()
    assert health.reconnects >= 1 and health.subscribed_groups == len(groups)
    assert health.details["down_since"] is None
    assert reconnect_time < 2.5
    for instance in (layer, other):
        await instance.stop()


@pytest.mark.anyio
async def test_frozen_redis_fails_fast_then_recovers(own_redis: RedisServer) -> None:
    recorder = Recorder()
    layer = await started(own_redis.url(), recorder)
    other = await started(own_redis.url(), origin=OTHER_ORIGIN)
    await layer.subscribe("room")

    own_redis.freeze()  # connections stay open, nothing answers
    began = time.monotonic()
    with anyio.fail_after(2.5), pytest.raises(BackendUnavailableError, match="unreachable"):
        await other.publish("room", _text("stuck?"))
    assert time.monotonic() - began >= 1.5  # it did wait for the timeout, not crash early
    with anyio.fail_after(2.5), pytest.raises(BackendUnavailableError):
        await layer.presence_list("room")
    # the reader notices through its PINGs, without any traffic of its own
    await wait_until(lambda: not layer.health().connected, timeout=5)

    own_redis.thaw()
    await wait_until(lambda: layer.health().connected, timeout=5)
    await other.publish("room", _text("back"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"back")]
    assert layer.health().reconnects >= 1
    for instance in (layer, other):
        await instance.stop()


# saved and idempotent publishes


async def _commands(raw: aioredis.Redis, name: str | None = None) -> int:
    """Commands Redis ran so far (those run inside scripts included), or of one name."""
    stats = await raw.info("commandstats")
    if name is not None:
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
    return sum(int(entry["calls"]) for entry in stats.values())


@pytest.mark.anyio
async def test_saved_messages_arrive_in_seq_order_from_every_process(redis_url: str) -> None:
    recorder = Recorder()
    listener = await started(redis_url, recorder, origin=uuid.uuid4().bytes)
    await listener.subscribe("room")
    publishers = [await started(redis_url, origin=uuid.uuid4().bytes) for _ in range(3)]
    stores = [publisher.default_history() for publisher in publishers]
    results = await asyncio.gather(
        *(
            publisher.publish_saved("room", "json", b'{"p":%d}' % n, history=store)
            for _ in range(100)
            for n, (publisher, store) in enumerate(zip(publishers, stores, strict=True))
        )
    )
    assert sorted(r.entry.seq for r in results if r.entry) == list(range(1, 301))
    await recorder.wait_for_count(300)
    # one script numbers and publishes: publish order is seq order, without a gap
    assert [m.seq for _, m in recorder.messages] == list(range(1, 301))
    assert len({m.epoch for _, m in recorder.messages}) == 1
    for layer in (listener, *publishers):
        await layer.stop()
    for store in stores:
        await store.close()


@pytest.mark.anyio
async def test_lua_writes_the_wire_format_of_encode_wire(
    redis_url: str, raw: aioredis.Redis
) -> None:
    layer = await started(redis_url)
    history = layer.default_history()
    pubsub = raw.pubsub()
    await pubsub.subscribe("nexios:{g:room}")
    await pubsub.get_message(timeout=1)  # the confirmation
    result = await layer.publish_saved(
        "room", "json", b'{"a":1}', history=history, seq_field="n", idempotency_key="k"
    )
    message = None
    with anyio.fail_after(5):
        while message is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    assert result.entry is not None
    # The seq field is stamped where the message is saved (history keeps what members
    # receive), so the wire carries the stamped data and no field to stamp.
    stamped = b'{"n":%d,"a":1}' % result.entry.seq
    assert result.entry.data == stamped
    expected = WireMessage("json", stamped, result.entry.seq, layer.origin, result.entry.epoch)
    assert message["data"] == base.encode_wire(expected)
    assert base.decode_wire(message["data"]) == expected
    await pubsub.aclose()
    await history.close()
    await layer.stop()


@pytest.mark.anyio
async def test_publish_saved_with_another_store_takes_two_steps(
    redis_url: str, second_recorder: Recorder
) -> None:
    layer = await started(redis_url)
    other = await started(redis_url, second_recorder, origin=OTHER_ORIGIN)
    await other.subscribe("room")
    history = MemoryHistoryStore()
    result = await layer.publish_saved("room", "text", b"hi", history=history)
    assert result.entry is not None and result.entry.seq == 1 and result.receivers == 1
    assert (await history.read("room")).last_seq == 1
    await second_recorder.wait_for_count(1)
    assert second_recorder.messages[0][1].epoch == result.entry.epoch
    for instance in (layer, other):
        await instance.stop()


@pytest.fixture
def second_recorder() -> Recorder:
    return Recorder()


@pytest.mark.anyio
async def test_one_key_saves_and_delivers_once_across_processes(redis_url: str) -> None:
    recorder = Recorder()
    listener = await started(redis_url, recorder, origin=uuid.uuid4().bytes)
    await listener.subscribe("room")
    publishers = [await started(redis_url, origin=uuid.uuid4().bytes) for _ in range(3)]
    stores = [publisher.default_history() for publisher in publishers]
    saved = await asyncio.gather(
        *(
            p.publish_saved("room", "text", b"saved", history=s, idempotency_key="retry-1")
            for _ in range(10)
            for p, s in zip(publishers, stores, strict=True)
        )
    )
    unsaved = await asyncio.gather(
        *(
            p.publish_once("room", _text("unsaved"), idempotency_key="retry-1")
            for _ in range(10)
            for p in publishers
        )
    )
    assert sum(not r.duplicate for r in saved) == 1
    assert sum(not r.duplicate for r in unsaved) == 1
    assert {(r.entry.seq, r.entry.epoch) for r in saved if r.entry} == {
        (saved[0].entry.seq, saved[0].entry.epoch)  # type: ignore[union-attr]
    }
    await publishers[0].publish("room", _text("marker"))
    await recorder.wait_for_count(3)
    assert recorder.data() == [("room", b"saved"), ("room", b"unsaved"), ("room", b"marker")]
    for layer in (listener, *publishers):
        await layer.stop()
    for store in stores:
        await store.close()


@pytest.mark.anyio
async def test_a_failed_script_changes_nothing(redis_url: str, raw: aioredis.Redis) -> None:
    recorder = Recorder()
    listener = await started(redis_url, recorder, origin=OTHER_ORIGIN)
    await listener.subscribe("room")
    layer = await started(redis_url)
    history = layer.default_history()
    await layer.publish_saved("room", "text", b"first", history=history)
    await recorder.wait_for_count(1)
    keys = sorted(await raw.keys("*"))
    await raw.config_set("maxmemory-policy", "noeviction")
    # every script's first write is refused (OOM), so it fails before changing anything
    await raw.config_set("maxmemory", "1")
    try:
        with pytest.raises(ChannelError, match="maxmemory") as saved:
            await layer.publish_saved("room", "text", b"s", history=history, idempotency_key="k")
        with pytest.raises(ChannelError, match="maxmemory") as unsaved:
            await layer.publish_once("room", _text("u"), idempotency_key="k")
    finally:
        await raw.config_set("maxmemory", "0")
    # refused, not unreachable: the broker is up
    assert not isinstance(saved.value, BackendUnavailableError)
    assert not isinstance(unsaved.value, BackendUnavailableError)
    assert sorted(await raw.keys("*")) == keys
    # nothing was used up: the retries go through, and they are the next delivered
    assert not (await layer.publish_once("room", _text("u"), idempotency_key="k")).duplicate
    retried = await layer.publish_saved("room", "text", b"s", history=history, idempotency_key="k")
    assert not retried.duplicate and retried.entry is not None and retried.entry.seq == 2
    await recorder.wait_for_count(3)
    assert recorder.data() == [("room", b"first"), ("room", b"u"), ("room", b"s")]
    await history.close()
    for instance in (layer, listener):
        await instance.stop()


# subscriptions, the link, join storms


@pytest.mark.anyio
async def test_concurrent_subscribes_are_coalesced(redis_url: str, raw: aioredis.Redis) -> None:
    layer = await started(redis_url)
    before = await _commands(raw, "subscribe")
    confirmed = await asyncio.gather(*(layer.subscribe(f"g{i}") for i in range(3000)))
    assert all(confirmed)
    distinct = await _commands(raw, "subscribe") - before
    confirmed = await asyncio.gather(*(layer.subscribe("one") for _ in range(3000)))
    assert all(confirmed)
    one = await _commands(raw, "subscribe") - before - distinct
    # 3000 channels in SUBSCRIBE commands of up to 500; 3000 calls for one group: one
    assert distinct <= 3000 // 500 + 2 and one == 1
    (pubsub,) = await raw.client_list(_type="pubsub")
    assert int(pubsub["sub"]) == 3001
    await layer.stop()


@pytest.mark.anyio
async def test_subscribe_unsubscribe_subscribe_ends_subscribed(redis_url: str) -> None:
    recorder = Recorder()
    layer = await started(redis_url, recorder)
    other = await started(redis_url, origin=OTHER_ORIGIN)
    for _ in range(20):
        first = asyncio.ensure_future(layer.subscribe("room"))
        await layer.unsubscribe("room")
        assert await layer.subscribe("room") is True
        await first
    await other.publish("room", _text("still here"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("room", b"still here")]
    for instance in (layer, other):
        await instance.stop()


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["distinct groups", "one group"])
async def test_a_join_storm_on_a_healthy_redis_has_no_failures(redis_url: str, shape: str) -> None:
    joins = 20_000
    # a bound shorter than the storm: waiting in the queue is not an outage
    layer = RedisLayer(redis_url, timeout=1.0)
    await layer.start(Recorder())

    async def join(i: int) -> None:
        group = f"group-{i}" if shape == "distinct groups" else "lobby"
        await asyncio.gather(
            layer.subscribe(group), layer.presence_add(group, f"m{i}", b'{"n":1}', ttl=60)
        )

    # (the time it takes is measured by bench/backends.py, not here)
    results = await asyncio.gather(*(join(i) for i in range(joins)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} failed, e.g. {failures[:1]}"
    if shape == "one group":
        assert len(await layer.presence_list("lobby")) == joins
    else:
        assert layer.health().subscribed_groups == joins
    assert layer.health().reconnects == 0
    await layer.stop()


@pytest.mark.anyio
async def test_on_link_reports_down_then_up_once_every_group_is_back(
    own_redis: RedisServer,
) -> None:
    recorder = Recorder()
    events: list[bool] = []
    groups = [f"g{i}" for i in range(1500)]
    other = RedisLayer(own_redis.url(), origin=OTHER_ORIGIN)
    published: list[asyncio.Task[int]] = []

    def on_link(up: bool) -> None:
        events.append(up)
        if up:
            # the moment the layer says "back", every group must be receiving again
            loop = asyncio.get_running_loop()
            published.extend(loop.create_task(other.publish(g, _text(g))) for g in groups)

    layer = RedisLayer(own_redis.url())
    await layer.start(recorder, on_link=on_link)
    await other.start(Recorder())
    await asyncio.gather(*(layer.subscribe(group) for group in groups))
    assert events == []  # not for the first connection

    own_redis.kill()
    await wait_until(lambda: events == [False])
    assert await layer.subscribe("while-down") is False  # recorded only
    own_redis.start()
    await wait_until(lambda: events == [False, True])
    await asyncio.gather(*published)
    await recorder.wait_for_count(len(groups))
    assert sorted(recorder.data()) == sorted((g, g.encode()) for g in groups)
    assert layer.health().subscribed_groups == len(groups) + 1
    for instance in (layer, other):
        await instance.stop()


@pytest.mark.anyio
async def test_a_refused_group_name_never_reaches_the_reader(own_redis: RedisServer) -> None:
    recorder = Recorder()
    layer = await started(own_redis.url(), recorder)
    other = await started(own_redis.url(), origin=OTHER_ORIGIN)
    with pytest.raises(ConfigurationError):
        await layer.subscribe("bad \udc80")
    await layer.subscribe("good")
    raw = aioredis.Redis.from_url(own_redis.url())
    # a foreign publisher on a channel whose group is not UTF-8: skipped, no crash
    await raw.publish(b"nexios:{g:\xff\xfe}", b"junk")
    own_redis.restart()
    await wait_until(lambda: layer.health().reconnects == 1 and layer.health().connected)
    await other.publish("good", _text("after restart"))
    await recorder.wait_for_count(1)
    assert recorder.data() == [("good", b"after restart")]
    await raw.aclose()
    for instance in (layer, other):
        await instance.stop()


# presence at scale and after faults


@pytest.mark.anyio
async def test_reaping_costs_what_expired_not_what_exists(
    redis_url: str, raw: aioredis.Redis
) -> None:
    owner = await started(redis_url, origin=OTHER_ORIGIN)
    reaper = await started(redis_url)
    await asyncio.gather(*(owner.presence_add(f"g{i}", f"m{i}", b"", ttl=600) for i in range(3000)))
    await reaper.presence_reap()  # connects (and loads the scripts) before we count
    before = await _commands(raw)
    assert await reaper.presence_reap() == []
    nothing = await _commands(raw) - before - 1  # our INFO
    await asyncio.gather(*(owner.presence_add(f"g{i}", "gone", b"x", ttl=0.01) for i in range(30)))
    await eventually_true(lambda: _all_expired(owner, 30))
    before = await _commands(raw)
    reaped = await reaper.presence_reap()
    some = await _commands(raw) - before - 1
    assert sorted(r.group for r in reaped) == sorted(f"g{i}" for i in range(30))
    # EVALSHA + TIME + ZRANGEBYSCORE; then a handful per expired member, none per group
    assert nothing == 3
    assert some <= 3 + 30 * 6
    for layer in (owner, reaper):
        await layer.stop()


async def _all_expired(layer: RedisLayer, count: int) -> bool:
    for i in range(count):
        if "gone" in {r.channel_id for r in await layer.presence_list(f"g{i}")}:
            return False
    return True


async def eventually_true(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_reaping_a_backlog_takes_bounded_scripts(redis_url: str) -> None:
    owner = await started(redis_url, origin=OTHER_ORIGIN)
    await asyncio.gather(
        *(owner.presence_add(f"g{i % 50}", f"m{i}", b"", 0.01) for i in range(1200))
    )
    await eventually_true(lambda: _listed_none(owner))
    reaped = await owner.presence_reap()
    assert len(reaped) == 1200 and len(set(reaped)) == 1200
    assert await owner.presence_reap() == []
    await owner.stop()


async def _listed_none(layer: RedisLayer) -> bool:
    for i in range(50):
        if await layer.presence_list(f"g{i}"):
            return False
    return True


@pytest.mark.anyio
async def test_presence_comes_back_after_redis_restarts_empty(own_redis: RedisServer) -> None:
    layer = await started(own_redis.url())
    entries = [("room", "c1", b'{"a":1}'), ("room", "c2", b'{"a":2}'), ("lobby", "c1", b"")]
    for group, channel_id, info in entries:
        await layer.presence_add(group, channel_id, info, ttl=30)
    own_redis.restart()  # no persistence: every entry is gone
    await wait_until(lambda: layer.health().connected and layer.health().reconnects == 1)
    assert await layer.presence_list("room") == []
    added = await layer.presence_heartbeat(entries, ttl=30)
    assert set(added) == {PresenceRecord(*entry) for entry in entries} and len(added) == 3
    assert {r.channel_id for r in await layer.presence_list("room")} == {"c1", "c2"}
    # and the re-added entries are indexed: they are reaped when they expire
    await layer.presence_heartbeat(entries, ttl=0.01)
    await eventually_true(lambda: _gone(layer))
    assert len(await layer.presence_reap()) == 3
    await layer.stop()


async def _gone(layer: RedisLayer) -> bool:
    return not await layer.presence_list("room") and not await layer.presence_list("lobby")


@pytest.mark.anyio
async def test_stop_is_prompt_while_redis_is_frozen(own_redis: RedisServer) -> None:
    layer = RedisLayer(own_redis.url(), timeout=1.0)
    await layer.start(Recorder())
    await layer.subscribe("room")
    own_redis.freeze()
    try:
        pending = asyncio.ensure_future(layer.presence_add("room", "c", b"", ttl=30))
        await asyncio.sleep(0)
        with anyio.fail_after(2.0):
            await layer.stop()
        with pytest.raises((BackendUnavailableError, asyncio.CancelledError)):
            await pending
    finally:
        own_redis.thaw()


@pytest.mark.anyio
async def test_a_busy_event_loop_is_not_an_outage(redis_url: str) -> None:
    layer = RedisLayer(redis_url, timeout=0.5, ping_interval=0.1)
    history = layer.default_history()
    await layer.start(Recorder())
    await layer.subscribe("room")
    await layer.presence_add("room", "warm", b"", ttl=30)  # connected
    await history.read("room")
    calls = [
        asyncio.ensure_future(layer.presence_add("room", "c", b"", ttl=30)),
        asyncio.ensure_future(layer.publish("room", _text("x"))),
        asyncio.ensure_future(history.append("room", "text", b"x")),
    ]
    loop = asyncio.get_running_loop()

    def hog(left: int) -> None:
        time.sleep(0.3)  # every turn of the loop now takes longer than half the timeout
        if left:
            loop.call_soon(hog, left - 1)

    # the loop is busy for 2.4 s (a storm, a big fan-out); Redis answers at once
    loop.call_soon(hog, 7)
    await asyncio.gather(*calls)
    assert layer.health().connected and layer.health().reconnects == 0
    await history.close()
    await layer.stop()


# the command queue both Redis backends use


@pytest.mark.anyio
async def test_ordered_calls_run_in_call_order_in_few_batches(redis_url: str) -> None:
    queue = CommandQueue(client_from_url(redis_url, timeout=2.0), timeout=2.0)
    await asyncio.gather(*(queue.call("RPUSH", "order", i) for i in range(3000)))
    assert [int(v) for v in await queue.call("LRANGE", "order", 0, -1)] == list(range(3000))
    # the first call ran at once; the others waited and went as pipelines of <= 512
    assert queue.batches <= 3000 // 512 + 2
    await queue.close()


@pytest.mark.anyio
async def test_a_call_cancelled_while_queued_never_runs(redis_url: str) -> None:
    queue = CommandQueue(client_from_url(redis_url, timeout=2.0), timeout=2.0)
    first = asyncio.ensure_future(queue.call("SET", "first", 1))
    cancelled = asyncio.ensure_future(queue.call("SET", "cancelled", 1))
    last = asyncio.ensure_future(queue.call("SET", "last", 1))
    await asyncio.sleep(0)  # all three are in: one on the wire, two queued
    cancelled.cancel()
    await asyncio.gather(first, last)
    assert await queue.call("EXISTS", "first", "cancelled", "last") == 2
    await queue.close()


@pytest.mark.anyio
async def test_an_overloaded_queue_refuses_more_calls(redis_url: str) -> None:
    queue = CommandQueue(client_from_url(redis_url, timeout=2.0), timeout=2.0, max_queued=10)
    results = await asyncio.gather(
        *(queue.call("INCR", "n") for _ in range(30)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused and all(isinstance(r, ChannelError) for r in refused)
    assert not any(isinstance(r, BackendUnavailableError) for r in refused)
    assert "already waiting" in str(refused[0])
    assert int(await queue.call("GET", "n")) == 30 - len(refused)
    await queue.close()


@pytest.mark.anyio
async def test_scripts_come_back_after_a_script_flush(redis_url: str, raw: aioredis.Redis) -> None:
    layer = await started(redis_url)
    await layer.presence_add("room", "c1", b"", ttl=30)
    await raw.script_flush()  # no reconnect: the connections do not reload by themselves
    await asyncio.gather(*(layer.presence_add("room", f"c{i}", b"", ttl=30) for i in range(50)))
    assert len(await layer.presence_list("room")) == 50
    await layer.stop()


@pytest.mark.anyio
async def test_cancelling_a_loop_of_commands_is_never_lost(redis_url: str) -> None:
    """A stop that cancels the maintenance loop must end it, whatever it was awaiting
    (redis-py's socket timeout is built on wait_for, which loses such cancels on 3.11)."""
    layer = await started(redis_url)
    history = layer.default_history()
    await layer.presence_add("room", "c1", b"", ttl=30)

    async def maintain() -> None:
        while True:
            await layer.presence_heartbeat([("room", "c1", b"")], ttl=30)
            await layer.presence_reap()
            await history.read("room", limit=0)

    for attempt in range(50):
        task = asyncio.ensure_future(maintain())
        for _ in range(attempt % 9):
            await asyncio.sleep(0)  # cancel at a different point each time
        task.cancel()
        with anyio.fail_after(1):
            with pytest.raises(asyncio.CancelledError):
                await task
    await history.close()
    await layer.stop()
