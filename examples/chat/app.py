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

The page speaks the client protocol (``docs/protocol.md``) with the browser client the
framework serves at ``/_nexios/nexios.js``: reconnecting, resubscribing, dedupe, order
and recovery are the client's job, not this app's. The server is one endpoint at
``/connect`` and these hooks:

- ``connect``: the token is the user's name, 1-32 printable characters (this demo has no
  accounts: a real app sends a signed token and checks it here). It becomes the
  member's presence info ``{"name"}``. A bad name refuses the connection (401).
- groups: ``chat:<room>`` (messages, saved to history: recoverable; presence) and
  ``typing:<room>`` ("typing" signals, never saved); ``<room>`` is ``[a-z0-9-]{1,32}``
  (otherwise 404, with the rule in the message).
- publish to ``chat:<room>``: ``{"text": str}``, 1-1000 characters (else 400), at most 5
  per second per connection (else 429: the client retries it later). Subscribers get
  ``{"id", "name", "text", "ts"}``: who sent it is the server's word, not the client's.
- publish to ``typing:<room>``: anything; subscribers get ``{"id", "name"}``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from nexios import FileResponse, NexiosApp, StaticFiles
from nexios.endpoint import Identity
from nexios.exceptions import ProtocolError
from nexios.runtime import Channel
from nexios.websockets import WebSocket

__all__ = ["app"]

logger = logging.getLogger("examples.chat")
logger.setLevel(logging.INFO)

STATIC = Path(__file__).parent / "static"
NAME_MAX = 32
GROUP = re.compile(r"(chat|typing):(.*)")
ROOM = re.compile(r"[a-z0-9-]{1,32}")
TEXT_MAX = 1000
MESSAGES_PER_SECOND = 5
TYPING_PER_SECOND = 5

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


# Per connection, forgotten with it.
message_limits: WeakKeyDictionary[Channel, RateLimit] = WeakKeyDictionary()
typing_limits: WeakKeyDictionary[Channel, RateLimit] = WeakKeyDictionary()


async def authenticate(ws: WebSocket, token: str | None) -> Identity:
    name = token.strip() if isinstance(token, str) else ""
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise ProtocolError(401, f"Name must be 1 to {NAME_MAX} printable characters.")
    logger.info("%s connected (pid %d)", name, os.getpid())
    return Identity(name, {"name": name})


async def known_room(channel: Channel, group: str) -> bool:
    found = GROUP.fullmatch(group)
    if found is None or not ROOM.fullmatch(found.group(2)):
        raise ProtocolError(
            404, "Room must be 1 to 32 characters: lowercase letters, digits and dashes."
        )
    return True


async def check_publish(channel: Channel, group: str, data: Any) -> dict[str, Any]:
    """What the room receives: validated, with the sender as the server knows it."""
    sender = {"id": channel.uuid, "name": channel.metadata.get("name", "?")}
    if group.startswith("typing:"):
        if not typing_limits.setdefault(channel, RateLimit(TYPING_PER_SECOND)).allow():
            raise ProtocolError(429, "Typing too often.")
        return sender
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX:
        raise ProtocolError(400, f"Message must be 1 to {TEXT_MAX} characters.")
    if not message_limits.setdefault(channel, RateLimit(MESSAGES_PER_SECOND)).allow():
        raise ProtocolError(429, f"Slow down: at most {MESSAGES_PER_SECOND} messages per second.")
    return {**sender, "text": text, "ts": time.time()}


endpoint = app.channels_endpoint(
    "/connect",
    authenticate=authenticate,
    can_subscribe=known_room,
    on_publish=check_publish,
    history=lambda group: group.startswith("chat:"),
)
