"""Channels and groups: ``Channel`` wraps a WebSocket; ``ChannelBox`` manages groups.

>>> channel = Channel(websocket=ws, payload_type="json", expires=1800, metadata={"name": "ada"})
>>> await ChannelBox.add_channel_to_group(channel, "room:1")
>>> await ChannelBox.group_send("room:1", {"text": "hi"}, save_history=True)
>>> history = await ChannelBox.show_history("room:1")      # entries oldest first
>>> await ChannelBox.presence("room:1")                    # members in every process

Where groups live is one setting — ``memory://`` (default, one process) or
``redis://host:port/db`` (every process and machine on that Redis) — read from
``NEXIOS_CHANNELS_URL`` or given to :meth:`ChannelBox.configure` /
``NexiosApp(channels_url=...)``. Application code does not change.

``group_send`` never waits for members to read: the payload is encoded once and queued
in each member's bounded outbox (see :mod:`nexios.websockets.outbox` for the overflow
policy: a member too slow for its bounds is closed with 1013 and removed). A channel
whose socket ends, that expires, or that is evicted leaves all its groups by itself.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid as uuid_module
from typing import Any, ClassVar

from nexios.exceptions import ConfigurationError, GroupAccessDenied
from nexios.history.base import HistoryEntry, HistoryLimits, HistoryPage
from nexios.layers.base import LayerHealth
from nexios.websockets.base import WebSocket, WebSocketState
from nexios.websockets.hub import Hub, HubSettings, PresenceMember, encode_payload
from nexios.websockets.outbox import Outbox, OutboxLimits, OverflowPolicy

__all__ = [
    "Channel",
    "ChannelAddStatusEnum",
    "ChannelBox",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "HistoryEntry",
    "HistoryPage",
    "OutboxLimits",
    "OverflowPolicy",
    "PayloadTypeEnum",
    "PresenceMember",
]


class PayloadTypeEnum(enum.Enum):
    """How a channel frames what it sends: JSON text, plain text, or binary."""

    JSON = "json"
    TEXT = "text"
    BYTES = "bytes"


class ChannelAddStatusEnum(enum.Enum):
    CHANNEL_ADDED = "CHANNEL_ADDED"
    CHANNEL_EXIST = "CHANNEL_EXIST"


class ChannelRemoveStatusEnum(enum.Enum):
    CHANNEL_REMOVED = "CHANNEL_REMOVED"
    CHANNEL_DOES_NOT_EXIST = "CHANNEL_DOES_NOT_EXIST"
    GROUP_REMOVED = "GROUP_REMOVED"
    GROUP_DOES_NOT_EXIST = "GROUP_DOES_NOT_EXIST"


class GroupSendStatusEnum(enum.Enum):
    GROUP_SEND = "GROUP_SEND"
    NO_SUCH_GROUP = "NO_SUCH_GROUP"


def _payload_type(value: PayloadTypeEnum | str) -> PayloadTypeEnum:
    try:
        return value if isinstance(value, PayloadTypeEnum) else PayloadTypeEnum(value)
    except ValueError:
        raise ConfigurationError(
            f"payload_type must be a PayloadTypeEnum or one of 'json', 'text', 'bytes'; "
            f"got {value!r}."
        ) from None


class Channel:
    """A WebSocket as a group member: payload type, expiry, metadata and an outbox."""

    __slots__ = (
        "__weakref__",
        "created",
        "expires",
        "flush_hook",
        "groups",
        "last_active",
        "leave_reason",
        "metadata",
        "outbox",
        "payload_type",
        "payload_type_value",
        "sink",
        "sink_pending",
        "sink_pending_bytes",
        "stalled_since",
        "uuid",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        payload_type: PayloadTypeEnum | str = PayloadTypeEnum.JSON,
        expires: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(websocket, WebSocket):
            raise ConfigurationError(
                f"Channel(websocket=...) needs the handler's WebSocket, got {websocket!r}."
            )
        if expires is not None and (not isinstance(expires, int | float) or expires <= 0):
            raise ConfigurationError(
                f"Channel expires= is seconds of inactivity (a positive number) or None, "
                f"got {expires!r}."
            )
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigurationError(f"Channel metadata must be a dict, got {metadata!r}.")
        self.websocket = websocket
        self.payload_type = _payload_type(payload_type)
        self.payload_type_value = self.payload_type.value
        self.expires = expires
        self.metadata: dict[str, Any] = metadata if metadata is not None else {}
        self.uuid = uuid_module.uuid4().hex
        self.created = time.time()
        self.last_active = time.monotonic()
        self.groups: set[str] = set()
        self.outbox: Outbox | None = None
        self.sink: Any = None
        self.flush_hook: Any = None  # bound flush_sink, made once when a sink is found
        self.sink_pending: list[bytes] | None = None
        self.sink_pending_bytes = 0
        self.stalled_since: float | None = None
        self.leave_reason = "disconnected"
        websocket.on_close(self._on_socket_closed)

    @property
    def id(self) -> str:
        """Alias of :attr:`uuid`."""
        return self.uuid

    @property
    def is_active(self) -> bool:
        """True while the socket is open and the channel has not expired."""
        return self.websocket.connection_state is WebSocketState.CONNECTED and not self.is_expired()

    def is_expired(self) -> bool:
        """True when idle longer than ``expires`` seconds."""
        return self.expires is not None and time.monotonic() - self.last_active > self.expires

    async def flush_sink(self) -> None:
        """Write frames gathered for this member before the socket sends anything else."""
        hub = ChannelBox._hub_if_running()
        if hub is not None:
            hub.flush_sink(self)

    def touch(self) -> None:
        """Mark activity now (sending and receiving through the channel do this)."""
        self.last_active = time.monotonic()

    async def send(self, payload: Any) -> None:
        """Send to this channel's socket now, framed by its payload type."""
        self.last_active = time.monotonic()
        kind = self.payload_type_value
        if kind == "json":
            await self.websocket.send_json(payload)
        elif kind == "text":
            if not isinstance(payload, str):
                _, data = encode_payload(payload)
                payload = data.decode() if not isinstance(payload, bytes) else payload.decode()
            await self.websocket.send_text(payload)
        else:
            if not isinstance(payload, bytes):
                _, payload = encode_payload(payload)
            await self.websocket.send_bytes(payload)

    _send = send

    async def receive(self) -> Any:
        """Receive one message, decoded by the payload type."""
        kind = self.payload_type_value
        if kind == "json":
            value: Any = await self.websocket.receive_json()
        elif kind == "text":
            value = await self.websocket.receive_text()
        else:
            value = await self.websocket.receive_bytes()
        self.last_active = time.monotonic()
        return value

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Leave every group and close the socket."""
        hub = ChannelBox._hub_if_running()
        if hub is not None:
            await hub.forget(self, reason="closed")
        await self.websocket.close(code, reason)

    async def _on_socket_closed(self) -> None:
        hub = ChannelBox._hub_if_running()
        if hub is None:
            return
        if self.groups or self.outbox is not None:
            await hub.forget(self, reason=self.leave_reason)
        await hub.close_frame_sent(self.websocket)

    def __repr__(self) -> str:
        return f"<Channel {self.uuid} {self.payload_type_value} groups={sorted(self.groups)}>"


class ChannelBox:
    """Groups of channels, across processes when the layer is shared. All class-level."""

    _settings: ClassVar[HubSettings] = HubSettings()
    _hub: ClassVar[Hub | None] = None
    _events: ClassVar[Any] = None
    _group_policy: ClassVar[Any] = None

    # ------------------------------------------------------------------ configuration

    @classmethod
    def configure(
        cls,
        url: str | None = None,
        *,
        history_url: str | None = None,
        history_limits: HistoryLimits | None = None,
        outbox: OutboxLimits | None = None,
        presence_ttl: float | None = None,
    ) -> None:
        """Choose the channel layer (``memory://``, ``redis://...``), history and bounds.

        Takes effect for the next use; call it before the app starts.
        """
        settings = HubSettings(
            channels_url=url if url is not None else cls._settings.channels_url,
            history_url=history_url if history_url is not None else cls._settings.history_url,
            history_limits=history_limits or cls._settings.history_limits,
            outbox=outbox or cls._settings.outbox,
            presence_ttl=presence_ttl or cls._settings.presence_ttl,
        )
        if settings.channels_url is not None:
            from nexios.layers import layer_from_url

            layer_from_url(settings.channels_url)  # validate the URL now
        cls._settings = settings
        hub, cls._hub = cls._hub, None
        if hub is not None:
            hub.loop.create_task(hub.stop())

    @classmethod
    def bind_events(cls, events: Any) -> None:
        """Emit ``channel.join`` / ``channel.leave`` on ``events`` (the app does this)."""
        cls._events = events
        if cls._hub is not None:
            cls._hub.events = events

    @classmethod
    def set_group_policy(cls, policy: Any) -> None:
        """``async def policy(channel, group) -> bool``: may this channel join this group?"""
        cls._group_policy = policy

    @classmethod
    def _get_hub(cls) -> Hub:
        loop = asyncio.get_running_loop()
        hub = cls._hub
        if hub is None or hub.loop is not loop:
            hub = cls._hub = Hub(cls._settings)
            hub.events = cls._events
        return hub

    @classmethod
    def _hub_if_running(cls) -> Hub | None:
        hub = cls._hub
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return hub if hub is not None and hub.loop is loop else None

    @classmethod
    async def shutdown(cls) -> None:
        """Close every local member (1001), leave presence, disconnect the layer."""
        hub = cls._hub_if_running()
        if hub is None:
            cls._hub = None
            return
        # The hub stays reachable while members leave: leave listeners may still publish.
        await hub.stop(close_code=1001)
        if cls._hub is hub:
            cls._hub = None

    # ------------------------------------------------------------------ groups

    @classmethod
    async def add_channel_to_group(
        cls, channel: Channel, group_name: str = "default"
    ) -> ChannelAddStatusEnum:
        """Add ``channel`` to ``group_name`` (created on first member)."""
        _check_channel(channel)
        _check_group(group_name)
        if cls._group_policy is not None and not await cls._group_policy(channel, group_name):
            raise GroupAccessDenied(
                f"Channel {channel.uuid} may not join group {group_name!r} (group policy refused)."
            )
        added = await cls._get_hub().join(channel, group_name)
        return ChannelAddStatusEnum.CHANNEL_ADDED if added else ChannelAddStatusEnum.CHANNEL_EXIST

    @classmethod
    async def remove_channel_from_group(
        cls, channel: Channel, group_name: str
    ) -> ChannelRemoveStatusEnum:
        """Remove ``channel`` from ``group_name``; never raises for a non-member."""
        _check_channel(channel)
        hub = cls._get_hub()
        if group_name not in hub.groups:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        if not await hub.leave(channel, group_name):
            return ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        if group_name not in hub.groups:
            return ChannelRemoveStatusEnum.GROUP_REMOVED
        return ChannelRemoveStatusEnum.CHANNEL_REMOVED

    @classmethod
    async def group_send(
        cls,
        group_name: str = "default",
        payload: Any = None,
        save_history: bool = False,
        *,
        seq_field: str | None = None,
    ) -> GroupSendStatusEnum:
        """Send ``payload`` to every member of the group, in every process.

        Returns once the message is queued for local members and published to the
        others. ``save_history=True`` keeps it (with a ``seq``); ``seq_field="seq"``
        also adds that number to the dict members receive, so clients can recover.
        """
        _check_group(group_name)
        if payload is None:
            raise ConfigurationError("group_send needs a payload: group_send(group, payload).")
        sent = await cls._get_hub().group_send(
            group_name, payload, save_history=save_history, seq_field=seq_field
        )
        return GroupSendStatusEnum.GROUP_SEND if sent else GroupSendStatusEnum.NO_SUCH_GROUP

    @classmethod
    async def send_to(cls, channel_id: str, payload: Any) -> bool:
        """Queue ``payload`` for one channel of this process; False when it is unknown."""
        return await cls._get_hub().send_to(str(channel_id), payload)

    @classmethod
    async def show_groups(cls) -> dict[str, dict[str, Channel]]:
        """This process's groups and their local members (a copy)."""
        hub = cls._get_hub()
        return {group: dict(members) for group, members in hub.groups.items()}

    @classmethod
    async def flush_groups(cls) -> None:
        """Remove every local channel from every group (sockets stay open)."""
        hub = cls._get_hub()
        for channel in list(hub.channels.values()):
            await hub.forget(channel, reason="flushed")

    @classmethod
    async def close_all_connections(cls, code: int = 1001, reason: str = "") -> None:
        """Close every local member's socket and empty the groups."""
        hub = cls._get_hub()
        for channel in list(hub.channels.values()):
            await hub.forget(channel, reason="closed", close_code=code, close_reason=reason)

    # ------------------------------------------------------------------ history

    @classmethod
    async def show_history(
        cls, group_name: str = "", since: int | None = None, limit: int | None = None
    ) -> HistoryPage | dict[str, HistoryPage]:
        """The group's saved entries, oldest first (``since``: only newer than that seq).

        Without a group name: every group's history, as a dict.
        """
        hub = cls._get_hub()
        if not group_name:
            return {
                group: await hub.read_history(group, since=since, limit=limit)
                for group in await hub.history.groups()
            }
        return await hub.read_history(group_name, since=since, limit=limit)

    @classmethod
    async def recover(cls, group_name: str, since: int, limit: int | None = None) -> HistoryPage:
        """What a client that last saw ``since`` missed. Check ``page.complete``:

        False means more was missed than history keeps — reload from your database.
        """
        _check_group(group_name)
        return await cls._get_hub().read_history(group_name, since=since, limit=limit)

    @classmethod
    async def flush_history(cls, group_name: str | None = None) -> None:
        """Drop saved entries of one group or all (sequence numbers are not reused)."""
        await cls._get_hub().history.clear(group_name)

    # ------------------------------------------------------------------ presence & health

    @classmethod
    async def presence(cls, group_name: str) -> list[PresenceMember]:
        """Members of ``group_name`` in every process, with channel id and metadata."""
        _check_group(group_name)
        return await cls._get_hub().presence(group_name)

    @classmethod
    def health(cls) -> LayerHealth | None:
        """The channel layer's health, or None before first use."""
        hub = cls._hub_if_running()
        return hub.layer.health() if hub is not None else None


def _check_channel(channel: Any) -> None:
    if not isinstance(channel, Channel):
        raise ConfigurationError(
            f"Expected a Channel, got {type(channel).__name__}: wrap the socket first, "
            "Channel(websocket=ws, payload_type='json')."
        )


def _check_group(group_name: Any) -> None:
    if not isinstance(group_name, str) or not group_name:
        raise ConfigurationError(f"group_name must be a non-empty str, got {group_name!r}.")
