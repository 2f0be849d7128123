"""nexios: a room handler joining a ChannelBox group, ``group_send`` on each message.

Served by ``nexios run bench.rooms.app_nexios:app`` with ``NEXIOS_CHANNELS_URL`` set, as
the docs teach. ``joined`` tells the client the member is in the room. The per-message
checks stay on at their defaults; only the per-address connection cap is lifted,
because the load generator opens every socket from 127.0.0.1.
"""

from __future__ import annotations

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(limits=Limits(max_connections_per_client=None))


@app.ws_route("/room/{room}")
async def room(ws: WebSocket, room: str) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="text")
    await ChannelBox.add_channel_to_group(channel, room)
    await ws.send_text("joined")
    async for text in ws.iter_text():
        await ChannelBox.group_send(room, text)
