"""The in-process channel layer (``memory://``), the default.

Everything lives in this process: there is no other process to publish to, so
``publish`` only counts, and there is no link to lose (``on_link`` is never called).
Presence is a dict with expiry times plus a heap of expiries, so that it behaves like
the shared layers (TTL, reaping in time proportional to what expired) and the same
conformance tests hold for it.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence

from nexios.history.base import HistoryLimits, HistoryStore, check_group_name, is_group_name
from nexios.history.memory import MemoryHistoryStore
from nexios.layers.base import (
    ChannelLayer,
    LayerHealth,
    LinkListener,
    PresenceRecord,
    Receiver,
    WireMessage,
)

__all__ = ["MemoryLayer"]


class MemoryLayer(ChannelLayer):
    """Groups, presence and (by default) history inside one process."""

    def __init__(self, url: str = "memory://", *, history_limits: HistoryLimits | None = None):
        self.url = url
        self._history_limits = history_limits or HistoryLimits()
        self.idempotency_window = self._history_limits.idempotency_window
        self._subscribed: set[str] = set()
        # group -> channel_id -> (expires_at, info)
        self._presence: dict[str, dict[str, tuple[float, bytes]]] = {}
        # (expires_at, group, channel_id), possibly stale: the dict has the truth
        self._expiries: list[tuple[float, str, str]] = []
        self._live = 0
        self._published = 0
        self._started = False

    async def start(self, receiver: Receiver, *, on_link: LinkListener | None = None) -> None:
        self._started = True

    async def stop(self) -> None:
        self._subscribed.clear()
        self._started = False

    async def subscribe(self, group: str) -> bool:
        self._subscribed.add(check_group_name(group))
        return True

    async def unsubscribe(self, group: str) -> None:
        self._subscribed.discard(group)

    async def publish(self, group: str, message: WireMessage) -> int:
        check_group_name(group)
        self._published += 1
        return 0

    # -- presence ------------------------------------------------------------------------

    def _set(self, group: str, channel_id: str, info: bytes, expires_at: float) -> None:
        members = self._presence.setdefault(group, {})
        self._live += channel_id not in members
        members[channel_id] = (expires_at, info)
        heapq.heappush(self._expiries, (expires_at, group, channel_id))

    def _delete(self, members: dict[str, tuple[float, bytes]], group: str, channel_id: str) -> None:
        del members[channel_id]
        self._live -= 1
        if not members:
            del self._presence[group]

    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        check_group_name(group)
        self._set(group, channel_id, info, time.monotonic() + ttl)
        self._compact()

    async def presence_remove(self, group: str, channel_id: str) -> bool:
        members = self._presence.get(group)
        if not members or channel_id not in members:
            return False
        self._delete(members, group, channel_id)
        return True

    async def presence_list(self, group: str) -> list[PresenceRecord]:
        check_group_name(group)
        now = time.monotonic()
        members = self._presence.get(group, {})
        return [
            PresenceRecord(group, channel_id, info)
            for channel_id, (expires_at, info) in members.items()
            if expires_at > now
        ]

    async def presence_refresh(self, members: Iterable[tuple[str, str]], ttl: float) -> None:
        expires_at = time.monotonic() + ttl
        for group, channel_id in members:
            entry = self._presence.get(group, {}).get(channel_id)
            if entry is not None:
                self._set(group, channel_id, entry[1], expires_at)
        self._compact()

    async def presence_heartbeat(
        self, entries: Sequence[tuple[str, str, bytes]], ttl: float
    ) -> list[PresenceRecord]:
        expires_at = time.monotonic() + ttl
        added = []
        for group, channel_id, info in entries:
            if channel_id not in self._presence.get(group, {}):
                if not is_group_name(group):
                    continue  # never added, so nothing to keep alive
                added.append(PresenceRecord(group, channel_id, info))
            self._set(group, channel_id, info, expires_at)
        self._compact()
        return added

    async def presence_reap(self) -> list[PresenceRecord]:
        now = time.monotonic()
        reaped: list[PresenceRecord] = []
        while self._expiries and self._expiries[0][0] <= now:
            _, group, channel_id = heapq.heappop(self._expiries)
            members = self._presence.get(group)
            entry = None if members is None else members.get(channel_id)
            if members is None or entry is None or entry[0] > now:
                continue  # removed, or refreshed since this expiry was queued
            self._delete(members, group, channel_id)
            reaped.append(PresenceRecord(group, channel_id, entry[1]))
        return reaped

    def _compact(self) -> None:
        """Keep the heap within a few times the live entries however often they refresh."""
        if len(self._expiries) <= 4 * self._live + 1024:
            return
        self._expiries = [
            (expires_at, group, channel_id)
            for group, members in self._presence.items()
            for channel_id, (expires_at, _) in members.items()
        ]
        heapq.heapify(self._expiries)

    # -- the rest ------------------------------------------------------------------------

    def default_history(self) -> HistoryStore:
        return MemoryHistoryStore(self._history_limits)

    def health(self) -> LayerHealth:
        return LayerHealth(
            url=self.url,
            connected=self._started,
            subscribed_groups=len(self._subscribed),
            details={"published": self._published},
        )
