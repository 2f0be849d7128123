"""The in-process history store: one deque per group, gone when the process exits."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from nexios.history.base import (
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_append_args,
    check_group_name,
    check_read_args,
    new_epoch,
    page_for,
    stamped,
)

__all__ = ["MAX_IDEMPOTENCY_KEYS", "MemoryHistoryStore"]

MAX_IDEMPOTENCY_KEYS = 10_000
"""Idempotency keys remembered per group; beyond it the oldest is forgotten early."""


class _Group:
    """A group's numbering (counter + epoch), its kept entries and recent keys."""

    __slots__ = ("entries", "epoch", "keys", "last_seq", "touched")

    def __init__(self, now: float) -> None:
        self.entries: deque[HistoryEntry] = deque()
        self.epoch = new_epoch()
        self.last_seq = 0
        self.touched = now
        # idempotency key -> (entry, forget at), oldest first
        self.keys: OrderedDict[str, tuple[HistoryEntry, float]] = OrderedDict()


class MemoryHistoryStore(HistoryStore):
    """History kept in this process. Append is O(1); reads copy the group (O(n)).

    Bounds: ``limits.max_entries`` per group and ``limits.max_age`` seconds; the oldest
    entries beyond either are dropped one by one. A group without an append for
    ``max_age`` is freed whole (entries, counter, epoch), and at most
    ``limits.max_groups`` groups are held: appending to one more frees the least
    recently appended group. Both happen as the store is used, in O(1) per call.
    """

    def __init__(self, limits: HistoryLimits | None = None) -> None:
        self.limits = limits or HistoryLimits()
        # Least recently appended first, so freeing idle groups pops from the front.
        self._groups: OrderedDict[str, _Group] = OrderedDict()

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
        now = time.time()
        self._free_idle(now)
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _Group(now)
            while len(self._groups) > self.limits.max_groups:
                self._groups.popitem(last=False)
        elif idempotency_key is not None:
            original = self._seen(state, idempotency_key, now)
            if original is not None:
                return original
        state.last_seq += 1
        data = stamped(data, seq_field, state.last_seq)
        entry = HistoryEntry(group, state.last_seq, now, kind, data, epoch=state.epoch)
        state.entries.append(entry)
        while len(state.entries) > self.limits.max_entries:
            state.entries.popleft()
        self._prune_age(state, now)
        state.touched = now
        self._groups.move_to_end(group)
        if idempotency_key is not None:
            state.keys[idempotency_key] = (entry, now + self.limits.idempotency_window)
            if len(state.keys) > MAX_IDEMPOTENCY_KEYS:
                state.keys.popitem(last=False)
        return entry

    @staticmethod
    def _seen(state: _Group, key: str, now: float) -> HistoryEntry | None:
        while state.keys:
            _, (_, forget_at) = next(iter(state.keys.items()))
            if forget_at > now:
                break
            state.keys.popitem(last=False)
        found = state.keys.get(key)
        if found is None:
            return None
        original = found[0]
        return HistoryEntry(
            original.group,
            original.seq,
            original.created,
            original.kind,
            original.data,
            epoch=original.epoch,
            duplicate=True,
        )

    async def read(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> HistoryPage:
        check_read_args(since, limit, epoch)
        now = time.time()
        self._free_idle(now)
        state = self._groups.get(group)
        if state is None:
            return page_for((), since=since, limit=limit, last_seq=0, client_epoch=epoch)
        self._prune_age(state, now)
        return page_for(
            state.entries if limit == 0 else list(state.entries),
            since=since,
            limit=limit,
            last_seq=state.last_seq,
            epoch=state.epoch,
            client_epoch=epoch,
        )

    async def groups(self) -> list[str]:
        now = time.time()
        self._free_idle(now)
        kept = []
        for name, state in self._groups.items():
            self._prune_age(state, now)
            if state.entries:
                kept.append(name)
        return sorted(kept)

    async def clear(self, group: str | None = None) -> None:
        states = self._groups.values() if group is None else [self._groups.get(group)]
        for state in states:
            if state is not None:
                state.entries.clear()

    def _free_idle(self, now: float) -> None:
        """Free the groups without an append for ``max_age``: their entries aged out."""
        if self.limits.max_age is None:
            return
        cutoff = now - self.limits.max_age
        while self._groups:
            oldest = next(iter(self._groups.values()))
            if oldest.touched >= cutoff:
                break
            self._groups.popitem(last=False)

    def _prune_age(self, state: _Group, now: float) -> None:
        if self.limits.max_age is None:
            return
        cutoff = now - self.limits.max_age
        entries = state.entries
        while entries and entries[0].created < cutoff:
            entries.popleft()
