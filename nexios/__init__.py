"""nexios: real-time web applications on ASGI.

WebSockets with routing, channels and groups, message history and presence — in one
process by default, across processes and machines with ``NEXIOS_CHANNELS_URL=redis://``.
"""

from nexios.application import NexiosApp
from nexios.events import EventEmitter
from nexios.exceptions import (
    BackendUnavailableError,
    ChannelError,
    ConfigurationError,
    GroupAccessDenied,
    HistoryStoreError,
    HTTPException,
    InvalidJSONError,
    NexiosError,
    ProtocolError,
    WebSocketDisconnect,
    WebSocketError,
    WebSocketMessageTypeError,
    WebSocketStateError,
)
from nexios.http import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    StaticFiles,
)
from nexios.limits import Limits
from nexios.routing import WebsocketRoutes, WSRouter
from nexios.security import AuthError
from nexios.websockets import (
    Channel,
    ChannelBox,
    PayloadTypeEnum,
    WebSocket,
    WebSocketConsumer,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BackendUnavailableError",
    "Channel",
    "ChannelBox",
    "ChannelError",
    "ConfigurationError",
    "EventEmitter",
    "FileResponse",
    "GroupAccessDenied",
    "HTMLResponse",
    "HTTPException",
    "HistoryStoreError",
    "InvalidJSONError",
    "JSONResponse",
    "Limits",
    "NexiosApp",
    "NexiosError",
    "PayloadTypeEnum",
    "PlainTextResponse",
    "ProtocolError",
    "RedirectResponse",
    "Request",
    "Response",
    "StaticFiles",
    "WSRouter",
    "WebSocket",
    "WebSocketConsumer",
    "WebSocketDisconnect",
    "WebSocketError",
    "WebSocketMessageTypeError",
    "WebSocketStateError",
    "WebsocketRoutes",
    "__version__",
]
