"""The raw ASGI baseline: no framework, the least work an app can do per message.

Routes: ``/echo`` (text echo), ``/json`` (stdlib ``json`` decode + encode),
``/member`` (joins the fan-out set), ``/pub`` (each text message is sent to every
member, awaiting each member's ``send`` in turn).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]

members: dict[int, Send] = {}


async def _accept(receive: Any, send: Send) -> bool:
    message = await receive()
    if message["type"] != "websocket.connect":
        return False
    await send({"type": "websocket.accept"})
    return True


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if not await _accept(receive, send):
        return
    path = scope["path"]
    if path == "/echo":
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "text": message["text"]})
    elif path == "/json":
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            data = json.loads(message["text"])
            await send({"type": "websocket.send", "text": json.dumps(data)})
    elif path == "/member":
        key = id(send)
        members[key] = send
        try:
            while (await receive())["type"] == "websocket.receive":
                pass
        finally:
            members.pop(key, None)
    elif path == "/pub":
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            out = {"type": "websocket.send", "text": message["text"]}
            for member_send in list(members.values()):
                with contextlib.suppress(OSError):  # gone: its own handler cleans up
                    await member_send(out)
