"""Presence as the runtime reports it: who is in a group, in every process.

The layer stores one opaque record per (group, channel) with a time-to-live; this module
turns those records into :class:`PresenceMember` values and builds the record a member
is stored with.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nexios import encoding
from nexios.layers.base import PresenceRecord

__all__ = ["HeartbeatRotation", "PresenceMember", "member_from_record", "presence_info"]


@dataclass(frozen=True, slots=True)
class PresenceMember:
    """A member of a group, in any process: its channel id, metadata and join time."""

    group: str
    channel_id: str
    metadata: dict[str, Any]
    joined: float

    def to_dict(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "metadata": self.metadata, "joined": self.joined}


def presence_info(channel_id: str, metadata_json: bytes, joined: float) -> bytes:
    """The record stored for a member: its id, metadata (already JSON) and join time."""
    return (
        b'{"channel_id":'
        + encoding.dumps(channel_id)
        + b',"metadata":'
        + metadata_json
        + b',"joined":'
        + encoding.dumps(joined)
        + b"}"
    )


def member_from_record(record: PresenceRecord) -> PresenceMember:
    """Decode a layer's record; a record another version wrote reads as empty metadata."""
    try:
        info = encoding.loads(record.info) if record.info else {}
    except encoding.JSONDecodeError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    metadata = info.get("metadata")
    joined = info.get("joined")
    return PresenceMember(
        group=record.group,
        channel_id=record.channel_id,
        metadata=metadata if isinstance(metadata, dict) else {},
        joined=float(joined) if isinstance(joined, int | float) else 0.0,
    )


PresenceKey = tuple[str, str]
"""(group, channel id): one presence entry of this process."""


class HeartbeatRotation:
    """Which of this process's presence entries the next maintenance tick refreshes.

    Every entry is refreshed once per heartbeat, but spread over the ticks in between: a
    tick that refreshed them all at once would hold the event loop (and the broker) for a
    time that grows with the members, and every message in flight would wait for it.
    Entries join the end of the rotation when they are written (so their first refresh
    comes one heartbeat later) and are dropped from it when found gone.
    """

    __slots__ = ("_keys", "_queued")

    def __init__(self) -> None:
        self._keys: deque[PresenceKey] = deque()
        # What _keys holds, so a key is in it once: a member leaving and joining again
        # must not lengthen the rotation (the others' refreshes would come later).
        self._queued: set[PresenceKey] = set()

    def add(self, key: PresenceKey) -> None:
        """``key`` was just written, with a full time-to-live."""
        if key not in self._queued:
            self._queued.add(key)
            self._keys.append(key)

    def clear(self) -> None:
        self._keys.clear()
        self._queued.clear()

    def next_slice(
        self, entries: Mapping[PresenceKey, bytes], share: float
    ) -> list[tuple[str, str, bytes]]:
        """``share`` (0 to 1) of ``entries``, the ones refreshed longest ago, with their info."""
        wanted = math.ceil(len(entries) * min(share, 1.0))
        keys = self._keys
        picked: list[tuple[str, str, bytes]] = []
        # Keys of entries that left since are dropped on the way: look at each key once.
        for _ in range(len(keys)):
            if len(picked) >= wanted:
                break
            key = keys.popleft()
            info = entries.get(key)
            if info is None:
                self._queued.discard(key)
                continue
            keys.append(key)
            picked.append((key[0], key[1], info))
        return picked
