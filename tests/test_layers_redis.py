"""The Redis channel layer: the conformance suite, then broker faults on a real server."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
import redis.asyncio as aioredis

from nexios.exceptions import BackendUnavailableError, ChannelError, ConfigurationError
from nexios.history.base import HistoryLimits
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
