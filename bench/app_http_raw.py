"""The raw ASGI baseline for the HTTP benchmark: hand-written routing, stdlib ``json``.

``app``: ``/json`` and ``/items/{int}``; ``app_mw``: the same behind the three
middleware of ``bench.http_middleware``.
"""

from __future__ import annotations

import json
from typing import Any

from bench.http_middleware import STACK

_JSON = json.dumps({"hello": "world"}).encode()


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path: str = scope["path"]
    if path == "/json":
        await _respond(send, 200, _JSON)
        return
    if path.startswith("/items/"):
        rest = path[7:]
        if rest.isdigit():
            await _respond(send, 200, json.dumps({"item_id": int(rest)}).encode())
            return
    await _respond(send, 404, b'{"detail":"Not Found"}')


app_mw: Any = app
for _middleware in reversed(STACK):
    app_mw = _middleware(app_mw)
