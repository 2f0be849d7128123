"""WebSockets: the connection, channels and groups, consumers.

``from nexios.websockets import WebSocket, Channel, ChannelBox, ...`` works as well as
the submodule paths (``nexios.websockets.base``, ``.channels``, ``.consumers``).
"""

from nexios.exceptions import WebSocketDisconnect
from nexios.websockets.base import WebSocket, WebSocketState
from nexios.websockets.channels import (
    Channel,
    ChannelAddStatusEnum,
    ChannelBox,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    OutboxLimits,
    OverflowPolicy,
    PayloadTypeEnum,
)
from nexios.websockets.consumers import WebSocketConsumer

__all__ = [
    "Channel",
    "ChannelAddStatusEnum",
    "ChannelBox",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "OutboxLimits",
    "OverflowPolicy",
    "PayloadTypeEnum",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketState",
]
