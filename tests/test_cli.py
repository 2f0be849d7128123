"""nexios.cli: the ``run`` command's options, and real ``python -m nexios run`` servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from nexios import NexiosApp
from nexios.cli import build_parser, log_config, main, server_options
from nexios.websockets.base import WebSocket
from tests.support.server import REPO_ROOT, serve

app = NexiosApp()


@app.get("/pid")
async def pid(request: Any) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.ws_route("/ws/{name}")
async def greet(ws: WebSocket, name: str) -> None:
    await ws.accept()
    await ws.send_text(f"hello {name}")
    await ws.close()


def options(*argv: str) -> dict[str, Any]:
    return server_options(build_parser().parse_args(["run", "pkg.module:app", *argv]))


# --------------------------------------------------------------------------- parser


def test_defaults() -> None:
    args = build_parser().parse_args(["run", "pkg.module:app"])
    assert (args.command, args.app) == ("run", "pkg.module:app")
    found = options()
    assert found["host"] == "127.0.0.1"
    assert found["port"] == 8000
    assert found["workers"] is None
    assert found["reload"] is False
    assert found["log_level"] == "info"
    assert found["lifespan"] == "on"
    assert found["ws_per_message_deflate"] is False
    assert found["ws_max_size"] == 1024 * 1024


def test_fast_defaults_for_websockets() -> None:
    found = options()
    assert found["loop"] == "uvloop"
    assert found["http"] == "nexios.server:GuardedHttpToolsProtocol"
    assert found["ws"] == "nexios.server:PicowsWebSocketProtocol"


def test_flags() -> None:
    found = options(
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--workers",
        "4",
        "--reload",
        "--log-level",
        "debug",
        "--ws-per-message-deflate",
        "--ws",
        "wsproto",
        "--ws-max-size",
        "1024",
        "--ws-ping-interval",
        "5",
        "--ws-ping-timeout",
        "6",
    )
    assert found["host"] == "0.0.0.0"
    assert found["port"] == 9001
    assert found["workers"] == 4
    assert found["reload"] is True
    assert found["log_level"] == "debug"
    assert found["ws_per_message_deflate"] is True
    assert found["ws"] == "wsproto"
    assert (found["ws_max_size"], found["ws_ping_interval"], found["ws_ping_timeout"]) == (
        1024,
        5.0,
        6.0,
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["serve", "x:app"],
        ["run", "x:app", "--port", "http"],
        ["run", "x:app", "--log-level", "loud"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "usage: nexios" in capsys.readouterr().err


@pytest.mark.parametrize(("level", "number"), [("debug", 10), ("info", 20), ("trace", 5)])
def test_log_config_routes_nexios_loggers_at_the_level(level: str, number: int) -> None:
    config = log_config(level)
    assert config["loggers"]["nexios"] == {
        "handlers": ["default"],
        "level": number,
        "propagate": False,
    }
    assert "uvicorn.error" in config["loggers"]  # uvicorn's own config is kept
    assert options("--log-level", level)["log_config"] == config


def test_main_passes_options_and_channels_url(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    monkeypatch.setenv("NEXIOS_CHANNELS_URL", "memory://")  # restored after the test
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the cwd on sys.path
    assert main(["run", "pkg.module:app", "--port", "9", "--channels-url", "redis://h:1/0"]) == 0
    assert os.environ["NEXIOS_CHANNELS_URL"] == "redis://h:1/0"
    target, kwargs = calls[0]
    assert target == "pkg.module:app"
    assert kwargs["port"] == 9 and kwargs["loop"] == "uvloop"


def test_python_m_nexios_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nexios", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0
    for flag in (
        *("--host", "--port", "--workers", "--reload", "--ssl-certfile", "--proxy-headers"),
        *("--forwarded-allow-ips", "--uds", "--fd", "--root-path", "--env-file", "--factory"),
        *("--app-dir", "--no-access-log", "--log-format", "--timeout-keep-alive"),
        *("--limit-concurrency", "--backlog"),
    ):
        assert flag in result.stdout, flag


def test_bad_app_path_fails_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nexios", "run", "no_such_module_xyz:app", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "no_such_module_xyz" in result.stderr + result.stdout


# --------------------------------------------------------------------------- real servers


async def talk(http_url: str, ws_url: str) -> int:
    """One HTTP request and one WebSocket conversation; return the server pid."""
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{http_url}/pid")
        async with connect(ws_url) as ws:
            assert await ws.recv() == "hello cli"
    pid: int = response.json()["pid"]
    return pid


@pytest.mark.anyio
async def test_run_smoke() -> None:
    with serve("tests.test_cli:app") as server:
        assert await talk(server.http_url, server.ws_url("/ws/cli")) == server.pid
        log = server.wait_for_log("Application startup complete")
        assert "Uvicorn running on" in log
    assert server.process.returncode is not None
    assert "Application shutdown complete" in server.log() or server.process.returncode == 0


@pytest.mark.anyio
async def test_run_with_workers() -> None:
    # JSON logs too: the config (with nexios's formatter and filter) crosses into the
    # spawned workers, and every line of every process is one JSON object.
    args = ["--workers", "2", "--log-format", "json"]
    with serve("tests.test_cli:app", args=args) as server:
        worker = await talk(server.http_url, server.ws_url("/ws/cli"))
        assert worker != server.pid  # answered by a worker process, not the parent
        assert "Started parent process" in server.log()
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {entry["message"] for entry in entries} >= {"Application startup complete."}
    warnings = [entry for entry in entries if entry["logger"] == "nexios.cli"]
    assert warnings[0]["level"] == "WARNING"  # several workers on the memory layer
    assert "NEXIOS_CHANNELS_URL" in warnings[0]["message"]


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "reload_app.py").write_text(
        "from tests.test_cli import app\n",
        encoding="utf-8",
    )
    yield tmp_path


@pytest.mark.anyio
async def test_run_with_reload(app_dir: Path) -> None:
    # cwd is a private directory: the reloader watches it, not the shared checkout.
    with serve(
        "reload_app:app",
        args=["--reload"],
        cwd=app_dir,
        env={"PYTHONPATH": str(app_dir)},
    ) as server:
        await talk(server.http_url, server.ws_url("/ws/cli"))
        assert "reloader process" in server.log()


def test_several_workers_on_the_memory_layer_are_warned_about() -> None:
    from nexios.cli import workers_warning

    message = workers_warning(2, None)
    assert message is not None and "NEXIOS_CHANNELS_URL=redis://" in message
    assert workers_warning(2, "memory://") is not None
    assert workers_warning(2, "redis://127.0.0.1:6379/0") is None
    assert workers_warning(1, None) is None
