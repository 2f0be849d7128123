"""An app serving the client protocol for tests: ``nexios run tests.support.protocol_app:app``.

- ``/connect``: the endpoint. Groups are ``[a-z0-9:._-]{1,64}``; ``secret:*`` may not be
  subscribed to, ``readonly:*`` not published to, ``nopresence:*`` has hidden presence;
  client publishes are saved except in ``live:*``; a publish of ``{"reject": ...}`` is
  refused with 400 and ``{"upper": text}`` is published as ``{"upper": TEXT}``.
- Tokens (``PROTOCOL_TOKENS=1``): ``GET /token?user=ada&ttl=10`` hands out a token valid
  ``ttl`` seconds; ``connect`` and ``refresh`` check it; ``GET /tokens`` counts the ones
  handed out (so tests see a refresh happen).
- ``POST /publish/{group}``: ``ChannelBox.group_send(group, body, save_history=True)``
  from an HTTP handler; ``?live=1`` unsaved; answers ``{"seq", "epoch"}``.
- ``POST /remove/{group}/{client}``: the app removes a member (``unsubscribed`` 410).
- ``GET /``: a test page (``tests/support/protocol_page.html``) that loads the browser
  client from ``/_nexios/nexios.js``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from pathlib import Path
from typing import Any

from nexios import FileResponse, NexiosApp, Request
from nexios.endpoint import Identity
from nexios.exceptions import BackendUnavailableError, ProtocolError
from nexios.http import JSONResponse
from nexios.limits import Limits
from nexios.runtime import Channel
from nexios.websockets import ChannelBox, WebSocket

PAGE = Path(__file__).with_name("protocol_page.html")
SECRET = os.environ.get("PROTOCOL_SECRET", "test-secret").encode()
GROUP = re.compile(r"[a-z0-9:._-]{1,64}")

app = NexiosApp(limits=Limits.unlimited(), allowed_origins="*")
issued = {"count": 0}


def make_token(user: str, ttl: float) -> str:
    expires = f"{time.time() + ttl:.3f}"
    signature = hmac.new(SECRET, f"{user}|{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{user}|{expires}|{signature}"


async def authenticate(ws: WebSocket, token: str | None) -> Identity | None:
    if os.environ.get("PROTOCOL_TOKENS") != "1":
        return Identity(info={"name": "anonymous", "pid": os.getpid()})
    if not token or token.count("|") != 2:
        return None
    user, expires, signature = token.split("|")
    good = hmac.new(SECRET, f"{user}|{expires}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, signature):
        return None
    if float(expires) <= time.time():
        raise ProtocolError(419, "the token expired")
    return Identity(user, {"name": user, "pid": os.getpid()}, float(expires))


async def may_subscribe(channel: Channel, group: str) -> bool:
    return not group.startswith("secret:")


async def may_publish(channel: Channel, group: str) -> bool:
    return not group.startswith("readonly:")


async def may_see_presence(channel: Channel, group: str) -> bool:
    return not group.startswith("nopresence:")


async def check_publish(channel: Channel, group: str, data: Any) -> Any:
    if isinstance(data, dict) and "reject" in data:
        raise ProtocolError(400, f"rejected: {data['reject']}")
    if isinstance(data, dict) and isinstance(data.get("upper"), str):
        return {"upper": data["upper"].upper()}
    return data


endpoint = app.channels_endpoint(
    "/connect",
    authenticate=authenticate,
    groups=GROUP.fullmatch,
    can_subscribe=may_subscribe,
    can_publish=may_publish,
    can_see_presence=may_see_presence,
    on_publish=check_publish,
    history=lambda group: not group.startswith("live:"),
    ping_interval=float(os.environ.get("PROTOCOL_PING", "25")),
    connect_timeout=float(os.environ.get("PROTOCOL_CONNECT_TIMEOUT", "10")),
)


@app.get("/")
async def page() -> FileResponse:
    return FileResponse(PAGE, headers={"cache-control": "no-store"})


@app.get("/token")
async def token(request: Request) -> JSONResponse:
    issued["count"] += 1
    ttl = float(request.query_params.get("ttl") or 600)
    return JSONResponse({"token": make_token(request.query_params.get("user") or "ada", ttl)})


@app.get("/tokens")
async def tokens() -> JSONResponse:
    return JSONResponse(issued)


@app.post("/publish/{group}")
async def publish(request: Request, group: str) -> JSONResponse:
    body = await request.json()
    saved = request.query_params.get("live") != "1"
    try:
        sent = await ChannelBox.group_send(group, body, save_history=saved)
    except BackendUnavailableError as error:
        return JSONResponse({"error": str(error)}, status_code=503)
    return JSONResponse({"seq": sent.seq, "epoch": sent.epoch})


@app.post("/remove/{group}/{client}")
async def remove(group: str, client: str) -> JSONResponse:
    members = (await ChannelBox.show_groups()).get(group, {})
    channel = members.get(client)
    if channel is None:
        return JSONResponse({"removed": False}, status_code=404)
    await ChannelBox.remove_channel_from_group(channel, group)
    return JSONResponse({"removed": True})
