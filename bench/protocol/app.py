"""The app the protocol benchmark serves: the endpoint and a plain member, same group_send.

- ``/connect``: ``app.channels_endpoint`` (no hooks). Client publishes to ``saved:*``
  groups are saved to history; others are not.
- ``/member?group=g``: a plain member, as the docs teach (``Channel(ws)`` in a group).
- ``/pub?group=g``: each text frame is ``ChannelBox.group_send(group, text)``.
- ``/loop?group=g``: a plain member of ``g`` whose every text frame is sent to ``g``:
  publishing and receiving one's own message without the protocol (its baseline).

The per-message checks stay on with raised bounds (one address, many sockets, many
messages a second), as in ``bench/app_nexios.py``.
"""

from __future__ import annotations

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(
    limits=Limits(messages_per_second=1e9, burst=10**9, max_connections_per_client=None)
)
app.channels_endpoint("/connect", history=lambda group: group.startswith("saved:"))


@app.ws_route("/member")
async def member(ws: WebSocket) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="text")
    await ChannelBox.add_channel_to_group(channel, ws.query_params.get("group") or "fan")
    async for _ in ws.iter_text():
        pass


@app.ws_route("/pub")
async def pub(ws: WebSocket) -> None:
    await ws.accept()
    group = ws.query_params.get("group") or "fan"
    async for text in ws.iter_text():
        await ChannelBox.group_send(group, text)


@app.ws_route("/loop")
async def loop(ws: WebSocket) -> None:
    await ws.accept()
    group = ws.query_params.get("group") or "pipe"
    await ChannelBox.add_channel_to_group(Channel(websocket=ws, payload_type="text"), group)
    async for text in ws.iter_text():
        await ChannelBox.group_send(group, text)
