"""Tutorial 1, "WebSocket Setup": an echo endpoint.

Run it::

    nexios run examples.tutorial.echo:app

``/ws`` answers each text message ``"Message received: <text>"``. When the client
leaves, ``Client disconnected`` is printed. A binary frame is refused with close code
1003 (unsupported data), reason "expected text frames".
"""

from __future__ import annotations

from nexios import NexiosApp
from nexios.websockets import WebSocket

__all__ = ["app"]

app = NexiosApp()


@app.ws_route("/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    # iter_text() ends when the client disconnects (or sends a binary frame: it then
    # closes the connection with 1003 itself).
    async for data in ws.iter_text():
        await ws.send_text(f"Message received: {data}")
    print("Client disconnected")
