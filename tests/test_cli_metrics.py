"""``nexios run --metrics`` on real servers: ``/metrics`` in one process, and summed over
``--workers`` whichever worker answers the scrape, from zero at every start."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from nexios import NexiosApp
from nexios.cli import build_parser, check_arguments
from nexios.limits import Limits
from nexios.metrics import MULTIPROC_ENV
from nexios.websockets import WebSocket
from tests.support.server import Server, serve
from tests.test_metrics import samples, value

pytestmark = pytest.mark.anyio

app = NexiosApp(limits=Limits(max_connections_per_client=None))


@app.get("/multiproc-dir")
async def multiproc_dir() -> dict[str, Any]:
    return {"dir": os.environ.get(MULTIPROC_ENV)}


@app.ws_route("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(str(os.getpid()))
    async for text in ws.iter_text():
        await ws.send_text(text)


async def scrape(server: Server) -> bytes:
    async with httpx.AsyncClient() as client:
        response = await client.get(server.http_url + "/metrics")
    assert response.status_code == 200, response.text
    return response.content


async def open_on_every_worker(
    server: Server, stack: AsyncExitStack, workers: int
) -> list[ClientConnection]:
    """Connections until every worker holds at least one (the kernel picks the worker)."""
    with anyio.fail_after(30):  # every worker is up
        while server.log().count("Application startup complete") < workers:
            await anyio.sleep(0.05)
    opened: list[ClientConnection] = []
    pids: set[str] = set()
    with anyio.fail_after(30):
        while len(pids) < workers:
            assert len(opened) < 500, f"{len(opened)} connections all went to {pids}"
            ws = await stack.enter_async_context(connect(server.ws_url("/echo")))
            pids.add(str(await ws.recv()))
            opened.append(ws)
    return opened


async def test_one_process_serves_its_metrics() -> None:
    with serve("tests.test_cli_metrics:app", args=["--metrics"]) as server:
        async with connect(server.ws_url("/echo")) as ws:
            await ws.recv()
            await ws.send("ping")
            assert await ws.recv() == "ping"
            text = await scrape(server)
        assert value(text, "nexios_connections") == 1
        assert value(text, "nexios_messages_received_total") == 1
        assert value(text, "process_cpu_seconds_total") is not None  # one process: its own


async def test_without_metrics_there_is_no_metrics_path() -> None:
    with serve("tests.test_cli_metrics:app") as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.http_url + "/metrics")).status_code == 404


async def test_workers_are_summed_and_every_run_starts_from_zero(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    args = ["--metrics", "--workers", "2", "--metrics-dir", str(folder)]
    for run in range(2):  # the second run finds the first one's files and starts afresh
        with serve("tests.test_cli_metrics:app", args=args) as server:
            async with AsyncExitStack() as stack:
                sockets = await open_on_every_worker(server, stack, workers=2)
                for ws in sockets:
                    await ws.send("ping")
                    assert await ws.recv() == "ping"
                # Each worker adds its message counts to the shared files once a second;
                # then, whichever worker answers, the sums are the same.
                with anyio.fail_after(10):
                    while value(await scrape(server), "nexios_messages_received_total") != len(
                        sockets
                    ):
                        await anyio.sleep(0.1)
                for _ in range(6):
                    text = await scrape(server)
                    assert value(text, "nexios_connections") == len(sockets), run
                    assert value(text, "nexios_messages_received_total") == len(sockets)
                    assert value(text, "nexios_handshakes_total", outcome="accepted") == len(
                        sockets
                    )
                    workers = {
                        labels
                        for (name, labels), _ in samples(text).items()
                        if name == "nexios_groups"
                    }
                    assert len(workers) == 2  # one series per live worker
            assert any(folder.glob("*.db"))


async def test_the_workers_folder_is_made_and_removed_when_not_given() -> None:
    args = ["--metrics", "--workers", "2"]
    env = {MULTIPROC_ENV: ""}
    with serve("tests.test_cli_metrics:app", args=args, env=env) as server:
        async with httpx.AsyncClient() as client:
            found = (await client.get(server.http_url + "/multiproc-dir")).json()["dir"]
        assert found and Path(found).is_dir() and Path(found).name.startswith("nexios-metrics-")
    assert not Path(found).exists()


def test_metrics_dir_needs_metrics() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "a:app", "--metrics-dir", "/tmp/x"])
    assert "add --metrics" in (check_arguments(args) or "")
    args = parser.parse_args(["run", "a:app", "--metrics", "--metrics-dir", "/tmp/x"])
    assert check_arguments(args) is None
