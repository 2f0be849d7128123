"""Every error the framework raises, under one root.

::

    NexiosError
    ├── ConfigurationError (also TypeError)   bad registration, bad setting or URL
    ├── HTTPException                          abort an HTTP handler with a status
    ├── NoMatchFound (also LookupError)        url_for(): no route by that name and params
    ├── WebSocketError
    │   ├── WebSocketDisconnect                the peer is gone (carries the close code)
    │   ├── WebSocketStateError (also RuntimeError)   the socket is used out of order
    │   ├── WebSocketMessageTypeError (also TypeError) text expected, bytes arrived (or back)
    │   └── InvalidJSONError (also ValueError)  a frame that is not valid JSON
    ├── ChannelError
    │   ├── BackendUnavailableError            the broker (Redis) cannot be reached
    │   ├── HistoryStoreError                  the history store failed (sqlite, Redis)
    │   └── GroupAccessDenied (also PermissionError)  a join refused by the group policy
    └── ProtocolError (also ValueError)        a client-protocol command refused, with its
                                               numbered code (docs/protocol.md)

Messages say what was expected, what happened, and what to do about it.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "BackendUnavailableError",
    "ChannelError",
    "ConfigurationError",
    "GroupAccessDenied",
    "HTTPException",
    "HistoryStoreError",
    "InvalidJSONError",
    "NexiosError",
    "NoMatchFound",
    "ProtocolError",
    "WebSocketDisconnect",
    "WebSocketError",
    "WebSocketMessageTypeError",
    "WebSocketStateError",
]


class NexiosError(Exception):
    """Root of every exception raised by nexios."""


class ConfigurationError(NexiosError, TypeError):
    """Something was registered or configured wrongly; raised as early as possible."""


class HTTPException(NexiosError):
    """Raise inside an HTTP handler to answer with ``status_code`` and ``detail``."""

    def __init__(
        self, status_code: int, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if detail is None:
            try:
                detail = HTTPStatus(status_code).phrase
            except ValueError:
                detail = "Error"
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


class NoMatchFound(NexiosError, LookupError):
    """``url_for()`` found no route with that name taking exactly those parameters."""


class WebSocketError(NexiosError):
    """Base of errors about a WebSocket connection."""


class WebSocketDisconnect(WebSocketError):
    """The client is gone. Raised by every receive (and send) after the disconnect."""

    def __init__(self, code: int = 1000, reason: str | None = "") -> None:
        self.code = code
        self.reason = reason or ""
        super().__init__(
            f"WebSocket disconnected with code {code}" + (f": {reason}" if reason else "")
        )


class WebSocketStateError(WebSocketError, RuntimeError):
    """The socket was used in a state that does not allow it (e.g. receive before accept)."""


class WebSocketMessageTypeError(WebSocketError, TypeError):
    """A frame of the other kind arrived: bytes where text was expected, or text for bytes."""


class InvalidJSONError(WebSocketError, ValueError):
    """A frame was not valid JSON. The connection stays usable."""


class ChannelError(NexiosError):
    """Base of errors from channels, groups, history and presence."""


class BackendUnavailableError(ChannelError):
    """The channel layer's broker cannot be reached; nothing was sent."""


class HistoryStoreError(ChannelError):
    """The history store failed to read or write."""


class GroupAccessDenied(ChannelError, PermissionError):
    """The group policy refused to let a channel join a group."""


class ProtocolError(NexiosError, ValueError):
    """A client-protocol command refused, with the numbered ``code`` of ``docs/protocol.md``.

    The server's codec raises it for a malformed frame, endpoint hooks raise it to refuse
    a command (``ProtocolError(403, "members only")``), and the Python client raises it
    for an ``error`` reply (and the local codes 408 and 499). ``command_id`` is the
    command's ``id`` when known; ``field`` names the offending field.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        command_id: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(f"{int(code)} {_code_name(code)}: {message}")
        self.code = code
        self.message = message
        self.command_id = command_id
        self.field = field


def _code_name(code: int) -> str:
    name = getattr(code, "name", None)  # a protocol ErrorCode
    if isinstance(name, str):
        return name.lower().replace("_", " ")
    try:
        return HTTPStatus(code).phrase.lower()
    except ValueError:
        return "error"
