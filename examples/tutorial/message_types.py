"""Tutorial 3, "Message Types and Handling": a text, a JSON and a binary message, in turn.

Run it::

    nexios run examples.tutorial.message_types:app

``/chat`` expects three messages in a cycle, for as long as the client stays:

1. a text frame, answered ``"Echo: <text>"``;
2. a JSON text frame, answered ``{"status": "received", "data": <the value>}``;
3. a binary frame, sent back unchanged.

A frame of the wrong type closes the connection with 1003 and a frame that is not JSON
with 1007; the close reason says what was expected.
"""

from __future__ import annotations

from nexios import InvalidJSONError, NexiosApp, WebSocketMessageTypeError
from nexios.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

app = NexiosApp()
TURN = "Send a text frame, a JSON text frame and a binary frame, in turn."


@app.ws_route("/chat")
async def chat_handler(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            text = await ws.receive_text()
            await ws.send_text("Echo: " + text)
            data = await ws.receive_json()
            await ws.send_json({"status": "received", "data": data})
            binary = await ws.receive_bytes()
            await ws.send_bytes(binary)
    except WebSocketDisconnect:
        print("Connection closed")
    except WebSocketMessageTypeError:
        await ws.close(code=1003, reason=TURN)
    except InvalidJSONError:
        await ws.close(code=1007, reason="The second message of each turn must be JSON.")
