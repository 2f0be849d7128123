"""Tutorial 2, "WebSocket Routing": three ways to register a WebSocket route.

Run it::

    nexios run examples.tutorial.routing:app

Each route sends one text message that names it, then closes normally (1000):

- ``/chat-direct`` — a decorated handler (``@app.ws_route``): ``"direct"``;
- ``/chat`` — a ``WebsocketRoutes`` added to the app: ``"chat at /chat"``;
- ``/ws/chat`` and ``/ws/notifications`` — a ``WSRouter`` with the prefix ``/ws``,
  mounted on the app: ``"chat at /ws/chat"`` and ``"notifications"``.

Any other path is refused at the handshake with HTTP 403.
"""

from __future__ import annotations

from nexios import NexiosApp
from nexios.routing import WebsocketRoutes, WSRouter
from nexios.websockets import WebSocket

__all__ = ["app"]

app = NexiosApp()


async def chat_handler(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(f"chat at {ws.url.path}")
    await ws.close()


async def notification_handler(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("notifications")
    await ws.close()


# 1. A decorated handler.
@app.ws_route("/chat-direct")
async def chat_direct(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("direct")
    await ws.close()


# 2. A route object, for handlers defined elsewhere.
app.add_ws_route(WebsocketRoutes("/chat", chat_handler))

# 3. A router groups routes under one prefix.
router = WSRouter(prefix="/ws")
router.add_ws_route("/chat", chat_handler)
router.add_ws_route("/notifications", notification_handler)
app.mount_ws_router(router)
