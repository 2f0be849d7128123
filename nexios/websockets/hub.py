"""The per-process runtime behind ``ChannelBox``: local groups, fan-out, presence, upkeep.

One :class:`Hub` lives per process and event loop. It keeps the local members of each
group (``dict`` keyed by channel id: O(1) join and leave), the channel layer that links
processes, the history store, and one maintenance task that:

- evicts members whose send missed its deadline (every 0.25 s),
- closes channels idle longer than their ``expires`` (every second),
- refreshes this process's presence entries and reaps those of dead processes
  (every ``presence_ttl / 3`` seconds).

Fan-out: a payload is encoded once (:func:`encode_payload`), framed once per payload
type present in the group, and put in each member's bounded outbox. Messages from other
processes arrive through the layer's receiver and take the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexios import encoding
from nexios.exceptions import ChannelError, ConfigurationError
from nexios.history import history_from_url, limits_from_env
from nexios.history.base import HistoryLimits, HistoryPage, HistoryStore
from nexios.layers import layer_from_url
from nexios.layers.base import ChannelLayer, PresenceRecord, WireMessage
from nexios.websockets.outbox import Outbox, OutboxLimits

if TYPE_CHECKING:
    from nexios.events import EventEmitter
    from nexios.websockets.channels import Channel

__all__ = ["Hub", "HubSettings", "PresenceMember", "encode_payload"]

logger = logging.getLogger("nexios.channels")

_DEADLINE_CHECK = 0.25
_SINK_HIGH_WATER = 64 * 1024
_EXPIRY_CHECK = 1.0


@dataclass(slots=True)
class HubSettings:
    """Where channels and history live, and the bounds that apply."""

    channels_url: str | None = None
    history_url: str | None = None
    history_limits: HistoryLimits | None = None
    outbox: OutboxLimits = field(default_factory=OutboxLimits.from_env)
    presence_ttl: float = field(
        default_factory=lambda: float(os.environ.get("NEXIOS_PRESENCE_TTL", "15"))
    )

    def resolved_channels_url(self) -> str:
        return self.channels_url or os.environ.get("NEXIOS_CHANNELS_URL") or "memory://"

    def resolved_history_url(self) -> str | None:
        return self.history_url or os.environ.get("NEXIOS_HISTORY_URL") or None


@dataclass(frozen=True, slots=True)
class PresenceMember:
    """A member of a group, in any process: its channel id, metadata and join time."""

    group: str
    channel_id: str
    metadata: dict[str, Any]
    joined: float

    def to_dict(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "metadata": self.metadata, "joined": self.joined}


def encode_payload(payload: Any) -> tuple[str, bytes]:
    """Encode once: ``(kind, data)`` with kind ``text`` (str), ``bytes`` or ``json``."""
    if isinstance(payload, str):
        return "text", payload.encode()
    if isinstance(payload, bytes | bytearray | memoryview):
        return "bytes", bytes(payload)
    return "json", encoding.dumps(payload)


def stamp_seq(data: bytes, seq_field: str, seq: int) -> bytes:
    """Insert ``"<seq_field>": seq`` into an encoded JSON object without re-encoding it."""
    key = encoding.dumps(seq_field)
    if data == b"{}":
        return b"{" + key + b":" + str(seq).encode() + b"}"
    return b"{" + key + b":" + str(seq).encode() + b"," + data[1:]


def _frame_payload(payload_type: str, kind: str, data: bytes) -> tuple[bool, bytes]:
    """What a member of ``payload_type`` receives: ``(is_text, utf-8 or binary bytes)``."""
    if payload_type == "bytes" or (kind == "bytes" and payload_type == "text"):
        return False, data
    if payload_type == "json" and kind != "json":
        if kind == "text":
            return True, encoding.dumps(data.decode())
        import base64

        return True, encoding.dumps(base64.b64encode(data).decode())
    return True, data


def _frame(payload_type: str, kind: str, data: bytes) -> tuple[dict[str, Any], int]:
    """The ASGI send message for a member of ``payload_type``, and its size."""
    is_text, payload = _frame_payload(payload_type, kind, data)
    if is_text:
        return {"type": "websocket.send", "text": payload.decode()}, len(payload)
    return {"type": "websocket.send", "bytes": payload}, len(payload)


def _raw_frame(payload_type: str, kind: str, data: bytes) -> bytes:
    """The complete WebSocket frame, for members whose server accepts pre-framed bytes."""
    from nexios.server import build_frame

    is_text, payload = _frame_payload(payload_type, kind, data)
    return build_frame(payload, text=is_text)


class Hub:
    """Local group registry + layer + history + maintenance, bound to one event loop."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        limits = settings.history_limits or limits_from_env()
        self.layer: ChannelLayer = layer_from_url(
            settings.resolved_channels_url(), history_limits=limits
        )
        history_url = settings.resolved_history_url()
        self.history: HistoryStore = (
            history_from_url(history_url, limits=limits)
            if history_url
            else self.layer.default_history()
        )
        self.groups: dict[str, dict[str, Channel]] = {}
        self.channels: dict[str, Channel] = {}
        self.events: EventEmitter | None = None
        self.loop = asyncio.get_running_loop()
        self._started = False
        self._start_lock = asyncio.Lock()
        self._maintenance: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._close_frames: dict[int, asyncio.Task[None]] = {}
        self._unflushed: list[Channel] = []
        self._flush_scheduled = False
        self.evictions = 0

    # ------------------------------------------------------------------ lifecycle

    async def ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.layer.start(self._on_remote_message)
            self._maintenance = self.loop.create_task(self._maintain(), name="nexios-hub")
            self._started = True

    async def stop(self, close_code: int = 1001) -> None:
        """Close every local member, leave presence, disconnect the layer."""
        for channel in list(self.channels.values()):
            await self.forget(channel, reason="shutdown", close_code=close_code)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._closing:
            await asyncio.wait(self._closing, timeout=2.0)
        if self._started:
            with contextlib.suppress(Exception):
                await self.layer.stop()
        with contextlib.suppress(Exception):
            await self.history.close()
        self._started = False

    # ------------------------------------------------------------------ membership

    async def join(self, channel: Channel, group: str) -> bool:
        """Add ``channel`` to ``group``. False when it already was a member."""
        await self.ensure_started()
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = {}
        if channel.uuid in members:
            return False
        first_local = not members
        members[channel.uuid] = channel
        channel.groups.add(group)
        self.channels[channel.uuid] = channel
        if channel.outbox is None:
            channel.sink = _frame_sink(channel.websocket)
            if channel.sink is not None:
                channel.flush_hook = channel.flush_sink
            channel.outbox = Outbox(
                channel.websocket,
                self.settings.outbox,
                lambda outbox, code, reason: self._on_dead_member(channel, code, reason),
            )
        try:
            if first_local:
                await self.layer.subscribe(group)
            info = encoding.dumps(
                {"channel_id": channel.uuid, "metadata": channel.metadata, "joined": time.time()}
            )
            await self.layer.presence_add(group, channel.uuid, info, self.settings.presence_ttl)
        except ChannelError:
            self._drop_local(channel, group)
            raise
        await self._emit("channel.join", group, channel, "joined")
        return True

    async def leave(self, channel: Channel, group: str, reason: str = "left") -> bool:
        """Remove ``channel`` from ``group``. False when it was not a member."""
        if not self._drop_local(channel, group):
            return False
        if group not in self.groups:
            with contextlib.suppress(ChannelError):
                await self.layer.unsubscribe(group)
        with contextlib.suppress(ChannelError):
            await self.layer.presence_remove(group, channel.uuid)
        await self._emit("channel.leave", group, channel, reason)
        return True

    def _drop_local(self, channel: Channel, group: str) -> bool:
        members = self.groups.get(group)
        if members is None or members.pop(channel.uuid, None) is None:
            return False
        channel.groups.discard(group)
        if not members:
            del self.groups[group]
        if not channel.groups:
            self.channels.pop(channel.uuid, None)
        return True

    async def forget(
        self,
        channel: Channel,
        *,
        reason: str,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        """Take ``channel`` out of every group; optionally end its connection."""
        for group in list(channel.groups):
            await self.leave(channel, group, reason)
        self.channels.pop(channel.uuid, None)
        if channel.outbox is not None:
            channel.outbox.close()
        if close_code is not None:
            self._end_connection(channel, close_code, close_reason or reason)

    def _end_connection(self, channel: Channel, code: int, reason: str) -> None:
        ws = channel.websocket
        from nexios.websockets.base import WebSocketState

        if ws.connection_state is not WebSocketState.CONNECTED:
            return
        task = self.loop.create_task(self._send_close(ws, code, reason))
        self._closing.add(task)
        self._close_frames[id(ws)] = task
        task.add_done_callback(self._closing.discard)
        ws.kick(code, reason)

    async def close_frame_sent(self, ws: Any) -> None:
        """Wait for the close frame an eviction or expiry is sending to ``ws``.

        The handler ends as soon as it is kicked; the app must not return (and let the
        server drop the connection) before that frame is written.
        """
        task = self._close_frames.pop(id(ws), None)
        if task is not None:
            await asyncio.wait({task})

    async def _send_close(self, ws: Any, code: int, reason: str) -> None:
        # The peer may not be reading: bound the wait, the server drops it later.
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            async with asyncio.timeout(self.settings.outbox.send_timeout):
                await ws._send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    def _on_dead_member(self, channel: Channel, code: int, reason: str) -> None:
        outbox = channel.outbox
        if outbox is None or outbox.closed:
            return
        outbox.close()
        if code != 1006:
            channel.leave_reason = "evicted"
            self.evictions += 1
            logger.warning(
                "Evicting channel %s from %s (%s); closing with %d",
                channel.uuid,
                sorted(channel.groups),
                reason,
                code,
            )
        # Membership changes never happen inside the fan-out loop that noticed them.
        self.loop.call_soon(self._spawn_forget, channel, code, reason)

    def _spawn_forget(self, channel: Channel, code: int, reason: str) -> None:
        close_code = code if code != 1006 else None
        task = self.loop.create_task(
            self.forget(
                channel, reason=channel.leave_reason, close_code=close_code, close_reason=reason
            )
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ sending

    async def group_send(
        self,
        group: str,
        payload: Any,
        *,
        save_history: bool = False,
        seq_field: str | None = None,
    ) -> bool:
        """Encode once, save if asked, publish to other processes, queue for local members.

        Returns True when the group has members here or in another process.
        """
        await self.ensure_started()
        kind, data = encode_payload(payload)
        seq = 0
        if save_history:
            entry = await self.history.append(group, kind, data)
            seq = entry.seq
            if seq_field is not None:
                data = self._stamped(payload, kind, data, seq_field, seq)
        elif seq_field is not None:
            raise ConfigurationError(
                "seq_field needs save_history=True: the sequence number comes from history."
            )
        elsewhere = await self.layer.publish(group, WireMessage(kind, data, seq))
        return self.deliver_local(group, kind, data) > 0 or elsewhere > 0

    @staticmethod
    def _stamped(payload: Any, kind: str, data: bytes, seq_field: str, seq: int) -> bytes:
        if kind != "json" or not isinstance(payload, dict):
            raise ConfigurationError(
                f"seq_field={seq_field!r} works with dict payloads only, "
                f"got {type(payload).__name__}."
            )
        if seq_field in payload:
            raise ConfigurationError(
                f"The payload already has a {seq_field!r} key; choose another seq_field."
            )
        return stamp_seq(data, seq_field, seq)

    def deliver_local(self, group: str, kind: str, data: bytes) -> int:
        """Queue the message for this process's members of ``group``; return how many."""
        members = self.groups.get(group)
        if not members:
            return 0
        frames: dict[str, tuple[dict[str, Any], int]] = {}
        raw_frames: dict[str, bytes] = {}
        queued = 0
        # Safe to iterate live: a member found dead here leaves later (call_soon).
        for channel in members.values():
            if channel.sink is not None:
                raw = raw_frames.get(channel.payload_type_value)
                if raw is None:
                    raw = raw_frames[channel.payload_type_value] = _raw_frame(
                        channel.payload_type_value, kind, data
                    )
                queued += self._write_to_sink(channel, raw)
                continue
            framed = frames.get(channel.payload_type_value)
            if framed is None:
                framed = frames[channel.payload_type_value] = _frame(
                    channel.payload_type_value, kind, data
                )
            outbox = channel.outbox
            if outbox is not None and outbox.put(framed[0], framed[1]):
                queued += 1
        return queued

    def _write_to_sink(self, channel: Channel, frame: bytes) -> int:
        """Queue a pre-built frame for the member's transport; its buffer is the queue.

        Frames are gathered per member and written once per event-loop iteration
        (:meth:`_flush_sinks`): a burst of broadcasts costs one ``send()`` per member, not
        one per message. A direct send on the socket flushes first, keeping the order.
        """
        pending = channel.sink_pending
        if pending is None:
            if channel.sink.buffered() + len(frame) > self.settings.outbox.max_bytes:
                self._evict_sink_member(channel, "write buffer full: client too slow")
                return 0
            channel.sink_pending = [frame]
            channel.sink_pending_bytes = len(frame)
            channel.websocket._before_send = channel.flush_hook
            self._unflushed.append(channel)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush_sinks)
            return 1
        size = channel.sink_pending_bytes + len(frame)
        if channel.sink.buffered() + size > self.settings.outbox.max_bytes:
            self._evict_sink_member(channel, "write buffer full: client too slow")
            return 0
        pending.append(frame)
        channel.sink_pending_bytes = size
        return 1

    def _flush_sinks(self) -> None:
        self._flush_scheduled = False
        unflushed, self._unflushed = self._unflushed, []
        for channel in unflushed:
            self.flush_sink(channel)

    def flush_sink(self, channel: Channel) -> None:
        """Write the member's gathered frames now (one ``send()``)."""
        pending = channel.sink_pending
        if pending is None:
            return
        channel.sink_pending = None
        channel.websocket._before_send = None
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if not channel.sink.write(data):
            self._on_dead_member(channel, 1006, "connection closed")

    def _evict_sink_member(self, channel: Channel, reason: str) -> None:
        # A peer that stopped reading can't take a close frame either: drop it now.
        channel.sink_pending = None
        channel.websocket._before_send = None
        channel.sink.abort()
        self._on_dead_member(channel, 1013, reason)

    def _on_remote_message(self, group: str, message: WireMessage) -> None:
        self.deliver_local(group, message.kind, message.data)

    async def send_to(self, channel_id: str, payload: Any) -> bool:
        """Queue ``payload`` for one local channel. False when it is not here."""
        channel = self.channels.get(channel_id)
        if channel is None or channel.outbox is None:
            return False
        kind, data = encode_payload(payload)
        if channel.sink is not None:
            return (
                self._write_to_sink(channel, _raw_frame(channel.payload_type_value, kind, data))
                == 1
            )
        message, size = _frame(channel.payload_type_value, kind, data)
        return channel.outbox.put(message, size)

    # ------------------------------------------------------------------ history & presence

    async def read_history(
        self, group: str, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        return await self.history.read(group, since=since, limit=limit)

    async def presence(self, group: str) -> list[PresenceMember]:
        await self.ensure_started()
        records = await self.layer.presence_list(group)
        members = [_member(record) for record in records]
        members.sort(key=lambda member: (member.joined, member.channel_id))
        return members

    # ------------------------------------------------------------------ events

    def _emit_args(self, group: str, channel_id: str, metadata: Any, reason: str) -> dict[str, Any]:
        return {"group": group, "channel_id": channel_id, "metadata": metadata, "reason": reason}

    async def _emit(self, name: str, group: str, channel: Channel, reason: str) -> None:
        if self.events is not None:
            await self.events.emit(
                name, self._emit_args(group, channel.uuid, channel.metadata, reason)
            )

    # ------------------------------------------------------------------ maintenance

    async def _maintain(self) -> None:
        heartbeat = max(0.05, self.settings.presence_ttl / 3)
        next_expiry = next_heartbeat = self.loop.time()
        while True:
            await asyncio.sleep(_DEADLINE_CHECK)
            now = self.loop.time()
            try:
                self._check_deadlines(now)
                if now >= next_expiry:
                    next_expiry = now + _EXPIRY_CHECK
                    await self._close_expired()
                if now >= next_heartbeat:
                    next_heartbeat = now + heartbeat
                    await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Channel maintenance failed; retrying")

    def _check_deadlines(self, now: float) -> None:
        timeout = self.settings.outbox.send_timeout
        for channel in list(self.channels.values()):
            outbox = channel.outbox
            if outbox is None or outbox.closed:
                continue
            if channel.sink is None:
                if outbox.overdue(now):
                    self._on_dead_member(channel, 1013, "send deadline missed: client too slow")
            elif channel.sink.buffered() <= _SINK_HIGH_WATER:
                channel.stalled_since = None
            elif channel.stalled_since is None:
                channel.stalled_since = now
            elif now - channel.stalled_since > timeout:
                self._evict_sink_member(channel, "send deadline missed: client too slow")

    async def _close_expired(self) -> None:
        for channel in list(self.channels.values()):
            if channel.is_expired():
                logger.info("Channel %s expired after %ss idle", channel.uuid, channel.expires)
                await self.forget(
                    channel, reason="expired", close_code=1000, close_reason="channel expired"
                )

    async def _heartbeat(self) -> None:
        members = [
            (group, channel_id) for group, local in self.groups.items() for channel_id in local
        ]
        try:
            if members:
                await self.layer.presence_refresh(members, self.settings.presence_ttl)
            reaped = await self.layer.presence_reap()
        except ChannelError as error:
            logger.warning("Presence heartbeat failed: %s", error)
            return
        for record in reaped:
            member = _member(record)
            if self.events is not None:
                await self.events.emit(
                    "channel.leave",
                    self._emit_args(member.group, member.channel_id, member.metadata, "expired"),
                )

    def local_members(self, group: str) -> Iterable[Channel]:
        return tuple(self.groups.get(group, {}).values())


def _frame_sink(ws: Any) -> Any:
    """The server's pre-framed write channel for this socket, if it offers one."""
    return ws.scope.get("extensions", {}).get("nexios.frames")


def _member(record: PresenceRecord) -> PresenceMember:
    info = encoding.loads(record.info) if record.info else {}
    return PresenceMember(
        group=record.group,
        channel_id=record.channel_id,
        metadata=info.get("metadata") or {},
        joined=float(info.get("joined") or 0.0),
    )
