"""``Channel``: a WebSocket as a group member — payload type, expiry, metadata, sender.

>>> channel = Channel(websocket=ws, payload_type="json", expires=1800, metadata={"name": "ada"})
>>> await ChannelBox.add_channel_to_group(channel, "room:1")

A channel belongs to the channels runtime of the app whose connection it wraps; it
joins that runtime at its first group. When its socket ends (the handler returns, the
peer leaves, it is evicted or expires) it leaves every group by itself.

The connection may also be a Server-Sent Events stream
(:class:`~nexios.eventstream.EventStream`, with ``framer=EVENT_FRAMER``): the runtime
treats both alike (:class:`~nexios.connection.MemberConnection`).
"""

from __future__ import annotations

import enum
import time
import uuid as uuid_module
from typing import TYPE_CHECKING, Any, Protocol

from nexios import encoding
from nexios.connection import WebSocket, WebSocketState
from nexios.eventstream import EventStream
from nexios.exceptions import ConfigurationError
from nexios.framing import Framer, encode_payload

if TYPE_CHECKING:
    from nexios.runtime.senders import Sender

__all__ = ["Channel", "MemberHost", "PayloadTypeEnum"]


class PayloadTypeEnum(enum.Enum):
    """How a channel frames what it sends: JSON text, plain text, or binary."""

    JSON = "json"
    TEXT = "text"
    BYTES = "bytes"


class MemberHost(Protocol):
    """The runtime a channel joined: what the channel asks of it."""

    async def forget(
        self,
        channel: Channel,
        *,
        reason: str,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None: ...

    async def release(self, channel: Channel, *, reason: str) -> None: ...


def _payload_type(value: PayloadTypeEnum | str) -> PayloadTypeEnum:
    try:
        return value if isinstance(value, PayloadTypeEnum) else PayloadTypeEnum(value)
    except ValueError:
        raise ConfigurationError(
            f"payload_type must be a PayloadTypeEnum or one of 'json', 'text', 'bytes'; "
            f"got {value!r}."
        ) from None


def encode_metadata(metadata: dict[str, Any]) -> bytes:
    """``metadata`` as JSON, or a ConfigurationError saying what could not be encoded."""
    try:
        return encoding.dumps(metadata)
    except TypeError as error:
        raise ConfigurationError(
            f"Channel metadata must be JSON-serialisable (str keys; str, number, bool, None, "
            f"list or dict values): {error}. Presence shares it with every process."
        ) from None


class Channel:
    """A WebSocket (or an :class:`~nexios.eventstream.EventStream`) as a group member:
    payload type, expiry, metadata and a sender."""

    __slots__ = (
        "__weakref__",
        "created",
        "expires",
        "frame_key",
        "framer",
        "groups",
        "host",
        "last_active",
        "leave_reason",
        "metadata",
        "payload_type",
        "payload_type_value",
        "sender",
        "uuid",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket | EventStream,
        payload_type: PayloadTypeEnum | str = PayloadTypeEnum.JSON,
        expires: float | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        framer: Framer | None = None,
    ) -> None:
        if not isinstance(websocket, WebSocket | EventStream):
            raise ConfigurationError(
                f"Channel(websocket=...) needs the handler's WebSocket (or an EventStream), "
                f"got {websocket!r}."
            )
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0
        ):
            raise ConfigurationError(
                f"Channel expires= is seconds of inactivity (a positive number) or None, "
                f"got {expires!r}."
            )
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigurationError(f"Channel metadata must be a dict, got {metadata!r}.")
        self.websocket = websocket
        self.payload_type = _payload_type(payload_type)
        self.payload_type_value = self.payload_type.value
        if framer is not None and not isinstance(framer, Framer):
            raise ConfigurationError(
                f"Channel framer= takes a nexios.framing.Framer, got {framer!r}."
            )
        self.framer = framer
        """Frames group messages for this member (None: by its payload type)."""
        self.frame_key = framer.key if framer is not None else self.payload_type_value
        self.expires = expires
        self.metadata: dict[str, Any] = metadata if metadata is not None else {}
        encode_metadata(self.metadata)
        self.uuid = uuid_module.uuid4().hex
        self.created = time.time()
        self.last_active = time.monotonic()
        self.groups: set[str] = set()
        self.sender: Sender | None = None
        """The member's outgoing path; set by the runtime at the first join."""
        self.host: MemberHost | None = None
        """The runtime this channel joined (None before its first join)."""
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
                payload = data.decode()
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

    async def leave_groups(self, reason: str = "left") -> None:
        """Leave every group; the socket stays open."""
        if self.host is not None:
            await self.host.forget(self, reason=reason)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Leave every group and close the socket."""
        if self.host is not None:
            await self.host.forget(self, reason="closed")
        await self.websocket.close(code, reason)

    async def _on_socket_closed(self) -> None:
        if self.host is not None:
            await self.host.release(self, reason=self.leave_reason)

    def __repr__(self) -> str:
        return f"<Channel {self.uuid} {self.payload_type_value} groups={sorted(self.groups)}>"
