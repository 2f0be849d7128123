"""uvicorn in the test's own event loop, on one of nexios's wires.

>>> async with serve_app(app, wire="picows") as url:
...     async with websockets.asyncio.client.connect(url) as ws: ...

For tests that need to look inside the server (the frame sink, the scope) or time
things precisely; ``tests.support.server.serve`` runs ``nexios run`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from nexios.server import GuardedHttpToolsProtocol, NexiosWebSocketProtocol

__all__ = ["WIRE_CLASSES", "WIRE_NAMES", "App", "serve_app", "wire_class"]

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

WIRE_NAMES = ["picows", "sansio"] if importlib.util.find_spec("picows") else ["sansio"]
"""The WebSocket wires of this installation, for ``pytest.mark.parametrize``."""

WIRE_CLASSES = {
    "picows": "nexios.server:PicowsWebSocketProtocol",
    "sansio": "nexios.server:NexiosWebSocketProtocol",
}

_TIMEOUT = 10.0


def wire_class(name: str) -> Any:
    """The protocol class: ``picows``, ``sansio``, or ``stock`` (uvicorn's own, to show
    what nexios's wires fix)."""
    if name == "sansio":
        return NexiosWebSocketProtocol
    if name == "stock":
        return WebSocketsSansIOProtocol
    from nexios.server import PicowsWebSocketProtocol

    return PicowsWebSocketProtocol


@contextlib.asynccontextmanager
async def serve_app(
    app: App, *, wire: str, http: Any = GuardedHttpToolsProtocol, **options: Any
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on this loop with the named wire; yield its ws:// URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options.setdefault("ws_per_message_deflate", False)
    options.setdefault("lifespan", "off")
    options.setdefault("log_level", "warning")
    config = uvicorn.Config(app, ws=wire_class(wire), http=http, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        async with asyncio.timeout(_TIMEOUT):
            await task
        sock.close()
