"""An app serving a group as Server-Sent Events, for in-process, server and browser tests.

- ``GET /events/{room}``: ``app.sse_group(..., group="{room}")`` — the endpoint under test
  (presence metadata ``{"name": ?name}``; ``SSE_RETRY`` ms, default 100; ``SSE_PING``
  seconds, default 15);
- ``POST /publish/{room}``: publishes the JSON body, saved unless ``?unsaved=1``;
  answers ``{"seq", "epoch"}``. ``?count=N`` publishes ``{"n": 0..N-1, **body}`` one after
  the other and answers the last one's; 503 when the broker is unavailable;
- ``GET /presence/{room}``: the members' names; ``GET /stats``: evictions and members;
- ``POST /end``: the server ends every stream (``close_all_connections``);
- ``GET /pid``: the worker's process id; ``GET /``: the page of ``sse_page.html``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nexios import NexiosApp, Request
from nexios.exceptions import BackendUnavailableError
from nexios.http import HTMLResponse, JSONResponse
from nexios.websockets import ChannelBox

PAGE = Path(__file__).with_name("sse_page.html")


def make_app(**options: Any) -> NexiosApp:
    """A fresh app; ``options`` go to ``NexiosApp`` (channels_url, history_url, ...)."""
    app = NexiosApp(**options)
    app.sse_group(
        "/events/{room}",
        group="{room}",
        metadata=lambda stream: {"name": stream.query_params.get("name", "")},
        retry=int(os.environ.get("SSE_RETRY", "100")),
        ping_interval=float(os.environ.get("SSE_PING", "15")),
    )

    @app.post("/publish/{room}")
    async def publish(request: Request, room: str, count: int = 1, unsaved: bool = False) -> Any:
        body = await request.json()
        try:
            for n in range(count):
                payload = {"n": n, **body} if count > 1 else body
                sent = await ChannelBox.group_send(room, payload, save_history=not unsaved)
        except BackendUnavailableError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        return {"seq": sent.seq, "epoch": sent.epoch}

    @app.get("/presence/{room}")
    async def presence(room: str) -> Any:
        return sorted(member.metadata["name"] for member in await ChannelBox.presence(room))

    @app.get("/stats")
    async def stats() -> Any:
        numbers = ChannelBox.stats()
        return {"evictions": numbers.evictions, "channels": numbers.channels}

    @app.post("/end")
    async def end() -> Any:
        await ChannelBox.close_all_connections(1012, "ended by the test")
        return {"ended": True}

    @app.get("/pid")
    async def pid() -> Any:
        return {"pid": os.getpid()}

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    return app


app = make_app()
