"""Fan-out of saved messages (``save_history=True``), for the ``saved`` scenarios.

Importable without the ``bench`` package (``PYTHONPATH=bench/standalone``), so that
``bench.run --baseline DIR`` can serve it with an earlier checkout's nexios: the same
app, before and after a change. Members join ``room``; each text frame sent to ``/pub``
is saved and broadcast.
"""

from __future__ import annotations

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(
    limits=Limits(messages_per_second=1e9, burst=10**9, max_connections_per_client=None)
)


@app.ws_route("/member")
async def member(ws: WebSocket) -> None:
    await ws.accept()
    await ChannelBox.add_channel_to_group(Channel(websocket=ws, payload_type="text"), "room")
    async for _ in ws.iter_text():
        pass


@app.ws_route("/pub")
async def pub(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ChannelBox.group_send("room", text, save_history=True)
