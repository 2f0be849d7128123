"""The nexios app: the same routes, written as the nexios docs teach.

Fan-out is ``ChannelBox.group_send``; ``NEXIOS_CHANNELS_URL=redis://...`` makes it
cross-process with no code change.

The default per-message checks (size, rate bucket, idle sweep) stay on, so their cost
is measured; only their bounds are raised, because the load generator opens thousands
of sockets from one address and sends thousands of messages a second on one.
"""

from __future__ import annotations

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(
    limits=Limits(messages_per_second=1e9, burst=10**9, max_connections_per_client=None)
)


@app.ws_route("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


@app.ws_route("/json")
async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    async for data in ws.iter_json():
        await ws.send_json(data)


@app.ws_route("/member")
async def member(ws: WebSocket) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="text")
    await ChannelBox.add_channel_to_group(channel, "room")
    async for _ in ws.iter_text():
        pass


@app.ws_route("/pub")
async def pub(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ChannelBox.group_send("room", text)
