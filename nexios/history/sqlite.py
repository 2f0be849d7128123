"""History in a local SQLite file (``sqlite:///path.db``): survives a restart.

Several processes on one machine may share the file: appends take the write lock
(``BEGIN IMMEDIATE``) for the counter bump, the insert and the pruning, and wait up to
``busy_timeout`` seconds for it. WAL mode lets reads run while another process writes.
The blocking sqlite3 calls run in one worker thread per store, off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from nexios.exceptions import HistoryStoreError
from nexios.history.base import (
    KINDS,
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_read_args,
    is_complete,
)

__all__ = ["SqliteHistoryStore"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        created REAL NOT NULL,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (grp, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS entries_created ON entries (created)",
    "CREATE TABLE IF NOT EXISTS counters (grp TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
)

_Row = tuple[int, float, str, bytes]


class SqliteHistoryStore(HistoryStore):
    """History in the SQLite file at ``path`` (its directory is created if missing).

    The file is opened in the constructor, so a bad path fails at configuration time
    with :class:`~nexios.exceptions.HistoryStoreError`. Bounds as in :class:`HistoryLimits`;
    an append prunes its group by count and every group by age.
    """

    def __init__(
        self, path: str, limits: HistoryLimits | None = None, *, busy_timeout: float = 5.0
    ) -> None:
        self.path = path
        self.limits = limits or HistoryLimits()
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._guard(lambda: self._open(busy_timeout))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexios-history")

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for writes).
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryStoreError(
                f"sqlite history store {self.path!r} failed: {exc}. Check that the file and "
                "its directory are writable and not corrupted, or set NEXIOS_HISTORY_URL "
                "to another sqlite:/// path."
            ) from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise HistoryStoreError(f"sqlite history store {self.path!r} is closed")

        def call() -> T:
            with self._lock:
                return self._guard(lambda: fn(self._conn))

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def append(self, group: str, kind: PayloadKind, data: bytes) -> HistoryEntry:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"history data must be bytes, got {type(data).__name__}")
        max_entries, max_age = self.limits.max_entries, self.limits.max_age

        def append(conn: sqlite3.Connection) -> HistoryEntry:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO counters (grp, last_seq) VALUES (?, 1) "
                    "ON CONFLICT (grp) DO UPDATE SET last_seq = last_seq + 1",
                    (group,),
                )
                (seq,) = conn.execute(
                    "SELECT last_seq FROM counters WHERE grp = ?", (group,)
                ).fetchone()
                # Taken under the write lock so `created` grows with `seq` across processes.
                now = time.time()
                conn.execute(
                    "INSERT INTO entries (grp, seq, created, kind, data) VALUES (?, ?, ?, ?, ?)",
                    (group, seq, now, kind, data),
                )
                conn.execute(
                    "DELETE FROM entries WHERE grp = ? AND seq <= ?", (group, seq - max_entries)
                )
                if max_age is not None:
                    conn.execute("DELETE FROM entries WHERE created < ?", (now - max_age,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return HistoryEntry(group, seq, now, kind, data)

        return await self._run(append)

    async def read(
        self, group: str, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        check_read_args(since, limit)
        cutoff = -1.0 if self.limits.max_age is None else time.time() - self.limits.max_age

        def read(conn: sqlite3.Connection) -> HistoryPage:
            conn.execute("BEGIN")  # one snapshot for the counter and the rows
            try:
                row = conn.execute(
                    "SELECT last_seq FROM counters WHERE grp = ?", (group,)
                ).fetchone()
                last_seq = 0 if row is None else int(row[0])
                (first_seq,) = conn.execute(
                    "SELECT MIN(seq) FROM entries WHERE grp = ? AND created >= ?",
                    (group, cutoff),
                ).fetchone()
                rows = self._select(conn, group, cutoff, since, limit)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            entries = [
                HistoryEntry(group, seq, created, kind, data) for seq, created, kind, data in rows
            ]
            return HistoryPage(
                entries,
                complete=is_complete(since, first_seq, last_seq),
                first_seq=first_seq,
                last_seq=last_seq,
            )

        return await self._run(read)

    @staticmethod
    def _select(
        conn: sqlite3.Connection, group: str, cutoff: float, since: int | None, limit: int | None
    ) -> list[_Row]:
        sql_limit = -1 if limit is None else limit  # LIMIT -1 means no limit in SQLite
        columns = "SELECT seq, created, kind, data FROM entries WHERE grp = ? AND created >= ?"
        if since is None:
            newest = conn.execute(
                f"{columns} ORDER BY seq DESC LIMIT ?", (group, cutoff, sql_limit)
            ).fetchall()
            return newest[::-1]
        return conn.execute(
            f"{columns} AND seq > ? ORDER BY seq LIMIT ?", (group, cutoff, since, sql_limit)
        ).fetchall()

    async def groups(self) -> list[str]:
        cutoff = -1.0 if self.limits.max_age is None else time.time() - self.limits.max_age

        def groups(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT grp FROM entries WHERE created >= ? ORDER BY grp", (cutoff,)
            ).fetchall()
            return [str(grp) for (grp,) in rows]

        return await self._run(groups)

    async def clear(self, group: str | None = None) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            if group is None:
                conn.execute("DELETE FROM entries")
            else:
                conn.execute("DELETE FROM entries WHERE grp = ?", (group,))

        await self._run(clear)

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            with self._lock:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)
