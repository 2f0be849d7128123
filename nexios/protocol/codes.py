"""The protocol's numbered codes: errors (in replies) and disconnects (close codes).

See ``docs/protocol.md`` for when each is used and what a client does about it.
"""

from __future__ import annotations

import enum

from nexios.exceptions import ProtocolError

__all__ = ["DisconnectCode", "ErrorCode", "ProtocolError", "reconnects"]


class ErrorCode(enum.IntEnum):
    """Codes of ``error`` replies and pushes; they read like the HTTP statuses they resemble."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    UNKNOWN_GROUP = 404
    ALREADY_SUBSCRIBED = 409
    REMOVED = 410
    LIMIT_EXCEEDED = 413
    UNRECOVERABLE = 416
    TOKEN_EXPIRED = 419
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    UNAVAILABLE = 503

    @property
    def temporary(self) -> bool:
        """True when the same command may succeed if retried after a backoff."""
        return self in _TEMPORARY


_TEMPORARY = frozenset({ErrorCode.TOO_MANY_REQUESTS, ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})


class DisconnectCode(enum.IntEnum):
    """Codes of ``disconnect`` pushes, also used as the WebSocket close code.

    4000-4499: the client reconnects; 4500-4999: it does not.
    """

    RECONNECT = 4000
    TOKEN_EXPIRED = 4001
    CONNECT_TIMEOUT = 4002
    UNAUTHORIZED = 4500
    FORBIDDEN = 4501
    UNSUPPORTED_PROTOCOL = 4502
    BAD_REQUEST = 4503

    @property
    def reconnect(self) -> bool:
        """Whether a client should reconnect after this disconnect."""
        return reconnects(self)


def reconnects(code: int) -> bool:
    """Whether a client reconnects after a close with ``code`` (any WebSocket close code)."""
    return not 4500 <= code <= 4999
