"""A chat-like app for the dashboard tests: rooms whose members are named.

``NEXIOS_DASHBOARD_TOKEN`` turns the dashboard on and ``NEXIOS_CHANNELS_URL`` shares
rooms between processes, as in a deployment; ``/room/{name}?user=...`` joins a room and
every text message is broadcast to it.
"""

from __future__ import annotations

from typing import Any

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits


def make_app(**options: Any) -> NexiosApp:
    """The app, with ``NexiosApp`` options (``dashboard=``, ``channels_url=``...)."""
    options.setdefault("limits", Limits(max_connections_per_client=None))
    made = NexiosApp(**options)

    @made.ws_route("/room/{name}")
    async def room(ws: WebSocket, name: str) -> None:
        await ws.accept()
        user = ws.query_params.get("user", "someone")
        channel = Channel(ws, payload_type="text", metadata={"name": user})
        await ChannelBox.add_channel_to_group(channel, name)
        await ws.send_text("in")
        async for text in ws.iter_text():
            await ChannelBox.group_send(name, text)

    return made


app = make_app()
