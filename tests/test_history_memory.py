"""The in-process history store: the conformance suite plus its own details."""

from __future__ import annotations

import pytest

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
