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
