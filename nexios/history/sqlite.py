"""History in a local SQLite file (``sqlite:///path.db``): survives a restart.

Several processes on one machine may share the file: appends take the write lock
(``BEGIN IMMEDIATE``) for the idempotency check, the counter bump, the insert and the
pruning, and wait up to ``busy_timeout`` seconds for it. WAL mode lets reads run while
another process writes. The blocking sqlite3 calls run in one worker thread per store,
off the event loop.

Tables: ``entries``; ``counters`` (per group: ``last_seq``, ``epoch``, ``touched`` =
time of the last append); ``idempotency`` (per group and key: the original entry, and
when to forget it). Each group's epoch lives in the file, so a new or replaced file
means new epochs. Files written by an earlier version gain the new columns on open, and
each existing group an epoch.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from nexios.exceptions import HistoryStoreError
from nexios.history.base import (
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_append_args,
    check_group_name,
    check_read_args,
    epoch_matches,
    is_complete,
    new_epoch,
    stamped,
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
    """CREATE TABLE IF NOT EXISTS counters (
        grp TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        epoch TEXT,
        touched REAL
    )""",
    """CREATE TABLE IF NOT EXISTS idempotency (
        grp TEXT NOT NULL,
        key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        epoch TEXT NOT NULL,
        created REAL NOT NULL,
        forget_at REAL NOT NULL,
        PRIMARY KEY (grp, key)
    )""",
    "CREATE INDEX IF NOT EXISTS idempotency_forget_at ON idempotency (forget_at)",
)

# Files from before epochs: add the columns, then give every group an epoch.
_COUNTER_COLUMNS = {"epoch": "TEXT", "touched": "REAL"}
_MIGRATE = (
    "UPDATE counters SET epoch = lower(hex(randomblob(8))) WHERE epoch IS NULL",
    "UPDATE counters SET touched = ? WHERE touched IS NULL",
    "CREATE INDEX IF NOT EXISTS counters_touched ON counters (touched)",
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
        self._busy_timeout = busy_timeout
        self._file_id: tuple[int, int] | None = None
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
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._file_id = self._current_file_id()
        return conn

    def _current_file_id(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def _reopen_if_replaced(self) -> None:
        """Follow the path: a file deleted or replaced under us means a new history (and
        new epochs), not writes into a file nobody else will ever read."""
        if self.path == ":memory:" or self._current_file_id() == self._file_id:
            return
        old, self._conn = self._conn, self._open(self._busy_timeout)
        old.close()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(counters)")}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name, sql_type in _COUNTER_COLUMNS.items():
                if name not in columns:
                    conn.execute(f"ALTER TABLE counters ADD COLUMN {name} {sql_type}")
            for statement in _MIGRATE:
                conn.execute(statement, (time.time(),) if "?" in statement else ())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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
                self._guard(self._reopen_if_replaced)
                return self._guard(lambda: fn(self._conn))

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def append(
        self,
        group: str,
        kind: PayloadKind,
        data: bytes,
        *,
        idempotency_key: str | None = None,
        seq_field: str | None = None,
    ) -> HistoryEntry:
        check_group_name(group)
        check_append_args(kind, data, idempotency_key, seq_field)
        limits = self.limits
        fresh_epoch = new_epoch()

        def append(conn: sqlite3.Connection) -> HistoryEntry:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Taken under the write lock so `created` grows with `seq` across processes.
                now = time.time()
                self._free_idle(conn, now)
                if idempotency_key is not None:
                    original = self._seen(conn, group, idempotency_key)
                    if original is not None:
                        conn.execute("COMMIT")
                        seq, epoch, created = original
                        return HistoryEntry(
                            group, seq, created, kind, data, epoch=epoch, duplicate=True
                        )
                seq, epoch = self._next_seq(conn, group, fresh_epoch, now)
                saved = stamped(data, seq_field, seq)
                conn.execute(
                    "INSERT INTO entries (grp, seq, created, kind, data) VALUES (?, ?, ?, ?, ?)",
                    (group, seq, now, kind, saved),
                )
                conn.execute(
                    "DELETE FROM entries WHERE grp = ? AND seq <= ?",
                    (group, seq - limits.max_entries),
                )
                if idempotency_key is not None:
                    conn.execute(
                        "INSERT INTO idempotency (grp, key, seq, epoch, created, forget_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (group, idempotency_key, seq, epoch, now, now + limits.idempotency_window),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return HistoryEntry(group, seq, now, kind, saved, epoch=epoch)

        return await self._run(append)

    def _free_idle(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop aged-out entries, groups idle for ``max_age`` and forgotten keys."""
        conn.execute("DELETE FROM idempotency WHERE forget_at <= ?", (now,))
        if self.limits.max_age is not None:
            cutoff = now - self.limits.max_age
            conn.execute("DELETE FROM entries WHERE created < ?", (cutoff,))
            conn.execute("DELETE FROM counters WHERE touched < ?", (cutoff,))

    @staticmethod
    def _seen(conn: sqlite3.Connection, group: str, key: str) -> tuple[int, str, float] | None:
        row = conn.execute(
            "SELECT seq, epoch, created FROM idempotency WHERE grp = ? AND key = ?", (group, key)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), float(row[2]))

    @staticmethod
    def _next_seq(
        conn: sqlite3.Connection, group: str, fresh_epoch: str, now: float
    ) -> tuple[int, str]:
        conn.execute(
            "INSERT INTO counters (grp, last_seq, epoch, touched) VALUES (?, 1, ?, ?) "
            "ON CONFLICT (grp) DO UPDATE SET last_seq = last_seq + 1, touched = excluded.touched",
            (group, fresh_epoch, now),
        )
        seq, epoch = conn.execute(
            "SELECT last_seq, epoch FROM counters WHERE grp = ?", (group,)
        ).fetchone()
        if seq == 1:
            # A new numbering: entries still filed under the group belong to a lost one.
            conn.execute("DELETE FROM entries WHERE grp = ?", (group,))
        return int(seq), str(epoch)

    async def read(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> HistoryPage:
        check_read_args(since, limit, epoch)
        cutoff = -1.0 if self.limits.max_age is None else time.time() - self.limits.max_age

        def read(conn: sqlite3.Connection) -> HistoryPage:
            conn.execute("BEGIN")  # one snapshot for the counter and the rows
            try:
                row = conn.execute(
                    "SELECT last_seq, epoch FROM counters WHERE grp = ? AND touched >= ?",
                    (group, cutoff),
                ).fetchone()
                last_seq, current = (0, "") if row is None else (int(row[0]), str(row[1]))
                first_seq = None
                rows: list[_Row] = []
                if row is not None:
                    (first_seq,) = conn.execute(
                        "SELECT MIN(seq) FROM entries WHERE grp = ? AND created >= ?",
                        (group, cutoff),
                    ).fetchone()
                    if limit != 0 and epoch_matches(epoch, since, current):
                        rows = self._select(conn, group, cutoff, since, limit)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            entries = [
                HistoryEntry(group, seq, created, kind, data, epoch=current)
                for seq, created, kind, data in rows
            ]
            return HistoryPage(
                entries,
                complete=is_complete(since, first_seq, last_seq, epoch=current, client_epoch=epoch),
                first_seq=first_seq,
                last_seq=last_seq,
                epoch=current,
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
