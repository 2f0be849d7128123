"""A group app for fan-out tests over real sockets.

``/room/{name}``: every member joins the group; a text frame from a member is broadcast
to the group as-is. ``GET /debug/{name}`` reports members, evictions and the largest
outbox seen, so tests can check bounds from outside the process.
"""

from __future__ import annotations

from typing import Any

from nexios import NexiosApp
from nexios.limits import Limits
from nexios.websockets import Channel, ChannelBox, WebSocket

app = NexiosApp(limits=Limits(max_message_size=None, max_connections_per_client=None))
_peak_queued_bytes = 0
_leave_reasons: list[str] = []


@app.events.on("channel.leave")
def record_leave(event: dict[str, Any]) -> None:
    _leave_reasons.append(event["reason"])


@app.ws_route("/room/{name}")
async def room(ws: WebSocket, name: str) -> None:
    await ws.accept()
    channel = Channel(ws, payload_type="text")
    await ChannelBox.add_channel_to_group(channel, name)
    await ws.send_text("joined")
    async for text in ws.iter_text():
        await ChannelBox.group_send(name, text)
        _track_peak(name)


@app.ws_route("/ordered/{name}")
async def ordered(ws: WebSocket, name: str) -> None:
    """Several broadcasts and then a direct reply, all in one event-loop iteration."""
    await ws.accept()
    await ChannelBox.add_channel_to_group(Channel(ws, payload_type="text"), name)
    async for text in ws.iter_text():
        for i in range(3):
            await ChannelBox.group_send(name, f"{text}-{i}")
        await ws.send_text(f"{text}-direct")


def _track_peak(name: str) -> None:
    global _peak_queued_bytes
    hub = ChannelBox._hub_if_running()
    if hub is None:
        return
    for channel in hub.local_members(name):
        if channel.outbox is not None:
            _peak_queued_bytes = max(_peak_queued_bytes, channel.outbox.queued_bytes)
        if channel.sink is not None:
            _peak_queued_bytes = max(_peak_queued_bytes, channel.sink.buffered())


@app.get("/debug/{name}")
async def debug(name: str) -> dict[str, Any]:
    hub = ChannelBox._get_hub()
    return {
        "members": len(hub.local_members(name)),
        "frame_once": any(c.sink is not None for c in hub.local_members(name)),
        "evictions": hub.evictions,
        "peak_queued_bytes": _peak_queued_bytes,
        "max_bytes": hub.settings.outbox.max_bytes,
        "leave_reasons": sorted(set(_leave_reasons)),
    }
