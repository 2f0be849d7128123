"""python-socketio: ``enter_room`` on connect, ``emit(..., room=...)`` on each message.

``AsyncRedisManager`` links the processes, as its docs show; the ASGI app runs on
uvicorn. Clients connect to the default namespace with ``auth={"room": ...}``; the
namespace CONNECT reply (sent after the connect handler ran) tells them they are in.
Engine.IO's defaults hold (ping every 25 s); ``BENCH_SIO_PING_INTERVAL`` shortens
the ping interval and timeout, so a short run proves the client answers pings.
"""

from __future__ import annotations

import os
from typing import Any

import socketio

_PING = os.environ.get("BENCH_SIO_PING_INTERVAL")
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(os.environ["BENCH_REDIS_URL"]),
    transports=["websocket"],
    **({"ping_interval": float(_PING), "ping_timeout": float(_PING)} if _PING else {}),
)
rooms: dict[str, str] = {}


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None:
    rooms[sid] = room = str(auth["room"])
    await sio.enter_room(sid, room)


@sio.event
async def disconnect(sid: str, *_reason: Any) -> None:
    rooms.pop(sid, None)


@sio.on("msg")
async def msg(sid: str, data: str) -> None:
    await sio.emit("msg", data, room=rooms[sid])


app = socketio.ASGIApp(sio)
