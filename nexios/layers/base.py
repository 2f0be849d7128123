"""The channel layer contract: how processes share groups, broadcasts and presence.

A layer moves bytes between processes; it never sees Python payloads. The runtime above
it encodes a payload once, delivers it to this process's members itself, and hands the
same bytes to the layer so that other processes deliver it to theirs. A layer:

- publishes a message to a group (:meth:`~ChannelLayer.publish`), saves and publishes
  it (:meth:`~ChannelLayer.publish_saved`: seq order is publish order when the layer
  and the history store share a server), or publishes it once per idempotency key
  (:meth:`~ChannelLayer.publish_once`);
- calls the receiver for messages that *other* processes published to groups this
  process subscribed to: synchronously, from the task that reads the broker connection
  carrying the group (one for a single Redis, one per primary on a Redis Cluster), in
  the order the broker delivers them (so a group's messages arrive in publish order); a
  receiver must not block, and an exception it raises is logged, never stops delivery;
- subscribes/unsubscribes groups (the runtime subscribes on the first local member and
  unsubscribes after the last), and tells ``on_link`` when its link to the broker went
  down and when it is back with every group subscribed again: messages published in
  between were not received, and the runtime fills the gap from history;
- keeps presence entries with a time-to-live, refreshed (and re-added when lost) by the
  runtime's heartbeat, so that the members of a dead process disappear on their own;
- says which history store it pairs with by default.

Group names are checked (:func:`~nexios.history.base.check_group_name`) before any
state changes: a name that is not valid UTF-8 or is longer than 1024 bytes raises
:class:`~nexios.exceptions.ConfigurationError` and leaves no trace.

Implementations: :mod:`nexios.layers.memory` (one process, the default),
:mod:`nexios.layers.redis` (one Redis server) and :mod:`nexios.layers.redis_cluster`.
"""

from __future__ import annotations

import abc
import os
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from nexios.history.base import (
    HistoryEntry,
    HistoryStore,
    PayloadKind,
    check_group_name,
    check_idempotency_key,
)

__all__ = [
    "ChannelLayer",
    "LayerHealth",
    "LinkListener",
    "PresenceRecord",
    "PublishResult",
    "Receiver",
    "WireMessage",
    "check_group_name",
    "decode_wire",
    "encode_wire",
    "stamp_seq",
    "wire_header",
]

Receiver = Callable[[str, "WireMessage"], None]
"""Called (in the event loop) with ``(group, message)`` for each message from elsewhere."""

LinkListener = Callable[[bool], None]
"""Called with False when the link to the broker went down, True when it is back and
every group is subscribed again (never for the first connection made by ``start``)."""

# Version 1: version, kind, seq (u64), origin (16 bytes), then the data.
_HEADER_V1 = struct.Struct(">B1sQ16s")
# Version 2: version, kind, origin, seq_field length (0xFFFF: none), the seq_field, then
# seq (u64), epoch length (u8), the epoch, the data. Everything before the seq is known
# before the message is numbered, so a Lua script can number and publish in one step.
_HEADER_V2 = struct.Struct(">B1s16sH")
_SEQ = struct.Struct(">Q")
_NO_SEQ_FIELD = 0xFFFF
_WIRE_VERSION = 2
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
    """A message as it crosses processes: payload bytes plus kind, seq and origin.

    ``epoch`` is the history epoch ``seq`` belongs to ("" for unsaved messages).
    ``seq_field``: the receiving process stamps ``"<seq_field>": seq`` into a JSON
    object payload at delivery (:meth:`delivered_data`), so the publisher does not need
    to know the seq before publishing.
    """

    kind: str
    data: bytes
    seq: int = 0
    origin: bytes = b""
    epoch: str = ""
    seq_field: str | None = None

    def delivered_data(self) -> bytes:
        """The payload as members receive it: with the seq stamped when asked for."""
        if self.seq_field is None or self.kind != "json" or not self.data.startswith(b"{"):
            return self.data
        return stamp_seq(self.data, self.seq_field, self.seq)


def stamp_seq(data: bytes, seq_field: str, seq: int) -> bytes:
    """Insert ``"<seq_field>": seq`` into an encoded JSON object without re-encoding it."""
    key = orjson.dumps(seq_field)
    if data == b"{}":
        return b"{" + key + b":" + str(seq).encode() + b"}"
    return b"{" + key + b":" + str(seq).encode() + b"," + data[1:]


def wire_header(kind: str, origin: bytes, seq_field: str | None) -> bytes:
    """The bytes of a version-2 wire message before its seq."""
    if seq_field is None:
        return _HEADER_V2.pack(_WIRE_VERSION, _KIND_TO_CODE[kind], origin, _NO_SEQ_FIELD)
    field_bytes = seq_field.encode()
    if len(field_bytes) >= _NO_SEQ_FIELD:
        raise ValueError("seq_field is too long")
    return _HEADER_V2.pack(_WIRE_VERSION, _KIND_TO_CODE[kind], origin, len(field_bytes)) + (
        field_bytes
    )


def encode_wire(message: WireMessage) -> bytes:
    """The bytes a layer publishes (format version 2)."""
    epoch = message.epoch.encode()
    if len(epoch) > 255:
        raise ValueError("a wire message's epoch is at most 255 bytes")
    origin = message.origin.ljust(16, b"\0")[:16]
    return b"".join(
        (
            wire_header(message.kind, origin, message.seq_field),
            _SEQ.pack(message.seq),
            bytes((len(epoch),)),
            epoch,
            message.data,
        )
    )


def decode_wire(raw: bytes) -> WireMessage:
    """Inverse of :func:`encode_wire` (versions 1 and 2); ``ValueError`` if foreign."""
    if not raw:
        raise ValueError("empty wire message")
    if raw[0] == 1:
        return _decode_v1(raw)
    if raw[0] != _WIRE_VERSION or len(raw) < _HEADER_V2.size:
        raise ValueError(f"unknown wire message version {raw[0]}")
    _, code, origin, field_size = _HEADER_V2.unpack_from(raw)
    kind = _kind(code)
    at = _HEADER_V2.size
    seq_field = None
    if field_size != _NO_SEQ_FIELD:
        seq_field = raw[at : at + field_size].decode()
        at += field_size
    if len(raw) < at + _SEQ.size + 1:
        raise ValueError("wire message shorter than its header")
    (seq,) = _SEQ.unpack_from(raw, at)
    at += _SEQ.size
    epoch_size = raw[at]
    epoch = raw[at + 1 : at + 1 + epoch_size].decode()
    at += 1 + epoch_size
    if len(raw) < at:
        raise ValueError("wire message shorter than its header")
    return WireMessage(kind, raw[at:], seq, origin, epoch, seq_field)


def _decode_v1(raw: bytes) -> WireMessage:
    if len(raw) < _HEADER_V1.size:
        raise ValueError("wire message shorter than its header")
    _, code, seq, origin = _HEADER_V1.unpack_from(raw)
    return WireMessage(_kind(code), raw[_HEADER_V1.size :], seq, origin)


def _kind(code: bytes) -> str:
    kind = _CODE_TO_KIND.get(code)
    if kind is None:
        raise ValueError(f"unknown wire message kind {code!r}")
    return kind


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """One member of a group as presence reports it."""

    group: str
    channel_id: str
    info: bytes


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did: how many processes it reached, and for a saved message the
    history entry (its ``seq`` and ``epoch``; the original's when ``duplicate``).

    ``duplicate``: the idempotency key was already used within its window, so nothing
    was saved or delivered this time.
    """

    receivers: int
    entry: HistoryEntry | None = None
    duplicate: bool = False


@dataclass(slots=True)
class LayerHealth:
    """What :meth:`ChannelLayer.health` reports."""

    url: str
    connected: bool
    subscribed_groups: int = 0
    reconnects: int = 0
    last_error: str | None = None
    details: dict[str, object] = field(default_factory=dict)


class RecentKeys:
    """Idempotency keys seen within a window, oldest first; at most ``max_keys``."""

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._forget_at: OrderedDict[tuple[str, str], float] = OrderedDict()

    def first_use(self, group: str, key: str) -> bool:
        """Record ``key`` for ``group``; False when it was used within the window."""
        now = time.monotonic()
        while self._forget_at:
            oldest, forget_at = next(iter(self._forget_at.items()))
            if forget_at > now:
                break
            del self._forget_at[oldest]
        if (group, key) in self._forget_at:
            return False
        self._forget_at[(group, key)] = now + self.window
        if len(self._forget_at) > self.max_keys:
            self._forget_at.popitem(last=False)
        return True

    def forget(self, group: str, key: str) -> None:
        self._forget_at.pop((group, key), None)


class ChannelLayer(abc.ABC):
    """Moves bytes between processes. See the module docstring for the contract."""

    url: str
    idempotency_window: float = 120.0
    """Seconds :meth:`publish_once` remembers a key (layers take it from their
    ``history_limits``)."""

    @abc.abstractmethod
    async def start(self, receiver: Receiver, *, on_link: LinkListener | None = None) -> None:
        """Connect; from now on call ``receiver`` for messages published elsewhere, and
        ``on_link`` when the link to the broker goes down or is back."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Unsubscribe everything and disconnect. Idempotent."""

    @abc.abstractmethod
    async def subscribe(self, group: str) -> bool:
        """Start receiving the group's messages published by other processes.

        True once the broker confirmed it; False when the link is down and the group is
        only recorded (it is subscribed when the link is back, and ``on_link(True)`` says
        so).
        """

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

    async def publish_saved(
        self,
        group: str,
        kind: PayloadKind,
        data: bytes,
        *,
        history: HistoryStore,
        seq_field: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Save the message in ``history``, then publish it with its seq and epoch.

        A duplicate (``idempotency_key`` already used within the store's window) is
        neither saved nor published. This default takes two steps, so concurrent calls
        from several processes may publish out of seq order; the Redis layer paired
        with its Redis history store does it in one script.
        """
        check_group_name(group)
        entry = await history.append(
            group, kind, data, idempotency_key=idempotency_key, seq_field=seq_field
        )
        if entry.duplicate:
            return PublishResult(0, entry, duplicate=True)
        message = WireMessage(kind, entry.data, entry.seq, epoch=entry.epoch)
        return PublishResult(await self.publish(group, message), entry)

    async def publish_once(
        self, group: str, message: WireMessage, *, idempotency_key: str
    ) -> PublishResult:
        """Publish an unsaved message unless ``idempotency_key`` was used for ``group``
        within :attr:`idempotency_window` seconds; a retry in the window delivers nothing
        and reports ``duplicate=True``. If the publish fails, the key is not used up.

        This default remembers keys in this process only; shared layers override it.
        """
        check_group_name(group)
        check_idempotency_key(idempotency_key)
        keys: RecentKeys | None = getattr(self, "_recent_keys", None)
        if keys is None:
            keys = RecentKeys(self.idempotency_window)
            self._recent_keys = keys
        if not keys.first_use(group, idempotency_key):
            return PublishResult(0, duplicate=True)
        try:
            return PublishResult(await self.publish(group, message))
        except BaseException:
            keys.forget(group, idempotency_key)  # nothing was sent: a retry may send it
            raise

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
        """Extend the TTL of this process's ``(group, channel_id)`` entries that still
        exist. Superseded by :meth:`presence_heartbeat`, which also re-adds lost ones."""

    @abc.abstractmethod
    async def presence_heartbeat(
        self, entries: Sequence[tuple[str, str, bytes]], ttl: float
    ) -> list[PresenceRecord]:
        """Extend this process's ``(group, channel_id, info)`` entries by ``ttl``, and add
        back those that vanished (the broker lost its data, or they were reaped as
        expired while this process stalled longer than ``ttl``). Returns the re-added
        ones, so that the runtime can announce them again (``join``).

        ``entries`` must be this process's current members: an entry whose
        :meth:`presence_remove` was called before is added back.
        """

    @abc.abstractmethod
    async def presence_reap(self) -> list[PresenceRecord]:
        """Remove expired entries (a crashed process's members) and return them.

        Each expired entry is returned by exactly one caller across all processes, so
        a "leave" event is emitted once. The work is proportional to what expired.
        """

    @abc.abstractmethod
    def default_history(self) -> HistoryStore:
        """The history store used when ``NEXIOS_HISTORY_URL`` is not set."""

    @abc.abstractmethod
    def health(self) -> LayerHealth:
        """Connection state, subscriptions and reconnect count."""
