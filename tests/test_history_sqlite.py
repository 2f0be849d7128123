"""The sqlite history store: the conformance suite, restarts and shared files."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from nexios.exceptions import HistoryStoreError
from nexios.history.base import HistoryLimits
from nexios.history.sqlite import SqliteHistoryStore
from tests.conformance.history import HistoryStoreConformance, MakeStore

REPO = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from nexios.history.sqlite import SqliteHistoryStore

    async def main(path: str, group: str, count: int) -> None:
        store = SqliteHistoryStore(path)
        await asyncio.gather(
            *(store.append(group, "json", b'{"n": %d}' % i) for i in range(count))
        )
        if group == "room":
            await store.append("cleared", "text", b"x")
            await store.append("cleared", "text", b"y")
            await store.clear("cleared")
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def writer(path: Path, group: str, count: int) -> list[str]:
    return [sys.executable, "-c", WRITER, str(path), group, str(count)]


class TestSqliteHistory(HistoryStoreConformance):
    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[MakeStore]:
        stores: list[SqliteHistoryStore] = []

        def make(limits: HistoryLimits | None) -> SqliteHistoryStore:
            store = SqliteHistoryStore(str(tmp_path / f"history-{len(stores)}.db"), limits)
            stores.append(store)
            return store

        yield make
        for store in stores:
            await store.close()


@pytest.mark.anyio
async def test_survives_a_process_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    subprocess.run(writer(path, "room", 3), check=True, cwd=REPO, timeout=60)

    store = SqliteHistoryStore(str(path))
    try:
        page = await store.read("room")
        assert [e.seq for e in page] == [1, 2, 3]
        assert sorted(e.payload["n"] for e in page) == [0, 1, 2]
        assert (await store.append("room", "text", b"after restart")).seq == 4
        # the counter of a cleared group survives too
        assert (await store.read("cleared")).last_seq == 2
        assert (await store.append("cleared", "text", b"z")).seq == 3
    finally:
        await store.close()


@pytest.mark.anyio
async def test_several_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writers = [subprocess.Popen(writer(path, "shared", 50), cwd=REPO) for _ in range(3)]
    assert [p.wait(timeout=60) for p in writers] == [0, 0, 0]
    store = SqliteHistoryStore(str(path))
    try:
        page = await store.read("shared")
        assert [e.seq for e in page] == list(range(1, 151))
        assert sorted(e.payload["n"] for e in page) == sorted(list(range(50)) * 3)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_two_connections_append_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    one, two = SqliteHistoryStore(path), SqliteHistoryStore(path)
    try:
        entries = await asyncio.gather(
            *(store.append("g", "text", b"m") for _ in range(100) for store in (one, two))
        )
        assert sorted(e.seq for e in entries) == list(range(1, 201))
        assert [e.seq for e in await one.read("g")] == list(range(1, 201))
        assert (await two.read("g")).last_seq == 200
    finally:
        await one.close()
        await two.close()


@pytest.mark.anyio
async def test_creates_parent_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "history.db"
    await SqliteHistoryStore(str(path)).close()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"entries", "counters"} <= tables


def test_bad_path_raises_history_store_error() -> None:
    path = "/proc/nexios-history-test/history.db"
    with pytest.raises(HistoryStoreError, match=re.escape(path)):
        SqliteHistoryStore(path)


def test_directory_as_file_raises_history_store_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryStoreError, match=re.escape(str(tmp_path))):
        SqliteHistoryStore(str(tmp_path))


def test_corrupt_file_raises_history_store_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryStoreError, match=re.escape("not-a-database.db")) as info:
        SqliteHistoryStore(str(path))
    assert isinstance(info.value.__cause__, sqlite3.Error)


@pytest.mark.anyio
async def test_closed_store_raises(tmp_path: Path) -> None:
    store = SqliteHistoryStore(str(tmp_path / "history.db"))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(HistoryStoreError, match="closed"):
        await store.append("g", "text", b"late")
    with pytest.raises(HistoryStoreError, match="closed"):
        await store.read("g")


@pytest.mark.anyio
async def test_the_epoch_lives_in_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    store = SqliteHistoryStore(path)
    first = await store.append("room", "text", b"a")
    await store.close()
    reopened = SqliteHistoryStore(path)
    try:
        again = await reopened.append("room", "text", b"b")
        assert (again.seq, again.epoch) == (2, first.epoch)
    finally:
        await reopened.close()


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_deleted_or_replaced_file_means_new_epochs(tmp_path: Path, how: str) -> None:
    path = tmp_path / "history.db"
    store = SqliteHistoryStore(str(path))
    try:
        first = await store.append("room", "text", b"a")
        await store.append("room", "text", b"b")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            other = SqliteHistoryStore(str(path))
            await other.append("elsewhere", "text", b"x")
            await other.close()
        page = await store.read("room", since=2, epoch=first.epoch)
        assert page == [] and not page.complete and page.last_seq == 0
        new = await store.append("room", "text", b"c")
        assert new.seq == 1 and new.epoch != first.epoch
        assert path.exists()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_file_from_before_epochs_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE entries (grp TEXT NOT NULL, seq INTEGER NOT NULL, created REAL NOT "
            "NULL, kind TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (grp, seq))"
        )
        conn.execute("CREATE TABLE counters (grp TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)")
        conn.execute("INSERT INTO counters VALUES ('a', 7), ('b', 2)")
        conn.execute("INSERT INTO entries VALUES ('a', 7, strftime('%s','now'), 'text', 'x')")
    store = SqliteHistoryStore(str(path))
    try:
        a = await store.read("a")
        assert [e.seq for e in a] == [7] and a.last_seq == 7
        assert re.fullmatch(r"[0-9a-f]{16}", a.epoch)
        assert (await store.read("b", limit=0)).epoch not in ("", a.epoch)
        assert (await store.append("a", "text", b"y")).seq == 8
    finally:
        await store.close()


@pytest.mark.anyio
async def test_idle_groups_are_freed_with_their_counters(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = SqliteHistoryStore(str(path), HistoryLimits(max_age=0.2, idempotency_window=0.2))
    try:
        for i in range(50):
            await store.append(f"short-lived-{i}", "text", b"x", idempotency_key="k")

        def groups_in(table: str) -> int:
            with sqlite3.connect(path) as conn:
                (count,) = conn.execute(f"SELECT COUNT(DISTINCT grp) FROM {table}").fetchone()
                return int(count)

        def state() -> list[int]:
            return [groups_in(table) for table in ("entries", "counters", "idempotency")]

        assert state() == [50, 50, 50]
        with anyio.fail_after(5):
            while state() != [1, 1, 0]:  # "busy" only
                await anyio.sleep(0.05)
                await store.append("busy", "text", b"y")
    finally:
        await store.close()
