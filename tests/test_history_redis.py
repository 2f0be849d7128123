"""The Redis Streams history store: the conformance suite, many processes, Redis details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from hashlib import blake2b
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from nexios.exceptions import BackendUnavailableError, HistoryStoreError
from nexios.history.base import HistoryEntry, HistoryLimits, HistoryStore, page_for
from nexios.history.redis import RedisHistoryStore
from tests.conformance.history import HistoryStoreConformance, MakeStore
from tests.support.redis import RedisServer, free_port


@pytest.fixture
async def make_redis_store(redis_url: str) -> AsyncIterator[MakeStore]:
    stores: list[RedisHistoryStore] = []

    def make(limits: HistoryLimits | None = None) -> RedisHistoryStore:
        store = RedisHistoryStore(redis_url, limits=limits)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


class TestRedisHistory(HistoryStoreConformance):
    @pytest.fixture
    def make_store(self, make_redis_store: MakeStore) -> MakeStore:
        return make_redis_store


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.anyio
async def test_two_processes_appending_concurrently_get_unique_seqs(
    make_redis_store: MakeStore,
) -> None:
    one, two = make_redis_store(None), make_redis_store(None)
    appended = await asyncio.gather(
        *(
            store.append("room", "text", f"{n}-{i}".encode())
            for i in range(150)
            for n, store in enumerate((one, two))
        )
    )
    assert sorted(entry.seq for entry in appended) == list(range(1, 301))
    page = await two.read("room")
    assert [entry.seq for entry in page] == list(range(1, 301))
    assert {entry.seq: entry.data for entry in page} == {e.seq: e.data for e in appended}
    # stream order is seq order, and created never goes back
    created = [entry.created for entry in page]
    assert created == sorted(created)


@pytest.mark.anyio
async def test_keys_layout(make_redis_store: MakeStore, raw: aioredis.Redis) -> None:
    store = make_redis_store(HistoryLimits(max_entries=10, max_age=60))
    entry = await store.append("room", "json", b'{"a":1}', idempotency_key="k")
    # one hash tag per group: its keys share a Redis Cluster slot
    key_k = b"nexios:{g:room}:i:" + blake2b(b"k", digest_size=16).hexdigest().encode()
    assert sorted(await raw.keys("*")) == [b"nexios:{g:room}:h", key_k, b"nexios:{g:room}:m"]
    assert await raw.hgetall("nexios:{g:room}:m") == {b"seq": b"1", b"epoch": entry.epoch.encode()}
    stream: Any = await raw.xrange("nexios:{g:room}:h")
    ((entry_id, fields),) = stream
    assert fields == {b"seq": b"1", b"kind": b"json", b"data": b'{"a":1}'}
    assert entry.created == int(entry_id.split(b"-")[0]) / 1000
    # stream and numbering expire together, after max_age without appends
    assert 59_000 < await raw.pttl("nexios:{g:room}:h") <= 60_000
    assert 59_000 < await raw.pttl("nexios:{g:room}:m") <= 60_000
    assert 119_000 < await raw.pttl(key_k) <= 120_000
    await store.clear("room")
    assert await raw.exists("nexios:{g:room}:h") == 0
    assert await raw.hget("nexios:{g:room}:m", "seq") == b"1"


@pytest.mark.anyio
async def test_without_an_age_bound_nothing_expires(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(HistoryLimits(max_entries=10, max_age=None))
    await store.append("room", "json", b"1")
    assert await raw.pttl("nexios:{g:room}:h") == -1
    assert await raw.pttl("nexios:{g:room}:m") == -1


@pytest.mark.anyio
async def test_a_group_name_with_braces_keeps_one_slot(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(None)
    for group in ("a}b", "{x}", "}", "a:{g:b}:h"):
        entry = await store.append(group, "text", group.encode())
        assert [e.data for e in await store.read(group)] == [group.encode()]
        assert entry.seq == 1
    assert await store.groups() == sorted(["a}b", "{x}", "}", "a:{g:b}:h"])
    for key in await raw.keys("*"):
        # the tag is what lies between the first "{" and the next "}": per group, one
        assert key.startswith(b"nexios:{g:")
    # no name makes one group's key another's: "a" + key "x}:h" vs the group "a}:i:x"
    await store.append("a", "text", b"1", idempotency_key="x}:h")
    other = await store.append("a}:i:x", "text", b"2")
    assert other.seq == 1 and [e.data for e in await store.read("a}:i:x")] == [b"2"]


@pytest.mark.anyio
async def test_key_prefix_separates_apps(redis_url: str) -> None:
    one = RedisHistoryStore(redis_url, key_prefix="app1")
    two = RedisHistoryStore(redis_url, key_prefix="app2")
    await one.append("room", "text", b"one")
    assert await two.read("room") == [] and await two.groups() == []
    assert (await two.append("room", "text", b"two")).seq == 1
    await one.close()
    await two.close()


@pytest.mark.anyio
async def test_reads_match_page_for(make_redis_store: MakeStore) -> None:
    """Every since/limit combination gives what page_for gives on the kept entries."""
    store = make_redis_store(HistoryLimits(max_entries=450, max_age=None))
    for i in range(500):  # keeps 51..500, more than one XREVRANGE page
        await store.append("g", "text", str(i).encode())
    kept = list(await store.read("g"))
    assert [e.seq for e in kept] == list(range(51, 501))
    for since in (None, 0, 49, 50, 51, 52, 100, 299, 300, 499, 500, 501, 900):
        for limit in (None, 0, 1, 7, 200, 449, 450, 451):
            page = await store.read("g", since=since, limit=limit)
            expected = page_for(kept, since=since, limit=limit, last_seq=500)
            assert list(page) == list(expected), (since, limit)
            assert (page.complete, page.first_seq, page.last_seq) == (
                expected.complete,
                expected.first_seq,
                expected.last_seq,
            ), (since, limit)


@pytest.mark.anyio
async def test_age_bound_applies_on_read_without_appends(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(HistoryLimits(max_entries=100, max_age=0.3))
    await store.append("g", "text", b"a")
    last = await store.append("g", "text", b"b")

    async def gone() -> bool:
        return len(await store.read("g")) == 0

    with anyio.fail_after(5):
        while not await gone():
            await anyio.sleep(0.02)
    page = await store.read("g", since=1, epoch=last.epoch)
    assert page == [] and page.first_seq is None and not page.complete
    # Redis expired the numbering with the entries
    with anyio.fail_after(5):
        while await raw.exists("nexios:{g:g}:m", "nexios:{g:g}:h"):
            await anyio.sleep(0.02)
    assert (await store.read("g")).last_seq == 0


@pytest.mark.anyio
async def test_rejects_data_that_is_not_bytes(make_redis_store: MakeStore) -> None:
    store = make_redis_store(None)
    with pytest.raises(TypeError, match="bytes"):
        await store.append("g", "text", "not bytes")  # type: ignore[arg-type]
    assert (await store.read("g")).last_seq == 0


@pytest.mark.anyio
async def test_redis_errors_become_history_store_errors(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(None)
    await raw.set("nexios:{g:room}:m", "not a hash")
    with pytest.raises(HistoryStoreError, match="append"):
        await store.append("room", "text", b"x")
    with pytest.raises(HistoryStoreError, match="read"):
        await store.read("room")


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.anyio
async def test_unreachable_redis_raises_backend_unavailable_quickly() -> None:
    store: HistoryStore = RedisHistoryStore(f"redis://127.0.0.1:{free_port()}/0")
    with anyio.fail_after(2.5):
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            await store.append("room", "text", b"x")
        with pytest.raises(BackendUnavailableError):
            await store.read("room")
        with pytest.raises(BackendUnavailableError):
            await store.groups()
    await store.close()


@pytest.mark.anyio
async def test_survives_a_redis_restart_and_a_freeze(own_redis: RedisServer) -> None:
    store = RedisHistoryStore(own_redis.url())
    first = await store.append("room", "text", b"before")
    own_redis.restart()  # no persistence: the history (and its counter) is gone
    second = await store.append("room", "text", b"after")  # scripts are loaded again
    assert isinstance(first, HistoryEntry) and second.seq == 1
    assert second.epoch != first.epoch
    assert not (await store.read("room", since=1, epoch=first.epoch)).complete
    own_redis.freeze()
    with anyio.fail_after(2.5), pytest.raises(BackendUnavailableError, match="timed out"):
        await store.read("room")
    own_redis.thaw()
    assert [e.data for e in await store.read("room")] == [b"after"]
    await store.close()


@pytest.mark.anyio
async def test_lost_data_means_a_new_epoch(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(None)
    before = [await store.append("room", "text", b"%d" % i) for i in range(3)]
    await raw.flushall()
    page = await store.read("room", since=3, epoch=before[0].epoch)
    assert page == [] and not page.complete
    assert (page.epoch, page.last_seq) == ("", 0)
    after = await store.append("room", "text", b"after")
    assert after.seq == 1 and after.epoch not in ("", before[0].epoch)
    # numbers of the lost numbering never pass for new ones
    stale = await store.read("room", since=1, epoch=before[0].epoch)
    assert stale == [] and not stale.complete and stale.last_seq == 1


@pytest.mark.anyio
async def test_a_stream_without_its_numbering_is_discarded(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(None)
    for i in range(3):
        await store.append("room", "text", b"%d" % i)
    await raw.delete("nexios:{g:room}:m")  # as maxmemory eviction might
    orphaned = await store.read("room")
    assert orphaned == [] and orphaned.epoch == "" and orphaned.last_seq == 0
    entry = await store.append("room", "text", b"new")
    assert entry.seq == 1
    assert [e.data for e in await store.read("room")] == [b"new"]


@pytest.mark.anyio
async def test_idempotency_is_atomic_across_stores(make_redis_store: MakeStore) -> None:
    stores = [make_redis_store(None) for _ in range(3)]
    entries = await asyncio.gather(
        *(
            store.append("room", "text", f"{n}".encode(), idempotency_key=f"k{i}")
            for i in range(40)
            for n, store in enumerate(stores)
        )
    )
    assert sum(not e.duplicate for e in entries) == 40
    by_key: dict[int, set[tuple[int, str]]] = {}
    for i, entry in enumerate(entries):
        by_key.setdefault(i // 3, set()).add((entry.seq, entry.epoch))
    assert all(len(numbers) == 1 for numbers in by_key.values())
    assert [e.seq for e in await stores[0].read("room")] == list(range(1, 41))


@pytest.mark.anyio
async def test_cancel_and_close_are_prompt_while_redis_is_frozen(own_redis: RedisServer) -> None:
    store = RedisHistoryStore(own_redis.url(), timeout=1.0)
    await store.append("room", "text", b"x")
    own_redis.freeze()
    try:
        pending = asyncio.create_task(store.read("room"))
        await asyncio.sleep(0)  # let the read reach the queue
        with anyio.fail_after(0.5):
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        with anyio.fail_after(1.5):
            await store.close()
    finally:
        own_redis.thaw()
    assert [e.data for e in await store.read("room")] == [b"x"]
    await store.close()


@pytest.mark.anyio
async def test_a_stream_key_of_another_type_fails_the_append_before_any_change(
    make_redis_store: MakeStore, raw: aioredis.Redis
) -> None:
    store = make_redis_store(None)
    await store.append("room", "text", b"1")
    await raw.delete("nexios:{g:room}:h")
    await raw.set("nexios:{g:room}:h", "not a stream")
    with pytest.raises(HistoryStoreError, match="WRONGTYPE"):
        await store.append("room", "text", b"2", idempotency_key="k")
    assert await raw.hget("nexios:{g:room}:m", "seq") == b"1"  # no number used up
    assert await raw.keys("nexios:{g:room}:i:*") == []
