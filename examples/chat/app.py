"""Practice exercise 3: a complete small chat — rooms, history, presence, typing, recovery.

Run it (then open http://127.0.0.1:8000)::

    nexios run examples.chat.app:app
    NEXIOS_CHANNELS_URL=redis://127.0.0.1:6379/0 nexios run examples.chat.app:app --workers 2

Settings (environment):

- ``NEXIOS_HISTORY_URL``: where messages are kept. Unset, the app uses the local SQLite
  file ``chat-history.db`` in the working directory (``CHAT_HISTORY_FILE`` changes the
  file name), so history survives a restart, and several workers on one machine share
  it. Across machines, point it at Redis (``redis://...``).
- ``NEXIOS_CHANNELS_URL``: ``memory://`` (default, one process) or ``redis://...``
  (several workers or machines — the code does not change).
- ``NEXIOS_HISTORY_MAX_ENTRIES`` / ``NEXIOS_HISTORY_MAX_AGE``: history bounds per room.

Protocol: one WebSocket at ``/ws``; every message is a JSON object with a ``type``.

Client → server:

- ``{"type": "join", "name": str, "room": str, "since"?: int}`` — enter a room (once
  per connection). ``name``: 1-32 characters; ``room``: ``[a-z0-9-]{1,32}``; ``since``:
  the last ``seq`` seen, when reconnecting. ``/ws?name=..&room=..&since=..`` does the
  same at connect time.
- ``{"type": "message", "text": str}`` — 1-1000 characters, at most 5 per second.
- ``{"type": "typing"}`` — "I am typing"; relayed, never saved (at most 5 per second).
- ``{"type": "resume", "since": int}`` — ask again for what came after ``since``.
- ``{"type": "ping"}`` — answered ``{"type": "pong"}``.

Server → client:

- ``{"type": "joined", "room", "name", "id", "members": [{"id", "name"}], "messages":
  [message...], "replace": bool, "complete": bool, "last_seq": int}`` — the answer to
  join. Without ``since``: the room's last 50 messages (``replace: true``). With
  ``since``: what was missed (``replace: false``), unless more was missed than history
  keeps: then ``complete: false`` and the last 50 (``replace: true``) — show a notice.
- ``{"type": "recovered", "since", "messages", "replace", "complete", "last_seq"}`` —
  the answer to resume, same rules.
- ``{"type": "message", "seq", "id", "name", "text", "ts"}`` — a chat message; ``seq``
  numbers the room's history (clients drop duplicates and order by it).
- ``{"type": "typing", "id", "name"}``.
- ``{"type": "presence", "event": "join" | "leave", "member": {"id", "name"},
  "reason"}`` — someone entered or left the room (any process, crashes included).
- ``{"type": "error", "code", "message", "field"?}`` — the request was refused; the
  connection stays open. Codes: ``invalid_json``, ``binary_frame``, ``missing_field``,
  ``unknown_type``, ``invalid_name``, ``invalid_room``, ``invalid_text``,
  ``invalid_since``, ``not_joined``, ``already_joined``, ``rate_limited``.
- ``{"type": "pong"}``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

from nexios import (
    FileResponse,
    InvalidJSONError,
    NexiosApp,
    StaticFiles,
    WebSocketMessageTypeError,
)
from nexios.websockets import Channel, ChannelBox, WebSocket

__all__ = ["ChatError", "app"]

logger = logging.getLogger("examples.chat")
logger.setLevel(logging.INFO)

STATIC = Path(__file__).parent / "static"
GROUP_PREFIX = "chat:"
HISTORY_ON_JOIN = 50
NAME_MAX = 32
ROOM_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
TEXT_MAX = 1000
MESSAGES_PER_SECOND = 5
TYPING_PER_SECOND = 5
MAX_SEQ = 2**63 - 1

HISTORY_URL = os.environ.get("NEXIOS_HISTORY_URL") or "sqlite:///" + os.environ.get(
    "CHAT_HISTORY_FILE", "chat-history.db"
)

app = NexiosApp(title="Nexios chat", history_url=HISTORY_URL)
app.mount("/static", StaticFiles(directory=STATIC))


@app.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@app.on_startup
def show_logs() -> None:
    # Under `nexios run` nothing handles our logger; print its lines to stderr then.
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


# ---------------------------------------------------------------------- validation


class ChatError(Exception):
    """A refused request: sent to the client as ``{"type": "error", ...}``."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        error = {"type": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return error


def check_name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else None
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise ChatError(
            "invalid_name", f"Name must be 1 to {NAME_MAX} printable characters.", "name"
        )
    return name


def check_room(value: Any) -> str:
    if not isinstance(value, str) or not ROOM_PATTERN.fullmatch(value):
        raise ChatError(
            "invalid_room",
            "Room must be 1 to 32 characters: lowercase letters, digits and dashes.",
            "room",
        )
    return value


def check_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > TEXT_MAX:
        raise ChatError("invalid_text", f"Message must be 1 to {TEXT_MAX} characters.", "text")
    return value


def check_since(value: Any) -> int | None:
    if value is None or value == "":
        return None
    # A seq is a signed 64-bit counter in every history store: a wider since (JSON
    # integers arrive exact, at any width) is no seq the room ever gave out.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ:
        return value
    raise ChatError(
        "invalid_since", "since must be the last seq you saw (an integer, 0 or more).", "since"
    )


def require(data: dict[str, Any], *fields: str) -> None:
    missing = [field for field in fields if field not in data]
    if missing:
        raise ChatError("missing_field", f"Missing field: {', '.join(missing)}.", missing[0])


class RateLimit:
    """At most ``count`` events per second (sliding window over the last ``count``)."""

    def __init__(self, count: int) -> None:
        self.times: deque[float] = deque(maxlen=count)

    def allow(self) -> bool:
        now = time.monotonic()
        if len(self.times) == self.times.maxlen and now - self.times[0] < 1.0:
            return False
        self.times.append(now)
        return True


# ---------------------------------------------------------------------- the room


def member(channel_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"id": channel_id, "name": metadata.get("name", "?")}


async def members(group: str) -> list[dict[str, Any]]:
    return [member(m.channel_id, m.metadata) for m in await ChannelBox.presence(group)]


def chat_messages(entries: list[Any]) -> list[dict[str, Any]]:
    return [{**entry.payload, "seq": entry.seq} for entry in entries]


async def catch_up(group: str, since: int | None) -> dict[str, Any]:
    """What a client needs: the last 50, or what it missed since ``since``."""
    if since is not None:
        page = await ChannelBox.recover(group, since)
        if page.complete:
            return {
                "messages": chat_messages(page),
                "replace": False,
                "complete": True,
                "last_seq": page.last_seq,
            }
    else:
        page = None
    latest = await ChannelBox.show_history(group, limit=HISTORY_ON_JOIN)
    assert not isinstance(latest, dict)
    return {
        "messages": chat_messages(latest),
        "replace": True,
        "complete": page is None,
        "last_seq": latest.last_seq,
    }


@app.events.on("channel.join")
async def announce_join(event: dict[str, Any]) -> None:
    await announce(event, "join")


@app.events.on("channel.leave")
async def announce_leave(event: dict[str, Any]) -> None:
    # Also at shutdown: the hub keeps its layer until every member has left, so pages
    # served by other workers drop a stopping worker's members at once.
    await announce(event, "leave")


async def announce(event: dict[str, Any], kind: str) -> None:
    # The event fires in exactly one process (the member's, or the one that reaped a
    # crashed process's member); group_send reaches the room in every process.
    group = event["group"]
    if group.startswith(GROUP_PREFIX):
        update = {
            "type": "presence",
            "event": kind,
            "member": member(event["channel_id"], event["metadata"] or {}),
            "reason": event["reason"],
        }
        await ChannelBox.group_send(group, update)


class Session:
    """One connection: who it is, where it is, and its rate limits."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.channel: Channel | None = None
        self.name = ""
        self.room = ""
        self.messages = RateLimit(MESSAGES_PER_SECOND)
        self.typing = RateLimit(TYPING_PER_SECOND)

    @property
    def group(self) -> str:
        return GROUP_PREFIX + self.room

    async def reply(self, payload: dict[str, Any]) -> None:
        # Once in the room, replies go through the channel's outbox so that they stay
        # in order with the room's messages.
        if self.channel is None or not await ChannelBox.send_to(self.channel.uuid, payload):
            await self.ws.send_json(payload)

    async def handle(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ChatError(
                "missing_field", 'Every message is a JSON object with a "type".', "type"
            )
        kind = data["type"]
        if kind == "ping":
            await self.reply({"type": "pong"})
        elif kind == "join":
            require(data, "name", "room")
            await self.join(data["name"], data["room"], data.get("since"))
        elif self.channel is None and kind in ("message", "typing", "resume"):
            raise ChatError("not_joined", "Join a room first.")
        elif kind == "message":
            require(data, "text")
            await self.say(data["text"])
        elif kind == "typing":
            if self.typing.allow():
                await ChannelBox.group_send(
                    self.group, {"type": "typing", "id": self.channel_id, "name": self.name}
                )
        elif kind == "resume":
            require(data, "since")
            since = check_since(data["since"])
            assert since is not None
            await self.reply(
                {"type": "recovered", "since": since, **await catch_up(self.group, since)}
            )
        else:
            raise ChatError("unknown_type", f"Unknown message type {kind!r}.", "type")

    @property
    def channel_id(self) -> str:
        assert self.channel is not None
        return self.channel.uuid

    async def join(self, name: Any, room: Any, since: Any) -> None:
        if self.channel is not None:
            raise ChatError(
                "already_joined", f"Already in room {self.room!r}; reconnect to change."
            )
        name, room, since = check_name(name), check_room(room), check_since(since)
        self.name, self.room = name, room
        channel = Channel(websocket=self.ws, payload_type="json", metadata={"name": name})
        # Join first, read history second: nothing sent in between is lost (a message in
        # both is dropped by the client, which orders messages by seq).
        await ChannelBox.add_channel_to_group(channel, self.group)
        self.channel = channel
        logger.info("%s joined room %s (pid %d)", name, room, os.getpid())
        await self.reply(
            {
                "type": "joined",
                "room": room,
                "name": name,
                "id": channel.uuid,
                "members": await members(self.group),
                **await catch_up(self.group, since),
            }
        )

    async def say(self, text: Any) -> None:
        text = check_text(text)
        if not self.messages.allow():
            raise ChatError(
                "rate_limited",
                f"Slow down: at most {MESSAGES_PER_SECOND} messages per second.",
            )
        message = {
            "type": "message",
            "id": self.channel_id,
            "name": self.name,
            "text": text,
            "ts": time.time(),
        }
        await ChannelBox.group_send(self.group, message, save_history=True, seq_field="seq")


@app.ws_route("/ws")
async def chat(ws: WebSocket) -> None:
    await ws.accept()
    session = Session(ws)
    query = ws.query_params
    try:
        if "name" in query or "room" in query:
            fields = {key: query.get(key) for key in ("name", "room", "since") if key in query}
            await session.handle({"type": "join", **fields})
    except ChatError as error:
        await session.reply(error.to_dict())
    # A disconnect ends this loop (WebSocketDisconnect); the channel leaves the room by
    # itself and the leave is announced by announce_leave.
    while True:
        try:
            data = await ws.receive_json()
            await session.handle(data)
        except InvalidJSONError as error:
            await session.reply(ChatError("invalid_json", str(error)).to_dict())
        except WebSocketMessageTypeError:
            await session.reply(
                ChatError("binary_frame", "Send JSON text frames, not binary ones.").to_dict()
            )
        except ChatError as error:
            await session.reply(error.to_dict())
