"""Tutorial 5, "Error Handling": answer bad input, log it, close with the right code.

Run it::

    nexios run examples.tutorial.error_handling:app

``/chat`` answers each JSON message with ``{"status": "ok", "data": <the value>}``.
A message that is not JSON is logged (``Invalid JSON received: ...``, ERROR), answered
``{"error": "Invalid JSON format"}`` and the connection is closed with 1007; a binary
frame likewise, with ``{"error": "Send JSON as text frames"}`` and 1003. A normal
disconnect is logged at INFO.

An unexpected exception needs no handler here: nexios logs its traceback and closes
the connection with 1011 (internal error), as the lesson's catch-all does by hand.
"""

from __future__ import annotations

import logging

from nexios import InvalidJSONError, NexiosApp, WebSocketMessageTypeError
from nexios.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

app = NexiosApp()
logger = logging.getLogger(__name__)


@app.ws_route("/chat")
async def chat_handler(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            data = await ws.receive_json()
            await ws.send_json({"status": "ok", "data": data})
    except WebSocketDisconnect:
        logger.info("Client disconnected normally")
    except InvalidJSONError as error:
        logger.error("Invalid JSON received: %s", error)
        await ws.send_json({"error": "Invalid JSON format"})
        await ws.close(code=1007, reason="Invalid JSON format")
    except WebSocketMessageTypeError as error:
        logger.error("Binary frame received: %s", error)
        await ws.send_json({"error": "Send JSON as text frames"})
        await ws.close(code=1003, reason="Send JSON as text frames")
