"""Tutorial 4, "Channel System": a ``Channel`` wraps each connection to a room.

Run it::

    nexios run examples.tutorial.channel:app

``/chat/{room_id}`` answers each JSON message with ``{"message": <the value>}``, sent
through the connection's ``Channel`` (JSON payloads; idle for 30 minutes, it counts as
expired: ``channel.is_expired()``). When the client leaves, ``Client disconnected from
room <room_id>`` is printed. A message that is not JSON, or a binary frame, is answered
``{"error": ...}`` and the connection stays open.

Broadcasting to everyone in a room is the next lesson: ``ChannelBox`` groups (see
``examples/chat``).
"""

from __future__ import annotations

from nexios import InvalidJSONError, NexiosApp, WebSocketMessageTypeError
from nexios.websockets import Channel, PayloadTypeEnum, WebSocket, WebSocketDisconnect

__all__ = ["app"]

app = NexiosApp()


@app.ws_route("/chat/{room_id}")
async def chat_room(ws: WebSocket, room_id: str) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type=PayloadTypeEnum.JSON, expires=30 * 60)
    try:
        while True:
            try:
                data = await ws.receive_json()
            except InvalidJSONError as error:
                await channel.send({"error": str(error)})
                continue
            except WebSocketMessageTypeError:
                await channel.send({"error": "Send JSON as text frames, not binary."})
                continue
            await channel.send({"message": data})
    except WebSocketDisconnect:
        print(f"Client disconnected from room {room_id}")
