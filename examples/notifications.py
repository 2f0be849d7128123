"""Practice exercise 2: a notification system — many clients, broadcasts, disconnections.

Run it::

    nexios run examples.notifications:app

- WebSocket ``/notifications``: each client joins the group ``notifications`` and is
  greeted with ``{"type": "welcome", "id": <channel id>, "clients": <count>}`` once it
  is in the group. A client may broadcast by sending ``{"broadcast": "text"}``.
- ``POST /notify`` with ``{"message": "text"}`` broadcasts from the server side and
  answers ``{"sent": true, "clients": <count>}`` (400 for a missing or empty message).
- ``GET /stats``: ``{"clients": <count>}`` — the group's presence, so with
  ``NEXIOS_CHANNELS_URL=redis://...`` it counts the clients of every process.

Every client receives ``{"type": "notification", "message": ..., "source": "http" |
"websocket"}``. A client that disconnects leaves the group by itself (the channel is
tied to its socket): nothing to clean up here. Bad input is answered with
``{"type": "error", "message": ...}`` and the connection stays open.
"""

from __future__ import annotations

from typing import Any

from nexios import HTTPException, InvalidJSONError, NexiosApp, Request, WebSocketMessageTypeError
from nexios.limits import Limits
from nexios.websockets import Channel, ChannelBox, WebSocket

__all__ = ["GROUP", "app"]

GROUP = "notifications"
MAX_MESSAGE = 1000

# Clients only listen here, so the idle timeout (no message from the client for 300 s
# closes with 1001) would drop them: turn it off for this push-only endpoint.
app = NexiosApp(title="Notifications", limits=Limits(idle_timeout=None))


def notification(message: str, source: str) -> dict[str, Any]:
    return {"type": "notification", "message": message, "source": source}


def check_message(value: Any) -> str | None:
    """The error for a message that is not a 1-1000 character string, else None."""
    if not isinstance(value, str) or not value.strip():
        return "the message must be a non-empty string"
    if len(value) > MAX_MESSAGE:
        return f"the message must be at most {MAX_MESSAGE} characters"
    return None


async def client_count() -> int:
    return len(await ChannelBox.presence(GROUP))


@app.ws_route("/notifications")
async def notifications(ws: WebSocket) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="json")
    await ChannelBox.add_channel_to_group(channel, GROUP)
    await ws.send_json({"type": "welcome", "id": channel.uuid, "clients": await client_count()})
    # A disconnect ends this loop with WebSocketDisconnect; the channel leaves the group.
    while True:
        try:
            data = await ws.receive_json()
        except (InvalidJSONError, WebSocketMessageTypeError):
            await ws.send_json({"type": "error", "message": 'send JSON text: {"broadcast": "..."}'})
            continue
        if not isinstance(data, dict) or "broadcast" not in data:
            await ws.send_json(
                {"type": "error", "message": 'unknown message; send {"broadcast": "..."}'}
            )
            continue
        problem = check_message(data["broadcast"])
        if problem is not None:
            await ws.send_json({"type": "error", "message": problem})
            continue
        await ChannelBox.group_send(GROUP, notification(data["broadcast"], "websocket"))


@app.post("/notify")
async def notify(request: Request) -> dict[str, Any]:
    body = await request.json()
    message = body.get("message") if isinstance(body, dict) else None
    problem = check_message(message)
    if problem is not None:
        raise HTTPException(400, f'send {{"message": "..."}}: {problem}')
    await ChannelBox.group_send(GROUP, notification(message, "http"))
    return {"sent": True, "clients": await client_count()}


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    return {"clients": await client_count()}
