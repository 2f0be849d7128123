"""The framework's own per-message path, driven in process (no sockets, no server).

``python -c "$(cat bench/metrics_inproc.py)" echo|fanout|fanout-frames N REPEATS``, run
from the root of the tree to measure (``bench.metrics_cost`` does this for each row),
prints ``{"ns": ...}``: the best of ``REPEATS`` runs, in ns per echo round trip or per
delivered copy.

- ``echo``: one connection to ``/echo`` of ``bench/app_nexios.py`` receives N messages
  and sends each back; the fake server's ``receive`` and ``send`` return at once, so the
  time is the framework's: routing aside, ``iter_text`` with its limiter and ``send_text``.
- ``fanout``: 1,000 members on ``/member`` and one publisher on ``/pub`` that receives N
  messages and broadcasts each (``ChannelBox.group_send``); the time runs until every
  copy reached the fake server's ``send`` (``AsgiSender``).
- ``fanout-frames``: the same, the members' scope offering the ``nexios.frames`` sink as
  ``nexios run`` does, so copies go through ``FrameSender`` and its flush.

Without sockets and a server around it, this path is a much smaller denominator than a
real server's, so the share metrics take of it is an upper bound of their share there;
and the best of several runs is steady on a machine other jobs share.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.app_nexios import app

PAYLOAD = "nexios bench echo payload 0123456789abcdef"
MEMBERS = 1000


def scope(path: str, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "scheme": "ws",
        "extensions": extensions or {},
    }


def feeder(count: int, pause_every: int = 0) -> Any:
    """A fake server's receive: connect, ``count`` text messages, then a disconnect;
    with ``pause_every``, it lets the event loop run after that many messages (as a
    server does between reads: members' senders get to write)."""
    message = {"type": "websocket.receive", "text": PAYLOAD}
    state = {"left": count, "connected": False}

    async def receive() -> dict[str, Any]:
        if not state["connected"]:
            state["connected"] = True
            return {"type": "websocket.connect"}
        if state["left"] == 0:
            return {"type": "websocket.disconnect", "code": 1000}
        state["left"] -= 1
        if pause_every and state["left"] % pause_every == 0:
            await asyncio.sleep(0)
        return message

    return receive


async def discard(message: dict[str, Any]) -> None:
    return None


async def echo(count: int) -> float:
    started = time.perf_counter()
    await app(scope("/echo"), feeder(count), discard)
    return (time.perf_counter() - started) / count


class Sink:
    """The ``nexios.frames`` extension of a server that writes at once."""

    def __init__(self, copies: list[int]) -> None:
        self.copies = copies

    def write(self, frame: bytes) -> bool:
        self.copies[0] += frame.count(PAYLOAD.encode())
        return True

    def buffered(self) -> int:
        return 0

    def abort(self) -> None:
        return None

    def on_writable(self, callback: Any) -> None:
        return None


async def fanout(count: int, frames: bool) -> float:
    copies = [0]

    async def counted(message: dict[str, Any]) -> None:
        if message.get("text") == PAYLOAD:
            copies[0] += 1

    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await app.startup()
    members = []
    for _ in range(MEMBERS):
        connected = asyncio.Event()

        async def member_receive(connected: asyncio.Event = connected) -> dict[str, Any]:
            if not connected.is_set():
                connected.set()
                return {"type": "websocket.connect"}
            await never
            raise AssertionError("unreachable")

        extensions = {"nexios.frames": Sink(copies)} if frames else {}
        members.append(
            asyncio.create_task(app(scope("/member", extensions), member_receive, counted))
        )
    while len(app.channels.groups.get("room", ())) < MEMBERS:
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    await app(scope("/pub"), feeder(count, pause_every=16), discard)
    while copies[0] < count * MEMBERS:
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    for task in members:
        task.cancel()
    await asyncio.gather(*members, return_exceptions=True)
    await app.shutdown()
    return elapsed / (count * MEMBERS)


async def main(kind: str, count: int, repeats: int) -> None:
    best = float("inf")
    for _ in range(repeats):
        if kind == "echo":
            seconds = await echo(count)
        else:
            seconds = await fanout(count, frames=kind == "fanout-frames")
        best = min(best, seconds)
    print(json.dumps({"ns": best * 1e9}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
