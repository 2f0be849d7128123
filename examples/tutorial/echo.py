"""Tutorial 1, "WebSocket Setup": an echo endpoint.

Run it::

    nexios run examples.tutorial.echo:app

``/ws`` answers each text message ``"Message received: <text>"``. When the client
leaves, ``Client disconnected`` is printed. A binary frame is refused with close code
1003 (unsupported data) and a reason that says to send text.
"""

from __future__ import annotations

from nexios import NexiosApp, WebSocketMessageTypeError
from nexios.websockets import WebSocket

__all__ = ["app"]

app = NexiosApp()


@app.ws_route("/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    try:
        # iter_text() ends when the client disconnects.
        async for data in ws.iter_text():
            await ws.send_text(f"Message received: {data}")
    except WebSocketMessageTypeError:
        await ws.close(code=1003, reason="This endpoint echoes text frames; send text.")
    print("Client disconnected")
