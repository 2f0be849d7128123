"""Presence as the runtime reports it: who is in a group, in every process.

The layer stores one opaque record per (group, channel) with a time-to-live; this module
turns those records into :class:`PresenceMember` values and builds the record a member
is stored with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexios import encoding
from nexios.layers.base import PresenceRecord

__all__ = ["PresenceMember", "member_from_record", "presence_info"]


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
