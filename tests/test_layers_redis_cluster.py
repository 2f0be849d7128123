"""The Redis Cluster channel layer: the conformance suite on a real cluster (three
primaries, three replicas), then what only a cluster has: shards, moving slots,
failovers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from nexios._redis import KeySpace
from nexios.exceptions import BackendUnavailableError, ConfigurationError
from nexios.history import history_from_url
from nexios.history.base import HistoryLimits, HistoryStore
from nexios.history.redis import RedisHistoryStore
from nexios.layers import layer_from_url
from nexios.layers.base import PresenceRecord, WireMessage
from nexios.layers.redis import RedisLayer
from nexios.layers.redis_cluster import RedisClusterLayer
from nexios.runtime.settings import ChannelSettings, SettingsOverrides
from tests.conformance.layer import ChannelLayerConformance, Recorder
from tests.support.redis import LocalCluster, RedisServer, free_port

OTHER_ORIGIN = uuid.uuid4().bytes
"""The origin of a layer that plays "another process" inside this one."""


async def started(
    url: str, recorder: Recorder | None = None, *, origin: bytes | None = None, **options: object
) -> RedisClusterLayer:
    layer = RedisClusterLayer(url, origin=origin, **options)  # type: ignore[arg-type]
    await layer.start(recorder or Recorder())
    return layer


class TestRedisClusterLayer(ChannelLayerConformance):
    @pytest.fixture
    async def layer(self, cluster_url: str, recorder: Recorder) -> AsyncIterator[RedisClusterLayer]:
        layer = await started(cluster_url, recorder)
        yield layer
        await layer.stop()

    @pytest.fixture
    async def second_layer(
        self, cluster_url: str, second_recorder: Recorder
    ) -> AsyncIterator[RedisClusterLayer]:
        layer = await started(cluster_url, second_recorder, origin=OTHER_ORIGIN)
        yield layer
        await layer.stop()


# -- helpers -----------------------------------------------------------------------------


def _text(data: str) -> WireMessage:
    return WireMessage("text", data.encode())


def _calls(cluster: LocalCluster, command: str = "") -> int:
    """Commands the primaries ran so far (``command``: only that one, e.g. "evalsha")."""
    total = 0
    for node in cluster.primaries():
        with redis.Redis(port=node.port) as client:
            stats = client.info("commandstats")
        if command:
            total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
        else:
            total += sum(int(entry["calls"]) for entry in stats.values())
    return total


def _pubsub_clients(cluster: LocalCluster) -> dict[int, list[dict[str, str]]]:
    found = {}
    for node in cluster.primaries():
        with redis.Redis(port=node.port, decode_responses=True) as client:
            found[node.port] = client.client_list(_type="pubsub")
    return found


def groups_on_each_primary(cluster: LocalCluster, keyspace: KeySpace) -> dict[int, str]:
    """One group name per primary (port), whose slot that primary serves."""
    wanted = {node.port for node in cluster.primaries()}
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(wanted):
        group = f"group-{i}"
        owner = cluster.primary_of(keyspace.stream(group).encode()).port
        found.setdefault(owner, group)
        i += 1
    return found


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


# -- configuration -----------------------------------------------------------------------


def test_the_url_scheme_picks_the_cluster_layer_and_its_history() -> None:
    url = "redis+cluster://127.0.0.1:7000,127.0.0.2:7001"
    limits = HistoryLimits(max_entries=3, max_age=None)
    layer = layer_from_url(url, history_limits=limits)
    assert isinstance(layer, RedisClusterLayer) and layer.url == url
    history = layer.default_history()
    # the same key space: saved messages are numbered, stored and published in one script
    assert isinstance(history, RedisHistoryStore) and history.limits is limits
    assert history.keyspace == layer.keyspace and layer.keyspace.sharded
    assert isinstance(history_from_url("rediss+cluster://10.0.0.1:7000"), RedisHistoryStore)
    settings = ChannelSettings.resolve(SettingsOverrides(), {"NEXIOS_CHANNELS_URL": url})
    assert isinstance(settings.build_layer(), RedisClusterLayer)
    in_code = ChannelSettings.resolve(SettingsOverrides(channels_url=url), {})
    assert isinstance(in_code.build_layer(), RedisClusterLayer)
    assert isinstance(in_code.build_history(in_code.build_layer()), RedisHistoryStore)
    assert isinstance(layer_from_url("redis://127.0.0.1:6379/0"), RedisLayer)
    assert not isinstance(layer_from_url("redis://127.0.0.1:6379/0"), RedisClusterLayer)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "no host:port"),
        ("redis+cluster://127.0.0.1:7000/1", "database 0 only"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:http", "is not host:port"),
        ("redis+cluster://127.0.0.1:7000?no_such_option=1", "no_such_option"),
    ],
)
def test_a_bad_cluster_url_says_what_to_write(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as error:
        RedisClusterLayer(url)
    assert "redis+cluster://host:port[,host:port...]" in str(error.value)


def test_each_redis_layer_refuses_the_other_kind_of_url() -> None:
    with pytest.raises(ConfigurationError, match="RedisClusterLayer"):
        RedisLayer("redis+cluster://127.0.0.1:7000")
    with pytest.raises(ConfigurationError, match="not a Redis Cluster URL"):
        RedisClusterLayer("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="Unknown channels URL"):
        layer_from_url("cluster://127.0.0.1:7000")


def test_a_prefix_with_braces_is_refused_on_a_cluster() -> None:
    with pytest.raises(ConfigurationError, match="one hash slot"):
        RedisClusterLayer("redis+cluster://127.0.0.1:7000", key_prefix="app{1}")
    with pytest.raises(ConfigurationError, match="one hash slot"):
        RedisHistoryStore("redis+cluster://127.0.0.1:7000", key_prefix="{app}")


def test_health_hides_the_password() -> None:
    layer = RedisClusterLayer("redis+cluster://user:s3cret@127.0.0.1:7000,127.0.0.1:7001")
    health = layer.health()
    assert "s3cret" not in health.url and "user:***@" in health.url
    assert not health.connected


@pytest.mark.anyio
async def test_start_fails_fast_when_no_node_answers() -> None:
    port = free_port()
    layer = RedisClusterLayer(f"redis+cluster://127.0.0.1:{port}", timeout=0.5)
    with anyio.fail_after(3), pytest.raises(BackendUnavailableError, match="unreachable"):
        await layer.start(Recorder())
    assert not layer.health().connected


@pytest.mark.anyio
async def test_each_kind_of_url_at_the_other_kind_of_server_says_what_to_write(
    redis_server: RedisServer, redis_cluster: LocalCluster
) -> None:
    at_one_server = RedisClusterLayer(f"redis+cluster://127.0.0.1:{redis_server.port}")
    with pytest.raises(ConfigurationError, match=r"not a Redis Cluster.*redis://host:port/0"):
        await at_one_server.start(Recorder())
    assert not at_one_server.health().connected
    store = RedisHistoryStore(f"redis+cluster://127.0.0.1:{redis_server.port}")
    with pytest.raises(ConfigurationError, match="not a Redis Cluster"):
        await store.append("room", "text", b"x")
    await store.close()
    node = redis_cluster.nodes[0].port
    at_a_cluster = RedisLayer(f"redis://127.0.0.1:{node}/0")
    with pytest.raises(ConfigurationError, match=f"redis\\+cluster://127.0.0.1:{node}"):
        await at_a_cluster.start(Recorder())
    assert not at_a_cluster.health().connected


# -- shards ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_sharded_subscriber_connection_per_primary(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    layer = await started(cluster_url)
    groups = [f"g{i}" for i in range(30)]
    assert all(await asyncio.gather(*(layer.subscribe(group) for group in groups)))
    expected: dict[int, int] = {}
    for group in groups:
        port = redis_cluster.primary_of(layer.keyspace.channel(group)).port
        expected[port] = expected.get(port, 0) + 1
    clients = _pubsub_clients(redis_cluster)
    assert {port: len(found) for port, found in clients.items()} == {port: 1 for port in clients}
    assert {port: int(found[0]["ssub"]) for port, found in clients.items() if found} == expected
    assert all(found[0]["sub"] == "0" for found in clients.values())
    await layer.stop()
    assert all(found == [] for found in _pubsub_clients(redis_cluster).values())


@pytest.mark.anyio
@pytest.mark.parametrize("group", ["room", "a}b{c", "é" * 512])
async def test_everything_of_a_group_lives_in_its_slot(
    cluster_url: str, redis_cluster: LocalCluster, group: str
) -> None:
    layer = await started(cluster_url)
    history = layer.default_history()
    await layer.publish_saved(group, "text", b"x", history=history, idempotency_key="k")
    await layer.publish_once(group, _text("y"), idempotency_key="k")
    await layer.presence_add(group, "c1", b"", ttl=30)
    slot = layer.keyspace.slot(group)
    keys = []
    for node in redis_cluster.primaries():
        with redis.Redis(port=node.port) as client:
            keys += [(key, client.cluster("KEYSLOT", key)) for key in client.scan_iter()]
    assert len(keys) == 7  # stream, numbering, 2 idempotency keys, presence x2, index
    assert {found for _, found in keys} == {slot}
    assert layer.keyspace.presence_index(group).encode() in {key for key, _ in keys}
    await history.close()
    await layer.stop()


@pytest.mark.anyio
async def test_saved_messages_arrive_in_seq_order_in_every_shard(cluster_url: str) -> None:
    recorder = Recorder()
    listener = await started(cluster_url, recorder, origin=uuid.uuid4().bytes)
    groups = [f"room-{i}" for i in range(6)]
    for group in groups:
        assert await listener.subscribe(group)
    publishers = [await started(cluster_url, origin=uuid.uuid4().bytes) for _ in range(3)]
    stores = [publisher.default_history() for publisher in publishers]
    await asyncio.gather(
        *(
            publisher.publish_saved(group, "json", b'{"p":%d}' % n, history=store)
            for _ in range(40)
            for n, (publisher, store) in enumerate(zip(publishers, stores, strict=True))
            for group in groups
        )
    )
    await recorder.wait_for_count(40 * 3 * len(groups))
    for group in groups:
        received = [m for g, m in recorder.messages if g == group]
        # one script numbers and publishes: publish order is seq order, without a gap
        assert [m.seq for m in received] == list(range(1, 121))
        assert len({m.epoch for m in received}) == 1
    for layer in (listener, *publishers):
        await layer.stop()
    for store in stores:
        await store.close()


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["distinct groups", "one group"])
async def test_a_join_storm_on_a_healthy_cluster_has_no_failures(
    cluster_url: str, shape: str
) -> None:
    joins = 5000
    # a bound shorter than the storm: waiting in a queue or for a connection the busy
    # loop has not read yet is not an outage (the first calls open every connection)
    layer = await started(cluster_url, timeout=0.5)

    async def join(i: int) -> None:
        group = f"group-{i}" if shape == "distinct groups" else "lobby"
        await asyncio.gather(
            layer.subscribe(group), layer.presence_add(group, f"m{i}", b'{"n":1}', ttl=60)
        )

    results = await asyncio.gather(*(join(i) for i in range(joins)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} failed, e.g. {failures[:1]}"
    if shape == "one group":
        assert len(await layer.presence_list("lobby")) == joins
    else:
        assert layer.health().subscribed_groups == joins
    assert layer.health().reconnects == 0 and layer.health().connected
    await layer.stop()


# -- presence ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_expiry_index_is_one_key_per_slot(cluster_url: str) -> None:
    layer = await started(cluster_url)
    await layer.presence_add("room", "c1", b"info", ttl=30)
    raw = RedisCluster.from_url(cluster_url.replace("redis+cluster", "redis").split(",")[0])
    index = layer.keyspace.presence_index("room")
    assert index != layer.keyspace.presence_index("lobby")
    score = await raw.zscore(layer.keyspace.presence("room")[0], "c1")
    assert await raw.zrange(index, 0, -1, withscores=True) == [(b"room\xffc1", score)]
    assert await layer.presence_remove("room", "c1")
    assert await raw.exists(index, *layer.keyspace.presence("room")) == 0
    await raw.aclose()
    await layer.stop()


@pytest.mark.anyio
async def test_a_heartbeat_is_a_script_per_primary_not_per_member(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    layer = await started(cluster_url)
    entries = [(f"g{i}", f"c{i}", b"i") for i in range(1200)]
    await layer.presence_heartbeat([("warm", "up", b"")], ttl=30)  # connect, load scripts
    before = _calls(redis_cluster, "evalsha")
    added = await layer.presence_heartbeat(entries, ttl=30)
    scripts = _calls(redis_cluster, "evalsha") - before
    # every entry was missing (added back), in one script per primary (<= 500 entries)
    assert len(added) == 1200 and set(added) == {PresenceRecord(*entry) for entry in entries}
    assert scripts <= 3 * 2
    assert await layer.presence_heartbeat(entries, ttl=30) == []
    assert await layer.presence_list("g7") == [PresenceRecord("g7", "c7", b"i")]
    await layer.stop()


@pytest.mark.anyio
async def test_reaping_sweeps_each_primary_about_once_per_lease(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    owner = await started(cluster_url, origin=uuid.uuid4().bytes)
    reaper = await started(cluster_url, origin=uuid.uuid4().bytes)
    other = await started(cluster_url, origin=uuid.uuid4().bytes)
    await asyncio.gather(*(owner.presence_add(f"g{i}", f"m{i}", b"", ttl=600) for i in range(300)))
    assert await reaper.presence_reap() == []
    before = _calls(redis_cluster, "evalsha")
    assert await reaper.presence_reap() == []
    sweep = _calls(redis_cluster, "evalsha") - before
    # a lease per primary, then the 16384 slot indexes in scripts of 1024: not per group
    assert sweep <= 3 + 16384 // 1024 + 3
    before = _calls(redis_cluster, "evalsha")
    assert await other.presence_reap() == []  # swept just now by another process
    assert _calls(redis_cluster, "evalsha") - before == 3  # the leases only
    gone = {PresenceRecord(f"g{i}", "gone", b"x") for i in range(30)}
    await asyncio.gather(*(owner.presence_add(r.group, "gone", b"x", ttl=0.01) for r in gone))
    await anyio.sleep(0.05)
    reaped = await asyncio.gather(reaper.presence_reap(), other.presence_reap())
    # each once, by the lease holder
    assert len(reaped[0] + reaped[1]) == 30 and set(reaped[0] + reaped[1]) == gone
    for layer in (owner, reaper, other):
        await layer.stop()


# -- moving slots and failovers ------------------------------------------------------------


async def two_processes(
    url: str,
) -> tuple[RedisClusterLayer, Recorder, list[bool], RedisClusterLayer, HistoryStore]:
    """A listener (its recorder, its ``on_link`` events) and a publisher (its history)."""
    recorder = Recorder()
    events: list[bool] = []
    listener = RedisClusterLayer(url, origin=uuid.uuid4().bytes)
    await listener.start(recorder, on_link=events.append)
    publisher = await started(url, origin=uuid.uuid4().bytes)
    return listener, recorder, events, publisher, publisher.default_history()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_group_follows_its_slot_to_another_primary(own_cluster: LocalCluster) -> None:
    listener, recorder, events, publisher, history = await two_processes(own_cluster.url())
    assert await listener.subscribe("moving") and await listener.subscribe("staying")
    first = await publisher.publish_saved("moving", "text", b"before", history=history)
    await publisher.presence_add("moving", "c1", b"i", ttl=30)
    await recorder.wait_for_count(1)

    channel = listener.keyspace.channel("moving")
    source = own_cluster.primary_of(channel)
    target = next(node for node in own_cluster.primaries() if node is not source)
    own_cluster.move_slot(listener.keyspace.slot("moving"), target)

    # Redis dropped the subscription (sunsubscribe): the layer re-subscribed on the new
    # owner and says so, so that the runtime catches up from history
    await wait_until(lambda: events == [False, True])
    (client,) = _pubsub_clients(own_cluster)[target.port]
    assert int(client["ssub"]) >= 1
    await publisher.publish("moving", _text("after"))
    await publisher.publish("staying", _text("still"))
    await recorder.wait_for_count(3)
    assert sorted(recorder.data()) == sorted(
        [("moving", b"before"), ("moving", b"after"), ("staying", b"still")]
    )
    # the numbering moved with its keys but was made by another primary: a new epoch
    second = await publisher.publish_saved("moving", "text", b"moved", history=history)
    assert first.entry is not None and second.entry is not None
    assert second.entry.epoch != first.entry.epoch and second.entry.seq == 1
    assert await publisher.presence_list("moving") == [PresenceRecord("moving", "c1", b"i")]
    await history.close()
    for layer in (listener, publisher):
        await layer.stop()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_killed_primary_is_replaced_and_its_groups_start_a_new_epoch(
    own_cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Its replica lags (frozen): the last messages, acknowledged and delivered, are lost
    with the primary. Their seqs must never be given to other messages."""
    listener, recorder, events, publisher, history = await two_processes(own_cluster.url(6))
    groups = groups_on_each_primary(own_cluster, listener.keyspace)
    first = {}
    for group in groups.values():
        assert await listener.subscribe(group)
        await listener.presence_add(group, "member", b"i", ttl=30)
        first[group] = await publisher.publish_saved(group, "text", b"1", history=history)
    await recorder.wait_for_count(len(groups))
    victim = own_cluster.primaries()[0]
    lost = groups[victim.port]
    replica = own_cluster.replica_of(victim)
    with redis.Redis(port=victim.port) as client:
        assert client.execute_command("WAIT", 1, 5000) == 1  # replicated so far
        # cut the replication link, the replica frozen so that it cannot come back
        replica.freeze()
        assert client.client_kill_filter(_type="replica") == 1
    unreplicated = [
        await publisher.publish_saved(lost, "text", b"lost-%d" % i, history=history)
        for i in range(3)
    ]
    assert [r.entry.seq for r in unreplicated if r.entry] == [2, 3, 4]
    await recorder.wait_for_count(len(groups) + 3)  # delivered, then lost with the primary

    others = [group for port, group in groups.items() if port != victim.port]
    for group in others:
        await listener.presence_add(group, "gone", b"x", ttl=0.01)
    await anyio.sleep(0.05)

    killed_at = time.monotonic()
    victim.kill()
    replica.thaw()
    # meanwhile the other primaries go on: what expired there is reaped (and announced)
    with caplog.at_level(logging.WARNING, logger="nexios.layers.redis"):
        reaped = await listener.presence_reap()
    assert sorted(r.group for r in reaped) == sorted(others)
    assert f"Could not reap expired presence on 127.0.0.1:{victim.port}" in caplog.text
    await wait_until(lambda: events == [False, True], timeout=30)
    resumed = time.monotonic() - killed_at
    assert listener.health().connected and victim.port not in {
        int(name.rpartition(":")[2])
        for name in listener.health().details["primaries"]  # type: ignore[attr-defined]
    }
    # everything works again, without restarting anything
    page = await history.read(lost)
    assert page.last_seq == 1  # the promoted replica never had seqs 2-4
    for group in groups.values():
        await publisher.publish(group, _text("after"))
    await recorder.wait_for_count(2 * len(groups) + 3)
    after = {
        group: await publisher.publish_saved(group, "text", b"2", history=history)
        for group in groups.values()
    }
    for group, result in after.items():
        before = first[group].entry
        assert result.entry is not None and before is not None
        if group == lost:  # numbered by the promoted replica: a new epoch, from 1
            assert (result.entry.epoch != before.epoch, result.entry.seq) == (True, 1)
            # recovering across the failover says what it cannot give
            recovered = await history.read(lost, since=4, epoch=before.epoch)
            assert not recovered.complete and list(recovered) == []
        else:
            assert (result.entry.epoch, result.entry.seq) == (before.epoch, 2)
    entries = [(group, "member", b"i") for group in groups.values()]
    await listener.presence_heartbeat(entries, ttl=30)
    for group in groups.values():
        assert await listener.presence_list(group) == [PresenceRecord(group, "member", b"i")]
    print(f"failover: the layer was back {resumed:.2f} s after the kill")
    await history.close()
    for layer in (listener, publisher):
        await layer.stop()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_frozen_primary_fails_its_calls_in_time_and_nothing_else(
    own_cluster: LocalCluster,
) -> None:
    layer = await started(own_cluster.url(6), timeout=0.5)
    groups = groups_on_each_primary(own_cluster, layer.keyspace)
    for group in groups.values():
        assert await layer.subscribe(group)
        await layer.publish(group, _text("warm"))  # every connection is open
    frozen = own_cluster.primaries()[0]
    stuck, fine = groups[frozen.port], [g for p, g in groups.items() if p != frozen.port]
    frozen.freeze()
    try:
        with anyio.fail_after(3):
            with pytest.raises(BackendUnavailableError, match="unreachable"):
                await layer.publish(stuck, _text("x"))
        with anyio.fail_after(3):  # the other primaries answer meanwhile
            for group in fine:
                await layer.presence_add(group, "c", b"", ttl=30)
            await layer.presence_reap()
        await wait_until(lambda: not layer.health().connected, timeout=3)  # PING unanswered
        with anyio.fail_after(3):
            await layer.stop()
    finally:
        frozen.thaw()
