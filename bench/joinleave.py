"""Join/leave cost, in process: CPU time to add N channels to a group, then remove them.

``python -m bench.joinleave N`` prints one JSON line: microseconds of CPU per member for
adding and for removing, for three registries holding the same N objects:

- ``set``: a plain ``set`` (``add`` / ``discard``), the floor;
- ``async-set``: the same set behind ``async def`` methods, awaited per member — the
  call shape of any async group API, with no other work;
- ``nexios``: ``ChannelBox.add_channel_to_group`` / ``remove_channel_from_group`` on
  the memory layer, with real ``Channel`` objects over fake sockets (public API only).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from typing import Any

from nexios import Channel, ChannelBox, NexiosApp, WebSocket


async def _receive() -> dict[str, Any]:
    return {"type": "websocket.disconnect", "code": 1000}


async def _send(message: dict[str, Any]) -> None:
    return None


def _channels(count: int) -> list[Channel]:
    return [
        Channel(
            websocket=WebSocket({"type": "websocket", "path": "/ws"}, _receive, _send),
            payload_type="json",
        )
        for _ in range(count)
    ]


def _per_member(seconds: float, count: int) -> float:
    return seconds / count * 1e6


class AsyncSet:
    def __init__(self) -> None:
        self.members: set[Any] = set()

    async def add(self, item: Any) -> None:
        self.members.add(item)

    async def remove(self, item: Any) -> None:
        self.members.discard(item)


async def measure(count: int) -> dict[str, dict[str, float]]:
    clock = time.process_time
    channels = _channels(count)
    out: dict[str, dict[str, float]] = {}

    gc.collect()
    plain: set[Any] = set()
    start = clock()
    for channel in channels:
        plain.add(channel)
    added = clock()
    for channel in channels:
        plain.discard(channel)
    out["set"] = {
        "add_us": _per_member(added - start, count),
        "remove_us": _per_member(clock() - added, count),
    }

    gc.collect()
    registry = AsyncSet()
    start = clock()
    for channel in channels:
        await registry.add(channel)
    added = clock()
    for channel in channels:
        await registry.remove(channel)
    out["async-set"] = {
        "add_us": _per_member(added - start, count),
        "remove_us": _per_member(clock() - added, count),
    }

    app = NexiosApp(channels_url="memory://")
    async with app.channels.activated():
        await ChannelBox.add_channel_to_group(_channels(1)[0], "warmup")
        gc.collect()
        start = clock()
        for channel in channels:
            await ChannelBox.add_channel_to_group(channel, "room")
        added = clock()
        for channel in channels:
            await ChannelBox.remove_channel_from_group(channel, "room")
        out["nexios"] = {
            "add_us": _per_member(added - start, count),
            "remove_us": _per_member(clock() - added, count),
        }
        await ChannelBox.shutdown()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1])))))
