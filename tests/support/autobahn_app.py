"""Echo servers for the Autobahn conformance suite (``kosoku``); see docs/security.md.

- ``app``: nexios, every framework limit off (``Limits.unlimited()``), any origin: what
  the protocol layer does on its own.
- ``limited_app``: nexios with the default limits: what a default deployment answers.
- ``raw_app``: a bare ASGI echo, for the uvicorn baseline (``uvicorn ...:raw_app``).

Every route is ``/``; text comes back as text and binary as binary.
"""

from __future__ import annotations

from typing import Any

from nexios import NexiosApp
from nexios.limits import Limits
from nexios.websockets import WebSocket


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


app = NexiosApp(allowed_origins="*", limits=Limits.unlimited())
app.ws_route("/", echo)

limited_app = NexiosApp(allowed_origins="*")
limited_app.ws_route("/", echo)


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
