"""Starlette for the HTTP benchmark, as its docs teach.

``app``: ``/json`` and ``/items/{item_id:int}``; ``app_mw``: the same behind the three
pure-ASGI middleware of ``bench.http_middleware``; ``app_fmw``: behind three
``BaseHTTPMiddleware`` (Starlette's function-style middleware) that add a header each.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.http_middleware import STACK


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"item_id": request.path_params["item_id"]})


ROUTES = [Route("/json", hello), Route("/items/{item_id:int}", item)]


def _tagger(name: str) -> Any:
    class Tag(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            response = await call_next(request)
            response.headers[f"x-{name}"] = "1"
            return response

    return Tag


app = Starlette(routes=ROUTES)
app_mw = Starlette(routes=ROUTES, middleware=[Middleware(cls) for cls in STACK])
app_fmw = Starlette(
    routes=ROUTES, middleware=[Middleware(_tagger(name)) for name in ("a", "b", "c")]
)
