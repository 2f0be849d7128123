"""The in-process history store: one deque per group, gone when the process exits."""

from __future__ import annotations

import time
from collections import deque

from nexios.history.base import (
    KINDS,
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_read_args,
    page_for,
)

__all__ = ["MemoryHistoryStore"]


class MemoryHistoryStore(HistoryStore):
    """History kept in this process. Append is O(1); reads copy the group (O(n)).

    Bounds: ``limits.max_entries`` per group and ``limits.max_age`` seconds; the oldest
    entries beyond either are dropped one by one.
    """

    def __init__(self, limits: HistoryLimits | None = None) -> None:
        self.limits = limits or HistoryLimits()
        self._entries: dict[str, deque[HistoryEntry]] = {}
        # Kept apart from the entries so numbering survives pruning and clear().
        self._last_seq: dict[str, int] = {}

    async def append(self, group: str, kind: PayloadKind, data: bytes) -> HistoryEntry:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"history data must be bytes, got {type(data).__name__}")
        seq = self._last_seq.get(group, 0) + 1
        self._last_seq[group] = seq
        now = time.time()
        entry = HistoryEntry(group, seq, now, kind, data)
        entries = self._entries.setdefault(group, deque())
        entries.append(entry)
        while len(entries) > self.limits.max_entries:
            entries.popleft()
        self._prune_age(group, now)
        return entry

    async def read(
        self, group: str, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        check_read_args(since, limit)
        self._prune_age(group, time.time())
        entries = list(self._entries.get(group, ()))
        return page_for(entries, since=since, limit=limit, last_seq=self._last_seq.get(group, 0))

    async def groups(self) -> list[str]:
        now = time.time()
        for group in list(self._entries):
            self._prune_age(group, now)
        return sorted(self._entries)

    async def clear(self, group: str | None = None) -> None:
        if group is None:
            self._entries.clear()
        else:
            self._entries.pop(group, None)

    def _prune_age(self, group: str, now: float) -> None:
        entries = self._entries.get(group)
        if entries is None:
            return
        if self.limits.max_age is not None:
            cutoff = now - self.limits.max_age
            while entries and entries[0].created < cutoff:
                entries.popleft()
        if not entries:
            del self._entries[group]
