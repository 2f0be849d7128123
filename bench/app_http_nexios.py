"""nexios for the HTTP benchmark, as its docs teach.

``app``: ``/json`` and ``/items/{item_id}`` (an ``int`` by annotation); ``app_mw``:
the same behind the three pure-ASGI middleware of ``bench.http_middleware``;
``app_fmw``: behind three ``@app.middleware("http")`` functions that add a header each.
"""

from __future__ import annotations

from bench.http_middleware import STACK
from nexios import NexiosApp
from nexios.http import Request, Response
from nexios.middleware import CallNext, Middleware


def build(app: NexiosApp) -> NexiosApp:
    @app.get("/json")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    return app


def _tag(app: NexiosApp, name: str) -> None:
    @app.middleware("http")
    async def tag(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers[f"x-{name}"] = "1"
        return response


app = build(NexiosApp())
app_mw = build(NexiosApp(middleware=[Middleware(cls) for cls in STACK]))
app_fmw = build(NexiosApp())
for _name in ("c", "b", "a"):  # the last added is the outermost, as in Starlette's list
    _tag(app_fmw, _name)
