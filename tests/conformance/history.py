"""The behaviour every :class:`~nexios.history.base.HistoryStore` must show.

Subclass :class:`HistoryStoreConformance` in a ``test_*`` module and provide a
``make_store`` fixture: a callable taking ``HistoryLimits | None`` and returning a fresh,
empty store (closed by the fixture's teardown). ``store`` is ``make_store(None)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
import pytest

from nexios.encoding import default as nexios_encoding_default
from nexios.history.base import HistoryLimits, HistoryPage, HistoryStore

__all__ = ["HistoryStoreConformance", "MakeStore"]

MakeStore = Callable[[HistoryLimits | None], HistoryStore]


def seqs(page: HistoryPage) -> list[int]:
    return [entry.seq for entry in page]


async def fill(store: HistoryStore, group: str, count: int) -> None:
    for i in range(count):
        await store.append(group, "json", orjson.dumps({"i": i}))


class HistoryStoreConformance:
    """Inherit, provide ``make_store``; every test below then runs on that store."""

    @pytest.fixture
    def store(self, make_store: MakeStore) -> HistoryStore:
        return make_store(None)

    # numbering

    @pytest.mark.anyio
    async def test_seq_starts_at_one_and_increases(self, store: HistoryStore) -> None:
        before = time.time()
        entries = [await store.append("g", "text", f"m{i}".encode()) for i in range(5)]
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert all(before - 1 <= e.created <= time.time() + 1 for e in entries)
        page = await store.read("g")
        assert page == entries
        assert [e.created for e in page] == [e.created for e in entries]
        assert page.last_seq == 5 and page.first_seq == 1 and page.complete

    @pytest.mark.anyio
    async def test_concurrent_appends_get_unique_increasing_seqs(self, store: HistoryStore) -> None:
        entries = await asyncio.gather(
            *(store.append("g", "json", orjson.dumps(i)) for i in range(200))
        )
        assert sorted(e.seq for e in entries) == list(range(1, 201))
        page = await store.read("g")
        assert seqs(page) == list(range(1, 201))
        # each entry kept its own payload under its own number
        assert {e.seq: e.payload for e in page} == {e.seq: e.payload for e in entries}

    @pytest.mark.anyio
    async def test_groups_are_independent(self, store: HistoryStore) -> None:
        await fill(store, "a", 3)
        b = await store.append("b", "text", b"first of b")
        assert b.seq == 1
        assert seqs(await store.read("a")) == [1, 2, 3]
        page_b = await store.read("b")
        assert seqs(page_b) == [1] and page_b.last_seq == 1
        assert all(e.group == "a" for e in await store.read("a"))

    @pytest.mark.anyio
    async def test_unknown_group_reads_empty(self, store: HistoryStore) -> None:
        page = await store.read("nobody")
        assert page == [] and page.last_seq == 0 and page.first_seq is None and page.complete
        since_zero = await store.read("nobody", since=0)
        assert since_zero == [] and since_zero.complete

    # payloads

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("kind", "data", "payload"),
        [
            ("json", b'{"text":"hi","n":[1,2.5,null]}', {"text": "hi", "n": [1, 2.5, None]}),
            ("text", "héllo ✓".encode(), "héllo ✓"),
            ("bytes", b"\x00\xff\x10", b"\x00\xff\x10"),
        ],
    )
    async def test_payload_kinds_round_trip(
        self, store: HistoryStore, kind: str, data: bytes, payload: Any
    ) -> None:
        appended = await store.append("g", kind, data)
        (entry,) = await store.read("g")
        assert entry.kind == kind and entry.data == data
        assert entry.payload == payload and type(entry.payload) is type(payload)
        assert appended.payload == payload

    @pytest.mark.anyio
    async def test_entries_encode_to_json(self, store: HistoryStore) -> None:
        await store.append("g", "json", b'{"a": [1, 2]}')
        await store.append("g", "text", b"plain")
        await store.append("g", "bytes", b"\x00\x01")
        page = await store.read("g")
        one = orjson.loads(orjson.dumps(page[0], default=nexios_encoding_default))
        assert one == {"seq": 1, "payload": {"a": [1, 2]}, "created": page[0].created}
        # a page, a slice of it and a dict holding one all encode like lists of entries
        for value in (page, page[-3:], {"messages": page}):
            decoded = orjson.loads(orjson.dumps(value, default=nexios_encoding_default))
            messages = decoded["messages"] if isinstance(decoded, dict) else decoded
            assert [m["payload"] for m in messages] == [{"a": [1, 2]}, "plain", "AAE="]
            assert [m["seq"] for m in messages] == [1, 2, 3]

    @pytest.mark.anyio
    async def test_rejects_unknown_kind(self, store: HistoryStore) -> None:
        with pytest.raises(ValueError, match="kind"):
            await store.append("g", "xml", b"<a/>")
        assert (await store.read("g")).last_seq == 0

    # reading

    @pytest.mark.anyio
    async def test_read_without_since_returns_newest_oldest_first(
        self, store: HistoryStore
    ) -> None:
        await fill(store, "g", 10)
        assert seqs(await store.read("g", limit=3)) == [8, 9, 10]
        assert seqs(await store.read("g", limit=50)) == list(range(1, 11))
        assert seqs(await store.read("g", limit=0)) == []
        page = await store.read("g", limit=3)
        assert page.first_seq == 1 and page.last_seq == 10 and page.complete

    @pytest.mark.anyio
    async def test_read_since_returns_first_after_since(self, store: HistoryStore) -> None:
        await fill(store, "g", 10)
        assert seqs(await store.read("g", since=4)) == [5, 6, 7, 8, 9, 10]
        assert seqs(await store.read("g", since=4, limit=2)) == [5, 6]
        assert seqs(await store.read("g", since=10)) == []
        assert [e.payload for e in await store.read("g", since=8)] == [{"i": 8}, {"i": 9}]

    @pytest.mark.anyio
    async def test_complete_when_nothing_after_since_was_pruned(
        self, make_store: MakeStore
    ) -> None:
        store = make_store(HistoryLimits(max_entries=5, max_age=None))
        await fill(store, "g", 8)  # keeps 4..8
        for since in (3, 5, 8):
            page = await store.read("g", since=since)
            assert page.complete, since
            assert seqs(page) == list(range(since + 1, 9))
        assert (await store.read("g", since=3, limit=1)).complete

    @pytest.mark.anyio
    async def test_incomplete_when_gap_is_larger_than_history(self, make_store: MakeStore) -> None:
        store = make_store(HistoryLimits(max_entries=5, max_age=None))
        await fill(store, "g", 8)  # keeps 4..8; 1..3 are gone
        for since in (0, 1, 2):
            page = await store.read("g", since=since)
            assert not page.complete, since
            assert seqs(page) == [4, 5, 6, 7, 8]
            assert page.first_seq == 4 and page.last_seq == 8

    @pytest.mark.anyio
    async def test_incomplete_when_since_is_ahead_of_store(self, store: HistoryStore) -> None:
        await fill(store, "g", 3)
        page = await store.read("g", since=7)
        assert page == [] and not page.complete and page.last_seq == 3
        empty = await store.read("never-written", since=1)
        assert empty == [] and not empty.complete

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("since", "limit"), [(-1, None), (None, -1), ("3", None), (None, 2.5), (1.0, None)]
    )
    async def test_invalid_since_or_limit_raise(
        self, store: HistoryStore, since: Any, limit: Any
    ) -> None:
        with pytest.raises(ValueError):
            await store.read("g", since=since, limit=limit)

    # bounds

    @pytest.mark.anyio
    async def test_count_bound_prunes_oldest_one_by_one(self, make_store: MakeStore) -> None:
        store = make_store(HistoryLimits(max_entries=3, max_age=None))
        await fill(store, "g", 3)
        assert seqs(await store.read("g")) == [1, 2, 3]
        await store.append("g", "text", b"4")
        assert seqs(await store.read("g")) == [2, 3, 4]
        await store.append("g", "text", b"5")
        assert seqs(await store.read("g")) == [3, 4, 5]

    @pytest.mark.anyio
    async def test_count_bound_keeps_exactly_max_entries(self, make_store: MakeStore) -> None:
        store = make_store(HistoryLimits(max_entries=1000, max_age=None))
        await fill(store, "g", 1005)
        page = await store.read("g")
        assert seqs(page) == list(range(6, 1006))
        assert page.first_seq == 6 and page.last_seq == 1005
        assert page[0].payload == {"i": 5}

    @pytest.mark.anyio
    async def test_age_bound_prunes_old_entries(self, make_store: MakeStore) -> None:
        store = make_store(HistoryLimits(max_entries=100, max_age=0.2))
        await store.append("g", "text", b"old")
        await store.append("other", "text", b"old too")
        assert seqs(await store.read("g")) == [1]
        # Age is the one bound that needs time to pass: poll until both groups expire.
        with anyio.fail_after(5):
            while await store.groups():
                await anyio.sleep(0.05)
        assert await store.read("other") == []
        expired = await store.read("g", since=0)
        assert expired == [] and not expired.complete and expired.last_seq == 1
        new = await store.append("g", "text", b"new")
        assert new.seq == 2
        page = await store.read("g")
        assert seqs(page) == [2] and page.first_seq == 2
        assert not (await store.read("g", since=0)).complete
        assert (await store.read("g", since=1)).complete
        assert await store.groups() == ["g"]

    # clear and groups

    @pytest.mark.anyio
    async def test_clear_group_keeps_numbering(self, store: HistoryStore) -> None:
        await fill(store, "a", 3)
        await fill(store, "b", 2)
        await store.clear("a")
        page = await store.read("a")
        assert page == [] and page.last_seq == 3 and page.first_seq is None
        assert seqs(await store.read("b")) == [1, 2]
        assert (await store.append("a", "text", b"again")).seq == 4
        assert seqs(await store.read("a")) == [4]

    @pytest.mark.anyio
    async def test_clear_all_keeps_numbering(self, store: HistoryStore) -> None:
        await fill(store, "a", 3)
        await fill(store, "b", 2)
        await store.clear()
        assert await store.groups() == []
        assert await store.read("a") == [] and await store.read("b") == []
        assert (await store.append("a", "text", b"x")).seq == 4
        assert (await store.append("b", "text", b"y")).seq == 3
        await store.clear("missing")  # clearing an unknown group is not an error

    @pytest.mark.anyio
    async def test_groups_lists_groups_with_entries(self, store: HistoryStore) -> None:
        assert await store.groups() == []
        await fill(store, "room:2", 1)
        await fill(store, "room:1", 2)
        assert sorted(await store.groups()) == ["room:1", "room:2"]
        await store.clear("room:1")
        assert await store.groups() == ["room:2"]
