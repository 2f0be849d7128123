"""The in-process channel layer (``memory://``), the default.

Everything lives in this process: there is no other process to publish to, so
``publish`` only counts; presence is a dict with expiry times so that it behaves like
the shared layers (TTL, reaping) and the same conformance tests hold for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from nexios.history.base import HistoryLimits, HistoryStore
from nexios.layers.base import ChannelLayer, LayerHealth, PresenceRecord, Receiver, WireMessage

__all__ = ["MemoryLayer"]


class MemoryLayer(ChannelLayer):
    """Groups, presence and (by default) history inside one process."""

    def __init__(self, url: str = "memory://", *, history_limits: HistoryLimits | None = None):
        self.url = url
        self._history_limits = history_limits or HistoryLimits()
        self._subscribed: set[str] = set()
        # group -> channel_id -> (expires_at, info)
        self._presence: dict[str, dict[str, tuple[float, bytes]]] = {}
        self._published = 0
        self._started = False

    async def start(self, receiver: Receiver) -> None:
        self._started = True

    async def stop(self) -> None:
        self._subscribed.clear()
        self._started = False

    async def subscribe(self, group: str) -> None:
        self._subscribed.add(group)

    async def unsubscribe(self, group: str) -> None:
        self._subscribed.discard(group)

    async def publish(self, group: str, message: WireMessage) -> int:
        self._published += 1
        return 0

    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        self._presence.setdefault(group, {})[channel_id] = (time.monotonic() + ttl, info)

    async def presence_remove(self, group: str, channel_id: str) -> bool:
        members = self._presence.get(group)
        if not members or members.pop(channel_id, None) is None:
            return False
        if not members:
            del self._presence[group]
        return True

    async def presence_list(self, group: str) -> list[PresenceRecord]:
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
                self._presence[group][channel_id] = (expires_at, entry[1])

    async def presence_reap(self) -> list[PresenceRecord]:
        now = time.monotonic()
        reaped: list[PresenceRecord] = []
        for group in list(self._presence):
            members = self._presence[group]
            for channel_id, (expires_at, info) in list(members.items()):
                if expires_at <= now:
                    del members[channel_id]
                    reaped.append(PresenceRecord(group, channel_id, info))
            if not members:
                del self._presence[group]
        return reaped

    def default_history(self) -> HistoryStore:
        from nexios.history.memory import MemoryHistoryStore

        return MemoryHistoryStore(self._history_limits)

    def health(self) -> LayerHealth:
        return LayerHealth(
            url=self.url,
            connected=self._started,
            subscribed_groups=len(self._subscribed),
            details={"published": self._published},
        )
