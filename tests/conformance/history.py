"""The behaviour every :class:`~nexios.history.base.HistoryStore` must show.

Subclass :class:`HistoryStoreConformance` in a ``test_*`` module and provide a
``make_store`` fixture: a callable taking ``HistoryLimits | None`` and returning a fresh,
empty store (closed by the fixture's teardown). ``store`` is ``make_store(None)``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
import pytest

from nexios.encoding import default as nexios_encoding_default
from nexios.exceptions import ConfigurationError
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
        store = make_store(HistoryLimits(max_entries=100, max_age=0.4))
        await store.append("g", "text", b"old")
        first = await store.append("g", "text", b"newer")
        await store.append("other", "text", b"old too")
        assert seqs(await store.read("g")) == [1, 2]
        # Age is the one bound that needs time to pass: poll until both groups expire.
        with anyio.fail_after(5):
            while await store.groups():
                await anyio.sleep(0.05)
        assert await store.read("other") == []
        # the group was idle for max_age: its numbering went with its entries
        freed = await store.read("g")
        assert freed == [] and freed.last_seq == 0 and freed.epoch == ""
        stale = await store.read("g", since=2, epoch=first.epoch)
        assert stale == [] and not stale.complete
        new = await store.append("g", "text", b"new")
        assert new.seq == 1 and new.epoch not in ("", first.epoch)
        page = await store.read("g", since=0, epoch=new.epoch)
        assert seqs(page) == [1] and page.complete and page.epoch == new.epoch
        assert not (await store.read("g", since=2, epoch=first.epoch)).complete
        assert await store.groups() == ["g"]

    @pytest.mark.anyio
    async def test_age_bound_prunes_one_by_one_while_appending(self, make_store: MakeStore) -> None:
        store = make_store(HistoryLimits(max_entries=100, max_age=0.3))
        old = await store.append("g", "text", b"old")
        with anyio.fail_after(5):
            while True:
                entry = await store.append("g", "text", b"new")
                if (await store.read("g"))[0].seq > old.seq:
                    break
                await anyio.sleep(0.05)
        # appends kept the numbering alive while the oldest entries aged out
        page = await store.read("g", since=0, epoch=old.epoch)
        assert not page.complete and page.epoch == old.epoch == entry.epoch
        assert page.last_seq == entry.seq > 1

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
    async def test_clear_keeps_the_epoch(self, store: HistoryStore) -> None:
        before = await store.append("a", "text", b"x")
        await store.clear("a")
        page = await store.read("a", limit=0)
        assert page.epoch == before.epoch and page.last_seq == 1
        await store.clear()
        after = await store.append("a", "text", b"y")
        assert (after.seq, after.epoch) == (2, before.epoch)
        assert (await store.read("a", since=1, epoch=before.epoch)).complete

    @pytest.mark.anyio
    async def test_groups_lists_groups_with_entries(self, store: HistoryStore) -> None:
        assert await store.groups() == []
        await fill(store, "room:2", 1)
        await fill(store, "room:1", 2)
        assert sorted(await store.groups()) == ["room:1", "room:2"]
        await store.clear("room:1")
        assert await store.groups() == ["room:2"]

    # epochs

    @pytest.mark.anyio
    async def test_every_numbering_has_an_epoch(self, store: HistoryStore) -> None:
        a1 = await store.append("a", "text", b"1")
        a2 = await store.append("a", "text", b"2")
        b1 = await store.append("b", "text", b"1")
        assert re.fullmatch(r"[0-9a-f]{16}", a1.epoch)
        assert a1.epoch == a2.epoch and b1.epoch != a1.epoch
        page = await store.read("a")
        assert page.epoch == a1.epoch and {e.epoch for e in page} == {a1.epoch}
        nobody = await store.read("nobody")
        assert nobody.epoch == "" and nobody.last_seq == 0

    @pytest.mark.anyio
    async def test_read_with_the_groups_epoch(self, store: HistoryStore) -> None:
        await fill(store, "g", 5)
        epoch = (await store.read("g", limit=0)).epoch
        page = await store.read("g", since=2, epoch=epoch)
        assert seqs(page) == [3, 4, 5] and page.complete and page.epoch == epoch
        assert seqs(await store.read("g", since=2, limit=1, epoch=epoch)) == [3]
        assert seqs(await store.read("g", limit=2, epoch=epoch)) == [4, 5]

    @pytest.mark.anyio
    @pytest.mark.parametrize("since", [None, 0, 2, 5])
    async def test_read_with_another_epoch_returns_nothing(
        self, store: HistoryStore, since: int | None
    ) -> None:
        await fill(store, "g", 5)
        epoch = (await store.read("g", limit=0)).epoch
        page = await store.read("g", since=since, epoch="0123456789abcdef")
        assert page == [] and not page.complete
        assert (page.epoch, page.last_seq) == (epoch, 5)

    @pytest.mark.anyio
    async def test_an_empty_epoch_is_fine_for_a_client_that_saw_nothing(
        self, store: HistoryStore
    ) -> None:
        await fill(store, "g", 3)
        page = await store.read("g", since=0, epoch="")
        assert seqs(page) == [1, 2, 3] and page.complete
        # but "" with a position means the numbers came from some other numbering
        stale = await store.read("g", since=2, epoch="")
        assert stale == [] and not stale.complete
        # a group with no numbering has the epoch "", and nothing to lose
        empty = await store.read("nobody", since=0, epoch="")
        assert empty.complete and empty.epoch == ""
        lost = await store.read("nobody", since=4, epoch="0123456789abcdef")
        assert not lost.complete and lost.last_seq == 0

    @pytest.mark.anyio
    async def test_limit_zero_reads_the_position_only(self, store: HistoryStore) -> None:
        await fill(store, "g", 4)
        position = await store.read("g", limit=0)
        assert position == [] and position.last_seq == 4 and position.complete
        assert position.epoch == (await store.read("g")).epoch
        assert (await store.read("g", since=1, limit=0)).complete
        assert not (await store.read("g", since=1, limit=0, epoch="x" * 16)).complete

    @pytest.mark.anyio
    async def test_epoch_must_be_a_str(self, store: HistoryStore) -> None:
        with pytest.raises(ValueError, match="epoch"):
            await store.read("g", epoch=5)  # type: ignore[arg-type]

    # idempotency

    @pytest.mark.anyio
    async def test_a_repeated_idempotency_key_saves_nothing(self, store: HistoryStore) -> None:
        first = await store.append("g", "text", b"once", idempotency_key="k1")
        await store.append("g", "text", b"between")
        again = await store.append("g", "text", b"once", idempotency_key="k1")
        assert not first.duplicate and again.duplicate
        assert (again.seq, again.epoch) == (first.seq, first.epoch)
        assert abs(again.created - first.created) < 0.01
        assert [e.data for e in await store.read("g")] == [b"once", b"between"]
        # keys are per group, and other keys are other messages
        elsewhere = await store.append("h", "text", b"once", idempotency_key="k1")
        other = await store.append("g", "text", b"twice", idempotency_key="k2")
        assert not elsewhere.duplicate and not other.duplicate and other.seq == 3

    @pytest.mark.anyio
    async def test_concurrent_appends_with_one_key_save_once(self, store: HistoryStore) -> None:
        entries = await asyncio.gather(
            *(store.append("g", "json", orjson.dumps(i), idempotency_key="same") for i in range(30))
        )
        originals = [e for e in entries if not e.duplicate]
        assert len(originals) == 1
        assert {(e.seq, e.epoch) for e in entries} == {(originals[0].seq, originals[0].epoch)}
        assert len(await store.read("g")) == 1

    @pytest.mark.anyio
    async def test_an_idempotency_key_is_forgotten_after_its_window(
        self, make_store: MakeStore
    ) -> None:
        store = make_store(HistoryLimits(idempotency_window=0.2))
        first = await store.append("g", "text", b"x", idempotency_key="k")
        with anyio.fail_after(5):
            while (entry := await store.append("g", "text", b"x", idempotency_key="k")).duplicate:
                await anyio.sleep(0.05)
        assert entry.seq > first.seq and entry.epoch == first.epoch

    @pytest.mark.anyio
    @pytest.mark.parametrize("key", ["", "\ud800", "k" * 1025, 7])
    async def test_bad_idempotency_keys_are_refused(self, store: HistoryStore, key: Any) -> None:
        with pytest.raises(ConfigurationError, match="idempotency key"):
            await store.append("g", "text", b"x", idempotency_key=key)
        assert (await store.read("g")).last_seq == 0

    # group names

    @pytest.mark.anyio
    @pytest.mark.parametrize("group", ["bad \udc80 name", "g" * 1025, "é" * 513])
    async def test_bad_group_names_are_refused_before_any_change(
        self, store: HistoryStore, group: str
    ) -> None:
        with pytest.raises(ConfigurationError, match="group name"):
            await store.append(group, "text", b"x")
        assert await store.groups() == []
        longest = "g" * 1024
        assert (await store.append(longest, "text", b"x")).seq == 1
        assert await store.groups() == [longest]
