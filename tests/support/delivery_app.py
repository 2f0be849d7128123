"""An app for delivery-guarantee tests: members that rejoin with ``since``, publishers.

- ``/member/{group}?since=&epoch=``: joins (replaying what came after ``since`` of
  ``epoch``), then sends ``{"joined": {...the join outcome...}}`` and receives the group's
  messages; a text frame ``leave`` makes it leave the group with the socket open.
- ``/publish/{group}?p=<publisher>``: each text frame ``i`` publishes
  ``{"p": publisher, "i": i}`` saved with ``seq`` stamped, and answers ``{"seq", "epoch"}``.
- ``POST /publish/{group}``: publishes the JSON body the same way (``key`` in the query:
  an idempotency key); 503 when the broker is unavailable.
- ``GET /recover/{group}?since=&epoch=``: what ``ChannelBox.recover`` says.
"""

from __future__ import annotations

from typing import Any

from nexios import NexiosApp, Request
from nexios.exceptions import BackendUnavailableError
from nexios.http import JSONResponse
from nexios.limits import Limits
from nexios.websockets import Channel, ChannelBox, WebSocket


def _position(ws: WebSocket) -> tuple[int | None, str | None]:
    since = ws.query_params.get("since")
    return (int(since) if since else None), ws.query_params.get("epoch")


def make_app(**options: Any) -> NexiosApp:
    """A fresh app; ``options`` go to ``NexiosApp`` (channels_url, history_url, ...)."""
    app = NexiosApp(limits=Limits.unlimited(), **options)
    resyncs: list[dict[str, Any]] = []

    @app.events.on("channel.resync")
    def record_resync(event: dict[str, Any]) -> None:
        resyncs.append(event)

    @app.ws_route("/member/{group}")
    async def member(ws: WebSocket, group: str) -> None:
        await ws.accept()
        since, epoch = _position(ws)
        channel = Channel(ws)
        joined = await ChannelBox.add_channel_to_group(channel, group, since=since, epoch=epoch)
        await ws.send_json(
            {
                "joined": {
                    "recovered": joined.recovered,
                    "complete": joined.complete,
                    "epoch": joined.epoch,
                    "last_seq": joined.last_seq,
                }
            }
        )
        async for text in ws.iter_text():
            if text == "leave":
                await ChannelBox.remove_channel_from_group(channel, group)
                await ws.send_json({"left": group})

    @app.ws_route("/publish/{group}")
    async def publisher(ws: WebSocket, group: str) -> None:
        await ws.accept()
        name = ws.query_params.get("p", "?")
        async for text in ws.iter_text():
            sent = await ChannelBox.group_send(
                group, {"p": name, "i": int(text)}, save_history=True, seq_field="seq"
            )
            await ws.send_json({"seq": sent.seq, "epoch": sent.epoch})

    @app.post("/publish/{group}")
    async def publish(request: Request, group: str) -> Any:
        key = request.query_params.get("key")
        try:
            sent = await ChannelBox.group_send(
                group, await request.json(), save_history=True, seq_field="seq", idempotency_key=key
            )
        except BackendUnavailableError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        return {"seq": sent.seq, "epoch": sent.epoch, "duplicate": sent.duplicate}

    @app.get("/recover/{group}")
    async def recover(request: Request, group: str) -> dict[str, Any]:
        page = await ChannelBox.recover(
            group,
            int(request.query_params.get("since", "0")),
            epoch=request.query_params.get("epoch"),
        )
        return {
            "seqs": [entry.seq for entry in page],
            "complete": page.complete,
            "epoch": page.epoch,
            "last_seq": page.last_seq,
        }

    @app.get("/resyncs")
    async def resync_events() -> list[dict[str, Any]]:
        return resyncs

    return app


app = make_app()
