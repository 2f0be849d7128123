"""An app for multi-process tests: rooms over WebSockets plus HTTP probes.

``/room/{name}?user=...``: join (metadata ``{"user": ...}``); each text frame is
broadcast as ``{"from", "text", "seq"}`` with history. ``POST /broadcast/{name}``
broadcasts a JSON body (503 with the error when the broker is unavailable);
``GET /presence/{name}``, ``GET /history/{name}?since=``, ``GET /health`` report state.
"""

from __future__ import annotations

import logging
from typing import Any

from nexios import NexiosApp, Request
from nexios.exceptions import BackendUnavailableError
from nexios.http import JSONResponse
from nexios.websockets import Channel, ChannelBox, WebSocket

app = NexiosApp()
logger = logging.getLogger("cluster_app")


@app.events.on("channel.leave")
async def log_leave(event: dict[str, Any]) -> None:
    logger.warning(
        "leave %s %s %s", event["metadata"].get("user"), event["channel_id"], event["reason"]
    )


@app.events.on("channel.join")
async def log_join(event: dict[str, Any]) -> None:
    logger.warning(
        "join %s %s %s", event["metadata"].get("user"), event["channel_id"], event["reason"]
    )


@app.ws_route("/room/{name}")
async def room(ws: WebSocket, name: str) -> None:
    await ws.accept()
    user = ws.query_params.get("user", "anon")
    await ChannelBox.add_channel_to_group(Channel(ws, metadata={"user": user}), name)
    await ws.send_json({"joined": name})
    async for text in ws.iter_text():
        await ChannelBox.group_send(
            name, {"from": user, "text": text}, save_history=True, seq_field="seq"
        )


@app.ws_route("/many/{count:int}")
async def many(ws: WebSocket, count: int) -> None:
    """One member in ``count`` groups: keeps the presence heartbeat busy."""
    await ws.accept()
    channel = Channel(ws, metadata={"user": "many"})
    for index in range(count):
        await ChannelBox.add_channel_to_group(channel, f"many-{index}")
    await ws.send_json({"joined": count})
    async for _ in ws.iter_text():
        pass


@app.post("/broadcast/{name}")
async def broadcast(request: Request, name: str) -> Any:
    try:
        await ChannelBox.group_send(name, await request.json(), save_history=True, seq_field="seq")
    except BackendUnavailableError as error:
        return JSONResponse({"error": str(error)}, status_code=503)
    return {"ok": True}


@app.get("/presence/{name}")
async def presence(name: str) -> list[str]:
    return sorted(member.metadata.get("user", "?") for member in await ChannelBox.presence(name))


@app.get("/history/{name}")
async def history(request: Request, name: str) -> dict[str, Any]:
    since = request.query_params.get("since")
    page = (
        await ChannelBox.recover(name, int(since)) if since else await ChannelBox.show_history(name)
    )
    return {"seqs": [entry.seq for entry in page], "complete": getattr(page, "complete", True)}


@app.get("/health")
async def health() -> dict[str, Any]:
    await ChannelBox.presence("_health")  # starts the hub if nothing did yet
    state = ChannelBox.health()
    return {
        "connected": bool(state and state.connected),
        "reconnects": state.reconnects if state else 0,
    }
