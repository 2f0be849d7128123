"""The growth app: members that join and leave on request, a publisher, a control socket.

Timings are taken in the server, around the public calls, and sent back to the client:

- ``/m/{group}``: a member. ``j`` joins ``group`` (``ChannelBox.add_channel_to_group``)
  and replies ``j <ns>``; ``l`` leaves it and replies ``l <ns>``.
- ``/pub``: each text message is broadcast to the group ``all`` (``group_send``).
- ``/ctl``: ``presence <group> <times>`` calls ``ChannelBox.presence(group)`` that many
  times and replies ``{"ns": [...], "members": n}``.

The per-message checks stay on; the per-address connection cap is lifted (one client
opens every socket) and the idle timeout is an hour, past any run.
"""

from __future__ import annotations

import time

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(limits=Limits(max_connections_per_client=None, idle_timeout=3600))
clock = time.perf_counter_ns


@app.ws_route("/m/{group}")
async def member(ws: WebSocket, group: str) -> None:
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="text")
    async for text in ws.iter_text():
        if text == "j":
            began = clock()
            await ChannelBox.add_channel_to_group(channel, group)
            await ws.send_text(f"j {clock() - began}")
        elif text == "l":
            began = clock()
            await ChannelBox.remove_channel_from_group(channel, group)
            await ws.send_text(f"l {clock() - began}")


@app.ws_route("/pub")
async def publisher(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ChannelBox.group_send("all", text)


@app.ws_route("/ctl")
async def control(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        _command, group, times = text.split()
        durations = []
        members = 0
        for _ in range(int(times)):
            began = clock()
            members = len(await ChannelBox.presence(group))
            durations.append(clock() - began)
        await ws.send_json({"ns": durations, "members": members})
