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


@app.ws_route("/send/{name}")
async def send_only(ws: WebSocket, name: str) -> None:
    """Publishes each text frame to the group without being a member (no copies back)."""
    await ws.accept()
    async for text in ws.iter_text():
        await ChannelBox.group_send(name, text)
        _track_peak(name)
    await ws.close()


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
    for channel in app.channels.local_members(name):
        if channel.sender is not None:
            _peak_queued_bytes = max(_peak_queued_bytes, channel.sender.queued_bytes)


@app.get("/debug/{name}")
async def debug(name: str) -> dict[str, Any]:
    members = app.channels.local_members(name)
    return {
        "members": len(members),
        "frame_once": any(c.sender is not None and c.sender.kind == "frames" for c in members),
        "evictions": app.channels.stats().evictions,
        "dropped": app.channels.stats().dropped,
        "queued_messages": app.channels.stats().queued_messages,
        "peak_queued_bytes": _peak_queued_bytes,
        "max_bytes": app.channels.settings.outbox.max_bytes,
        "leave_reasons": sorted(set(_leave_reasons)),
    }
