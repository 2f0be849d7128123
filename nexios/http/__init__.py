"""The HTTP side of nexios: requests, responses, static files and routing."""

from nexios.http.datastructures import URL, FormData, Headers, QueryParams, UploadFile
from nexios.http.request import Request
from nexios.http.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from nexios.http.routing import HTTPRouter, Route
from nexios.http.staticfiles import StaticFiles

__all__ = [
    "URL",
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
    "StaticFiles",
    "UploadFile",
]
