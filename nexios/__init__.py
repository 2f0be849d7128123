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
    NoMatchFound,
    ProtocolError,
    WebSocketDisconnect,
    WebSocketError,
    WebSocketMessageTypeError,
    WebSocketStateError,
)
from nexios.http import (
    BackgroundTask,
    BackgroundTasks,
    EventSourceResponse,
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    ServerSentEvent,
    StaticFiles,
    StreamingResponse,
    UploadFile,
)
from nexios.limits import Limits
from nexios.middleware import Middleware
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
    "BackgroundTask",
    "BackgroundTasks",
    "Channel",
    "ChannelBox",
    "ChannelError",
    "ConfigurationError",
    "EventEmitter",
    "EventSourceResponse",
    "FileResponse",
    "GroupAccessDenied",
    "HTMLResponse",
    "HTTPException",
    "HistoryStoreError",
    "InvalidJSONError",
    "JSONResponse",
    "Limits",
    "Middleware",
    "NexiosApp",
    "NexiosError",
    "NoMatchFound",
    "PayloadTypeEnum",
    "PlainTextResponse",
    "ProtocolError",
    "RedirectResponse",
    "Request",
    "Response",
    "ServerSentEvent",
    "StaticFiles",
    "StreamingResponse",
    "UploadFile",
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
