"""The HTTP features behind a real server (``tests/test_http_server.py``).

Run as ``nexios run tests.support.http_app:app``; ``STATIC_DIR`` names the directory
served under ``/static``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from nexios import NexiosApp
from nexios.http import (
    EventSourceResponse,
    Request,
    ServerSentEvent,
    StaticFiles,
    StreamingResponse,
    UploadFile,
    last_event_id,
)

# What the streams did, for the test to read back through /status.
streams: dict[str, int] = {"opened": 0, "closed": 0}


@contextlib.asynccontextmanager
async def lifespan(app: NexiosApp) -> AsyncIterator[dict[str, Any]]:
    yield {"db": {"name": "pool-1"}}


app = NexiosApp(lifespan=lifespan)
app.add_cors(["https://app.example"], allow_headers=["content-type"])
if os.environ.get("STATIC_DIR"):
    app.mount("/static", StaticFiles(os.environ["STATIC_DIR"]), name="static")


@app.get("/status")
async def status() -> dict[str, int]:
    return streams


@app.get("/db")
async def db(request: Request) -> dict[str, Any]:
    return {"db": request.state.db["name"], "url": str(request.url_for("item", n=3))}


@app.get("/items/{n}", name="item")
async def item(n: int) -> dict[str, int]:
    return {"n": n}


@app.get("/crash")
async def crash() -> None:
    raise ZeroDivisionError("secret internals")


@app.get("/events")
async def events(request: Request, every: float = 0.05, ping: float = 15.0) -> EventSourceResponse:
    start = int(last_event_id(request) or 0)

    async def ticks() -> AsyncIterator[ServerSentEvent]:
        streams["opened"] += 1
        try:
            n = start
            while True:
                n += 1
                yield ServerSentEvent({"n": n}, id=n, event="tick")
                await asyncio.sleep(every)
        finally:
            streams["closed"] += 1

    return EventSourceResponse(ticks(), ping_interval=ping)


@app.get("/forever")
async def forever() -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        streams["opened"] += 1
        try:
            n = 0
            while True:
                n += 1
                yield f"line {n}\n".encode()
                await asyncio.sleep(0.01)
        finally:
            streams["closed"] += 1

    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/count")
async def count(request: Request) -> dict[str, int]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"size": size}


@app.post("/upload", max_body_size=16 * 1024 * 1024)
async def upload(request: Request) -> dict[str, Any]:
    form = await request.form()
    file = form["file"]
    assert isinstance(file, UploadFile)
    digest = hashlib.sha256(await file.read()).hexdigest()
    return {"size": file.size, "in_memory": file.in_memory, "sha256": digest}
