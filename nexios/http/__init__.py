"""The HTTP side of nexios: requests, responses, streaming, static files and routing."""

from nexios.http.background import BackgroundTask, BackgroundTasks
from nexios.http.datastructures import URL, FormData, Headers, QueryParams, UploadFile
from nexios.http.request import Request
from nexios.http.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from nexios.http.routing import HTTPRouter, Route
from nexios.http.sse import EventSourceResponse, ServerSentEvent, last_event_id
from nexios.http.staticfiles import StaticFiles

__all__ = [
    "URL",
    "BackgroundTask",
    "BackgroundTasks",
    "EventSourceResponse",
    "FileResponse",
    "FormData",
    "HTMLResponse",
    "HTTPRouter",
    "Headers",
    "JSONResponse",
    "PlainTextResponse",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "Response",
    "Route",
    "ServerSentEvent",
    "StaticFiles",
    "StreamingResponse",
    "UploadFile",
    "last_event_id",
]
