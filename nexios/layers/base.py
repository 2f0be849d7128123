"""The channel layer contract: how processes share groups, broadcasts and presence.

A layer moves bytes between processes; it never sees Python payloads. The hub above it
(:mod:`nexios.websockets.hub`) encodes a payload once, delivers it to this process's
members itself, and hands the same bytes to :meth:`ChannelLayer.publish` so that other
processes deliver it to theirs. A layer therefore only has to:

- publish a message to a group, and call the receiver for messages that *other*
  processes published to groups this process subscribed to;
- subscribe/unsubscribe groups (the hub subscribes on the first local member and
  unsubscribes after the last);
- keep presence entries with a time-to-live, refreshed by the hub's heartbeat, so that
  the members of a dead process disappear on their own;
- say which history store it pairs with by default.

Implementations: :mod:`nexios.layers.memory` (one process, the default) and
:mod:`nexios.layers.redis`.
"""

from __future__ import annotations

import abc
import os
import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexios.history.base import HistoryStore

__all__ = [
    "ChannelLayer",
    "LayerHealth",
    "PresenceRecord",
    "Receiver",
    "WireMessage",
    "decode_wire",
    "encode_wire",
]

Receiver = Callable[[str, "WireMessage"], None]
"""Called (in the event loop) with ``(group, message)`` for each message from elsewhere."""

_HEADER = struct.Struct(">B1sQ16s")
_WIRE_VERSION = 1
_KIND_TO_CODE = {"json": b"j", "text": b"t", "bytes": b"b"}
_CODE_TO_KIND = {code: kind for kind, code in _KIND_TO_CODE.items()}

PROCESS_ID: bytes = uuid.uuid4().bytes
"""Identifies this process's messages on a shared broker (re-drawn after fork)."""


def _renew_process_id() -> None:
    global PROCESS_ID
    PROCESS_ID = uuid.uuid4().bytes


os.register_at_fork(after_in_child=_renew_process_id)


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message as it crosses processes: payload bytes plus kind, seq and origin."""

    kind: str
    data: bytes
    seq: int = 0
    origin: bytes = b""


def encode_wire(message: WireMessage) -> bytes:
    return _HEADER.pack(_WIRE_VERSION, _KIND_TO_CODE[message.kind], message.seq, message.origin) + (
        message.data
    )


def decode_wire(raw: bytes) -> WireMessage:
    """Inverse of :func:`encode_wire`; raises ``ValueError`` on a foreign message."""
    if len(raw) < _HEADER.size:
        raise ValueError("wire message shorter than its header")
    version, code, seq, origin = _HEADER.unpack_from(raw)
    if version != _WIRE_VERSION or code not in _CODE_TO_KIND:
        raise ValueError(f"unknown wire message version {version} / kind {code!r}")
    return WireMessage(_CODE_TO_KIND[code], raw[_HEADER.size :], seq, origin)


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """One member of a group as presence reports it."""

    group: str
    channel_id: str
    info: bytes


@dataclass(slots=True)
class LayerHealth:
    """What :meth:`ChannelLayer.health` reports."""

    url: str
    connected: bool
    subscribed_groups: int = 0
    reconnects: int = 0
    last_error: str | None = None
    details: dict[str, object] = field(default_factory=dict)


class ChannelLayer(abc.ABC):
    """Moves bytes between processes. See the module docstring for the contract."""

    url: str

    @abc.abstractmethod
    async def start(self, receiver: Receiver) -> None:
        """Connect; from now on call ``receiver`` for messages published elsewhere."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Unsubscribe everything and disconnect. Idempotent."""

    @abc.abstractmethod
    async def subscribe(self, group: str) -> None:
        """Start receiving the group's messages published by other processes."""

    @abc.abstractmethod
    async def unsubscribe(self, group: str) -> None:
        """Stop receiving the group's messages."""

    @abc.abstractmethod
    async def publish(self, group: str, message: WireMessage) -> int:
        """Send to the group's members in other processes; return how many processes
        (subscriber connections) it reached, 0 when no other process has members.

        Raises :class:`~nexios.exceptions.BackendUnavailableError` when the broker
        cannot be reached — never hangs longer than the layer's timeout.
        """

    @abc.abstractmethod
    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        """Record ``channel_id`` as present in ``group`` for ``ttl`` seconds."""

    @abc.abstractmethod
    async def presence_remove(self, group: str, channel_id: str) -> bool:
        """Remove a presence entry. True when this call removed it."""

    @abc.abstractmethod
    async def presence_list(self, group: str) -> list[PresenceRecord]:
        """Live (unexpired) members of ``group`` across every process."""

    @abc.abstractmethod
    async def presence_refresh(self, members: Iterable[tuple[str, str]], ttl: float) -> None:
        """Extend the TTL of this process's ``(group, channel_id)`` entries."""

    @abc.abstractmethod
    async def presence_reap(self) -> list[PresenceRecord]:
        """Remove expired entries (a crashed process's members) and return them.

        Each expired entry is returned by exactly one caller across all processes, so
        a "leave" event is emitted once.
        """

    @abc.abstractmethod
    def default_history(self) -> HistoryStore:
        """The history store used when ``NEXIOS_HISTORY_URL`` is not set."""

    @abc.abstractmethod
    def health(self) -> LayerHealth:
        """Connection state, subscriptions and reconnect count."""
