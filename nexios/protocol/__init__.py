"""The client protocol (``docs/protocol.md``): codes, commands and server frames, no I/O.

The server endpoint and the Python client both use it; the browser client in
``clients/js/`` implements the same protocol.
"""

from __future__ import annotations

from nexios.protocol.codes import DisconnectCode, ErrorCode, ProtocolError, reconnects
from nexios.protocol.commands import (
    COMMAND_TYPES,
    MAX_SAFE_INTEGER,
    Command,
    ConnectCommand,
    HistoryCommand,
    PingCommand,
    PongCommand,
    PresenceCommand,
    ProtocolLimits,
    PublishCommand,
    RefreshCommand,
    SubscribeCommand,
    SubscribeOptions,
    UnsubscribeCommand,
    encode_command,
    parse_command,
)
from nexios.protocol.frames import (
    PING_PUSH,
    disconnect_push,
    error_push,
    error_reply,
    history_result,
    join_push,
    leave_push,
    member,
    message_push,
    reply,
    resync_push,
    subscribe_result,
    unsubscribed_push,
)

__all__ = [
    "COMMAND_TYPES",
    "MAX_SAFE_INTEGER",
    "PING_PUSH",
    "SUBPROTOCOL",
    "Command",
    "ConnectCommand",
    "DisconnectCode",
    "ErrorCode",
    "HistoryCommand",
    "PingCommand",
    "PongCommand",
    "PresenceCommand",
    "ProtocolError",
    "ProtocolLimits",
    "PublishCommand",
    "RefreshCommand",
    "SubscribeCommand",
    "SubscribeOptions",
    "UnsubscribeCommand",
    "disconnect_push",
    "encode_command",
    "error_push",
    "error_reply",
    "history_result",
    "join_push",
    "leave_push",
    "member",
    "message_push",
    "parse_command",
    "reconnects",
    "reply",
    "resync_push",
    "subscribe_result",
    "unsubscribed_push",
]

SUBPROTOCOL = "nexios.v1"
"""The WebSocket subprotocol a client offers (and the server accepts) for version 1."""
