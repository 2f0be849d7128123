"""``nexios run module:app``: serve an app with uvicorn, tuned for WebSockets.

Defaults are the fastest sound configuration measured in ``bench/``: uvloop, httptools,
uvicorn's sans-I/O ``websockets`` implementation, and per-message deflate off
(``--ws-per-message-deflate`` turns it on). ``python -m nexios run ...`` works too.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "log_config", "main", "server_options"]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexios", description="Run and manage nexios apps.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an app: nexios run module:app")
    run.add_argument("app", help="import path of the app, e.g. examples.chat.app:app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--workers", type=int, default=1, help="processes (use a redis:// URL)")
    run.add_argument("--reload", action="store_true", help="restart on code changes")
    run.add_argument("--log-level", default="info", choices=_LOG_LEVELS)
    run.add_argument("--ws-max-size", type=int, default=16 * 1024 * 1024)
    run.add_argument("--ws-ping-interval", type=float, default=20.0)
    run.add_argument("--ws-ping-timeout", type=float, default=20.0)
    run.add_argument("--ws-per-message-deflate", action="store_true")
    run.add_argument(
        "--ws",
        default="auto",
        help="WebSocket implementation: auto (nexios's frame-once protocol when available), "
        "websockets-sansio, websockets, wsproto",
    )
    run.add_argument("--channels-url", default=None, help="sets NEXIOS_CHANNELS_URL")
    return parser


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the parsed ``run`` command."""
    ws: Any = args.ws
    if ws == "auto":
        ws = _default_ws_protocol()
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers if args.workers > 1 else None,
        "reload": args.reload,
        "log_level": args.log_level,
        "log_config": log_config(args.log_level),
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": "httptools" if _has("httptools") else "h11",
        "ws": ws,
        "ws_max_size": args.ws_max_size,
        "ws_ping_interval": args.ws_ping_interval,
        "ws_ping_timeout": args.ws_ping_timeout,
        "ws_per_message_deflate": args.ws_per_message_deflate,
        "lifespan": "on",
    }


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``nexios`` loggers, on uvicorn's handler.

    Without this, ``nexios.*`` records below WARNING (refused handshakes, disconnects)
    would go nowhere under ``nexios run``, whatever ``--log-level`` says.
    """
    from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["nexios"] = {
        "handlers": ["default"],
        "level": LOG_LEVELS[level],  # a number: "TRACE" is not a level name until uvicorn adds it
        "propagate": False,
    }
    return config


def _default_ws_protocol() -> Any:
    try:
        from nexios.server import frame_once_protocol_path
    except ImportError:
        return "websockets-sansio"
    return frame_once_protocol_path() or "websockets-sansio"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        import os

        import uvicorn

        if args.channels_url:
            os.environ["NEXIOS_CHANNELS_URL"] = args.channels_url
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        uvicorn.run(args.app, **server_options(args))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
