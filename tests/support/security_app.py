"""Apps for the security, limits, shutdown and soak tests, served over real sockets.

``app``: the admission matrix. Origins allowlisted: ``https://example.com`` only; the auth
hook takes a token from ``Authorization: Bearer``, the ``token`` query parameter, the
``session`` cookie or the ``Sec-WebSocket-Protocol`` ("bearer", token): ``valid`` and
``admin`` are users, ``expired`` is refused with 401, ``banned`` with 403, none with 401.

- ``/ws``: echo, answering the first message with the user's name.
- ``/crash``: accepts, then raises (1011).
- ``/public``: ``auth=False``, any origin: echo.
- ``/room/{name}``: joins the group (group policy: only ``admin`` may join ``admin-*``).

``same_origin_app``: the default origin policy, no auth; ``/ws`` echoes.

``room_app``: the rooms used by the limits, shutdown and soak tests (limits from env):

- ``/echo``: text echo; ``/json``: JSON echo (invalid JSON answered, socket kept);
- ``/consumer/text`` and ``/consumer/json``: consumers with those encodings (1003/1007);
- ``/room/{name}``: joins the group (metadata ``{"n": query n}``), says ``joined``; a
  text ``crash`` makes the handler raise, anything else is broadcast to the group;
- ``/stubborn``: accepts and then ignores everything, never receiving (shutdown bound);
- ``GET /debug/counts``: open sockets, groups, channels, tasks and RSS of the process;
  ``GET /debug/presence/{name}``; ``POST /debug/flood/{name}?count=&size=`` broadcasts;
  ``GET /debug/peak``: the largest queued bytes seen for any member, the hub's eviction
  count, and when members of ``stall*`` groups left and since when their backlog had
  passed the hub's 64 KiB "stalled" mark (``time.monotonic()``, comparable across
  processes on Linux).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from nexios import NexiosApp, Request
from nexios.exceptions import GroupAccessDenied, InvalidJSONError
from nexios.security import AuthError, subprotocol_token
from nexios.websockets import Channel, ChannelBox, WebSocket, WebSocketConsumer

ALLOWED_ORIGIN = "https://example.com"
USERS = {"valid": "ada", "admin": "root"}


async def token_auth(ws: WebSocket) -> str | None:
    token = (
        _bearer(ws.headers.get("authorization"))
        or ws.query_params.get("token")
        or ws.cookies.get("session")
        or subprotocol_token(ws)
    )
    if token is None:
        return None
    if token == "expired":
        raise AuthError(401, "token expired")
    if token == "banned":
        raise AuthError(403, "user banned")
    return USERS.get(token)


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


async def admin_rooms_only(channel: Channel, group: str) -> bool:
    return not group.startswith("admin-") or channel.websocket.user == "root"


app = NexiosApp(allowed_origins=[ALLOWED_ORIGIN], ws_auth=token_auth)


@app.on_startup
def _install_policy() -> None:
    ChannelBox.set_group_policy(admin_rooms_only)


@app.ws_route("/ws")
async def echo_user(ws: WebSocket) -> None:
    offered = "bearer" if "bearer" in ws.subprotocols else None
    await ws.accept(subprotocol=offered)
    first = True
    async for text in ws.iter_text():
        await ws.send_text(f"user={ws.user}" if first else text)
        first = False


@app.ws_route("/crash")
async def crash(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("handler failed on purpose")


@app.ws_route("/public", auth=False, allowed_origins="*")
async def public(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


@app.ws_route("/room/{name}")
async def policed_room(ws: WebSocket, name: str) -> None:
    await ws.accept()
    try:
        await ChannelBox.add_channel_to_group(Channel(ws, metadata={"user": ws.user}), name)
    except GroupAccessDenied:
        await ws.close(4403, "not allowed in this group")
        return
    await ws.send_text("joined")
    async for text in ws.iter_text():
        await ChannelBox.group_send(name, text)


same_origin_app = NexiosApp()


@same_origin_app.ws_route("/ws")
async def same_origin_echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


# --------------------------------------------------------------------------- rooms

room_app = NexiosApp()
_peak = {"bytes": 0}
_stall_leaves: list[dict[str, Any]] = []
# channel id -> since when its backlog has stayed above 64 KiB (the senders' LOW_WATER:
# below it a member is keeping up, e.g. while the kernel's send buffer still grows)
_backlog_since: dict[str, float] = {}
_BACKLOG = 64 * 1024


@room_app.events.on("channel.leave")
async def _record_stall_leave(event: dict[str, Any]) -> None:
    if event["group"].startswith("stall"):
        _stall_leaves.append(
            {
                "at": time.monotonic(),
                "group": event["group"],
                "channel_id": event["channel_id"],
                "reason": event["reason"],
                "backlog_since": _backlog_since.get(event["channel_id"]),
            }
        )


@room_app.ws_route("/echo")
async def room_echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


@room_app.ws_route("/json")
async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        try:
            value = await ws.receive_json()
        except InvalidJSONError:
            await ws.send_json({"error": "invalid JSON"})
            continue
        await ws.send_json(value)


class TextConsumer(WebSocketConsumer):
    encoding = "text"

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        await ws.send_text(data)


class JSONConsumer(WebSocketConsumer):
    encoding = "json"

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        await ws.send_json(data)


room_app.add_ws_route(TextConsumer.as_route("/consumer/text"))
room_app.add_ws_route(JSONConsumer.as_route("/consumer/json"))


@room_app.ws_route("/room/{name}")
async def room(ws: WebSocket, name: str) -> None:
    await ws.accept()
    channel = Channel(ws, payload_type="text", metadata={"n": ws.query_params.get("n")})
    await ChannelBox.add_channel_to_group(channel, name)
    await ws.send_text("joined")
    async for text in ws.iter_text():
        if text == "crash":
            raise RuntimeError("handler failed on purpose")
        await ChannelBox.group_send(name, text)
        _track_peak(name)


@room_app.ws_route("/stubborn")
async def stubborn(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("ready")
    await asyncio.Event().wait()  # never receives: only a cancel or the server ends it


def _track_peak(name: str) -> None:
    for channel in room_app.channels.local_members(name):
        queued = channel.sender.queued_bytes if channel.sender is not None else 0
        _peak["bytes"] = max(_peak["bytes"], queued)
        if not name.startswith("stall"):
            continue
        if queued > _BACKLOG:
            _backlog_since.setdefault(channel.uuid, time.monotonic())
        else:
            _backlog_since.pop(channel.uuid, None)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@room_app.get("/debug/counts")
async def counts() -> dict[str, Any]:
    stats = room_app.websocket_stats()
    channels = room_app.channels.stats()
    return {
        **stats,
        "groups": channels.groups,
        "channels": channels.channels,
        "members": channels.memberships,
        "tasks": len(asyncio.all_tasks()),
        "rss": _rss(),
    }


@room_app.get("/debug/presence/{name}")
async def presence(name: str) -> dict[str, int]:
    return {"members": len(await ChannelBox.presence(name))}


@room_app.post("/debug/flood/{name}")
async def flood(request: Request, name: str) -> dict[str, int]:
    """Broadcast ``count`` messages of ``size`` bytes, stopping early once nobody is left."""
    count = int(request.query_params.get("count", "1"))
    payload = "x" * int(request.query_params.get("size", "1024"))
    sent = 0
    local_members = room_app.channels.local_members
    while sent < count and local_members(name):
        await ChannelBox.group_send(name, payload)
        _track_peak(name)
        sent += 1
        await asyncio.sleep(0)
    return {"sent": sent, "members": len(local_members(name))}


@room_app.get("/debug/peak")
async def peak() -> dict[str, Any]:
    outbox = room_app.channels.settings.outbox
    return {
        "peak_bytes": _peak["bytes"],
        "evictions": room_app.channels.stats().evictions,
        "stall_leaves": _stall_leaves,
        "max_bytes": outbox.max_bytes,
        "send_timeout": outbox.send_timeout,
    }
