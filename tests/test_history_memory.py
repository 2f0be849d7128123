"""The in-process history store: the conformance suite plus its own details."""

from __future__ import annotations

import anyio
import pytest

from nexios.history import memory
from nexios.history.base import HistoryLimits
from nexios.history.memory import MemoryHistoryStore
from tests.conformance.history import HistoryStoreConformance, MakeStore


class TestMemoryHistory(HistoryStoreConformance):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return MemoryHistoryStore


def test_default_limits() -> None:
    assert MemoryHistoryStore().limits == HistoryLimits()
    limits = HistoryLimits(max_entries=7, max_age=None)
    assert MemoryHistoryStore(limits).limits is limits


@pytest.mark.anyio
async def test_stores_do_not_share_state() -> None:
    one, two = MemoryHistoryStore(), MemoryHistoryStore()
    await one.append("g", "text", b"a")
    assert await two.read("g") == [] and await two.groups() == []
    assert (await two.append("g", "text", b"b")).seq == 1


@pytest.mark.anyio
async def test_rejects_data_that_is_not_bytes() -> None:
    store = MemoryHistoryStore()
    with pytest.raises(TypeError, match="bytes"):
        await store.append("g", "text", "not bytes")  # type: ignore[arg-type]
    assert (await store.read("g")).last_seq == 0


@pytest.mark.anyio
async def test_a_new_store_is_a_new_epoch() -> None:
    one, two = MemoryHistoryStore(), MemoryHistoryStore()
    first = await one.append("g", "text", b"a")
    second = await two.append("g", "text", b"a")
    assert (first.seq, second.seq) == (1, 1) and first.epoch != second.epoch
    assert not (await two.read("g", since=1, epoch=first.epoch)).complete


@pytest.mark.anyio
async def test_max_groups_frees_the_least_recently_appended() -> None:
    store = MemoryHistoryStore(HistoryLimits(max_groups=3, max_age=None))
    epochs = {}
    for group in ("a", "b", "c"):
        epochs[group] = (await store.append(group, "text", b"1")).epoch
    await store.append("a", "text", b"2")  # "b" is now the least recently appended
    await store.append("d", "text", b"1")
    assert await store.groups() == ["a", "c", "d"]
    gone = await store.read("b", since=1, epoch=epochs["b"])
    assert gone == [] and not gone.complete and gone.epoch == "" and gone.last_seq == 0
    assert (await store.read("a")).epoch == epochs["a"]
    reborn = await store.append("b", "text", b"again")
    assert reborn.seq == 1 and reborn.epoch != epochs["b"]
    assert await store.groups() == ["a", "b", "d"]


@pytest.mark.anyio
async def test_many_short_lived_groups_leave_nothing_behind() -> None:
    store = MemoryHistoryStore(HistoryLimits(max_age=0.1))
    for i in range(2000):
        await store.append(f"g{i}", "text", b"x", idempotency_key="k")
    with anyio.fail_after(5):
        while await store.groups() != ["busy"]:
            await store.append("busy", "text", b"x")
            await anyio.sleep(0.02)
    # each freed group reads as never numbered: nothing of it is held any more
    assert {(await store.read(f"g{i}", limit=0)).epoch for i in range(0, 2000, 97)} == {""}


@pytest.mark.anyio
async def test_idempotency_keys_per_group_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "MAX_IDEMPOTENCY_KEYS", 5)
    store = MemoryHistoryStore()
    for i in range(8):
        await store.append("g", "text", b"x", idempotency_key=f"k{i}")
    # the 3 oldest keys were forgotten early, the 5 newest still count
    assert not (await store.append("g", "text", b"x", idempotency_key="k0")).duplicate
    assert all(
        [
            (await store.append("g", "text", b"x", idempotency_key=f"k{i}")).duplicate
            for i in range(4, 8)
        ]
    )
