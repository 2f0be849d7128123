"""Server frames: replies and pushes, as UTF-8 JSON bytes ready to send.

A ``message`` push is built once per message from pre-encoded JSON data and holds
nothing specific to one client, so the same bytes go to every subscriber::

    frame = message_push("room", b'{"text":"hi"}', seq=58, epoch="k3v9c2")
    # b'{"type":"message","group":"room","seq":58,"epoch":"k3v9c2","data":{"text":"hi"}}'

``data`` is embedded as it is (``orjson.Fragment``): never decoded, never re-encoded.
The caller vouches that it is valid JSON (it came from ``encoding.dumps`` or history).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from nexios.protocol.codes import DisconnectCode, ErrorCode, reconnects

__all__ = [
    "PING_PUSH",
    "disconnect_push",
    "error_push",
    "error_reply",
    "history_result",
    "join_push",
    "leave_push",
    "member",
    "message_push",
    "reply",
    "resync_push",
    "subscribe_result",
    "unsubscribed_push",
]

PING_PUSH = b'{"type":"ping"}'
"""The server's keepalive push; clients answer ``{"type":"pong"}``."""


def reply(command_id: int, result: Mapping[str, Any] | None = None) -> bytes:
    """A successful reply to command ``command_id``."""
    return orjson.dumps({"id": command_id, "result": result if result is not None else {}})


def error_reply(command_id: int, code: ErrorCode, message: str) -> bytes:
    """A refused command: ``{"id", "error": {"code", "message"}}``."""
    return orjson.dumps({"id": command_id, "error": {"code": int(code), "message": message}})


def error_push(code: ErrorCode, message: str) -> bytes:
    """An error about a frame whose ``id`` could not be read (so no reply is possible)."""
    return orjson.dumps({"type": "error", "code": int(code), "message": message})


def message_push(
    group: str, data: bytes, seq: int | None = None, epoch: str | None = None
) -> bytes:
    """A group message from pre-encoded JSON ``data``; ``seq``/``epoch`` for saved ones."""
    if seq is None:
        return orjson.dumps({"type": "message", "group": group, "data": orjson.Fragment(data)})
    return orjson.dumps(
        {
            "type": "message",
            "group": group,
            "seq": seq,
            "epoch": epoch,
            "data": orjson.Fragment(data),
        }
    )


def member(client_id: str, info: Any = None) -> dict[str, Any]:
    """A presence member as the protocol shows it: ``{"id", "info"}``."""
    return {"id": client_id, "info": info if info is not None else {}}


def join_push(group: str, client_id: str, info: Any = None) -> bytes:
    """A member joined ``group`` (sent to the group's presence watchers)."""
    return orjson.dumps({"type": "join", "group": group, "member": member(client_id, info)})


def leave_push(group: str, client_id: str, info: Any = None, reason: str = "left") -> bytes:
    """A member left ``group``: ``reason`` is left, disconnected, expired, evicted or shutdown."""
    return orjson.dumps(
        {"type": "leave", "group": group, "member": member(client_id, info), "reason": reason}
    )


def resync_push(group: str, epoch: str, seq: int, reason: str) -> bytes:
    """The client's position in ``group`` is void; messages go on after ``seq`` in ``epoch``.

    ``reason``: ``"epoch"`` (the history was lost) or ``"gap"`` (messages were missed
    and cannot be recovered).
    """
    return orjson.dumps(
        {"type": "resync", "group": group, "epoch": epoch, "seq": seq, "reason": reason}
    )


def unsubscribed_push(
    group: str, code: ErrorCode, reason: str, resubscribe: bool | None = None
) -> bytes:
    """The server ended a subscription; ``resubscribe`` defaults to ``code.temporary``."""
    again = code.temporary if resubscribe is None else resubscribe
    return orjson.dumps(
        {
            "type": "unsubscribed",
            "group": group,
            "code": int(code),
            "reason": reason,
            "resubscribe": again,
        }
    )


def disconnect_push(code: DisconnectCode | int, reason: str) -> bytes:
    """Sent just before closing the socket with the same ``code``."""
    return orjson.dumps(
        {"type": "disconnect", "code": int(code), "reason": reason, "reconnect": reconnects(code)}
    )


def subscribe_result(
    epoch: str,
    seq: int,
    *,
    complete: bool = True,
    recovered: int = 0,
    presence: Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result of ``subscribe`` (and each entry of ``connect``'s ``groups``)."""
    result: dict[str, Any] = {
        "epoch": epoch,
        "seq": seq,
        "complete": complete,
        "recovered": recovered,
    }
    if presence is not None:
        result["presence"] = list(presence)
    return result


def history_result(
    messages: Iterable[tuple[int, bytes]], epoch: str, seq: int, *, complete: bool = True
) -> dict[str, Any]:
    """The result of ``history`` from ``(seq, pre-encoded JSON data)`` pairs, oldest first."""
    return {
        "messages": [{"seq": number, "data": orjson.Fragment(data)} for number, data in messages],
        "epoch": epoch,
        "seq": seq,
        "complete": complete,
    }
