"""``/healthz`` and ``/readyz``: alive while serving; ready only while the channel layer
and the history store answer — with a real Redis stopped, frozen and back, and a SQLite
history file that cannot be read."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
import pytest

from nexios import NexiosApp
from nexios.testing import AsyncTestClient
from tests.support.redis import RedisServer

pytestmark = pytest.mark.anyio


async def readiness(client: AsyncTestClient) -> tuple[int, dict[str, object]]:
    response = await client.get("/readyz")
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()


async def wait_readiness(client: AsyncTestClient, status: int) -> dict[str, object]:
    async with asyncio.timeout(15):
        while True:
            code, body = await readiness(client)
            if code == status:
                return body
            await asyncio.sleep(0.05)


async def test_in_memory_an_app_is_alive_and_ready() -> None:
    async with AsyncTestClient(NexiosApp()) as client:
        alive = await client.get("/healthz")
        assert (alive.status_code, alive.text) == (200, "ok\n")
        assert (await client.head("/healthz")).status_code == 200
        assert await readiness(client) == (
            200,
            {"ready": True, "channel_layer": "ok", "history": "ok"},
        )
        refused = await client.post("/readyz")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


async def test_without_lifespan_the_probe_starts_the_runtime_and_after_shutdown_it_fails() -> None:
    app = NexiosApp()
    transport = httpx.ASGITransport(app=app)  # no lifespan: the runtime never started
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as raw:
        assert not app.channels.started
        assert (await raw.get("/readyz")).status_code == 200
        assert app.channels.started
        await app.shutdown()
        stopped = await raw.get("/readyz")
    assert stopped.status_code == 503
    assert "shutting down" in stopped.json()["channel_layer"]


async def test_readiness_follows_redis_down_frozen_and_back() -> None:
    with RedisServer() as redis:
        app = NexiosApp(channels_url=redis.url())
        async with AsyncTestClient(app) as client:
            assert (await readiness(client))[0] == 200
            assert (await client.get("/healthz")).status_code == 200
            redis.stop()
            body = await wait_readiness(client, 503)
            assert body["ready"] is False
            # The link noticed ("is down") or a command failed first ("unreachable").
            assert re.search(r"is down|unreachable", str(body["channel_layer"])), body
            assert "unreachable" in str(body["history"]), body
            assert (await client.get("/healthz")).status_code == 200  # alive all along
            redis.start()
            assert (await wait_readiness(client, 200))["ready"] is True
            redis.freeze()
            try:
                body = await wait_readiness(client, 503)
                assert "no answer within 2 s" in str(body["history"]), body
            finally:
                redis.thaw()
            await wait_readiness(client, 200)


async def test_a_history_store_that_cannot_be_read_makes_the_app_unready(tmp_path: Path) -> None:
    folder = tmp_path / "history"
    folder.mkdir()
    app = NexiosApp(history_url=f"sqlite:///{folder / 'h.db'}")
    async with AsyncTestClient(app) as client:
        assert (await readiness(client))[0] == 200
        (folder / "h.db").unlink()
        (folder / "h.db").mkdir()  # the file is now a folder: SQLite cannot open it
        os.chmod(folder, 0o500)
        try:
            code, body = await readiness(client)
        finally:
            os.chmod(folder, 0o700)
    assert code == 503
    assert body["channel_layer"] == "ok" and body["history"] != "ok", body


async def test_health_false_leaves_the_paths_to_the_app() -> None:
    app = NexiosApp(health=False)

    @app.get("/healthz")
    async def mine() -> dict[str, str]:
        return {"mine": "yes"}

    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).json() == {"mine": "yes"}
        assert (await client.get("/readyz")).status_code == 404
