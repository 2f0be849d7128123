"""The growth app: members that join and leave on request, a publisher, a control socket.

Timings are taken in the server, around the public calls, and sent back to the client:

- ``/m/{group}``: a member. ``j`` joins ``group`` (``ChannelBox.add_channel_to_group``)
  and replies ``j <ns>``; ``l`` leaves it and replies ``l <ns>``.
- ``/pub``: each text message is broadcast to the group ``all`` (``group_send``).
- ``/ctl``: ``presence <group> <times>`` calls ``ChannelBox.presence(group)`` that many
  times and replies ``{"ns": [...], "members": n}``; ``gc`` replies with the cyclic
  garbage collector's pauses so far, per generation (count, total and longest, in ns):
  a full collection walks every live object, so it grows with the members. ``objects``
  replies with the number of objects the collector tracks, and the most common types.

The per-message checks stay on; the per-address connection cap is lifted (one client
opens every socket) and the idle timeout is an hour, past any run.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

from nexios import Channel, ChannelBox, NexiosApp, WebSocket
from nexios.limits import Limits

app = NexiosApp(limits=Limits(max_connections_per_client=None, idle_timeout=3600))
clock = time.perf_counter_ns
gc_pauses: dict[int, list[int]] = {0: [0, 0, 0], 1: [0, 0, 0], 2: [0, 0, 0]}
_gc_started = [0]


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = clock()
        return
    pause = clock() - _gc_started[0]
    entry = gc_pauses[info["generation"]]
    entry[0] += 1
    entry[1] += pause
    entry[2] = max(entry[2], pause)


gc.callbacks.append(_time_gc)


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
        if text == "gc":
            await ws.send_json({str(gen): entry for gen, entry in gc_pauses.items()})
            continue
        if text == "objects":
            tracked = gc.get_objects()
            top = Counter(type(item).__qualname__ for item in tracked).most_common(25)
            await ws.send_json({"tracked": len(tracked), "top": top})
            continue
        _command, group, times = text.split()
        durations = []
        members = 0
        for _ in range(int(times)):
            began = clock()
            members = len(await ChannelBox.presence(group))
            durations.append(clock() - began)
        await ws.send_json({"ns": durations, "members": members})
