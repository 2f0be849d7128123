"""``nexios run module:app``: serve an app with uvicorn, tuned for WebSockets.

Defaults are the fastest sound configuration measured in ``bench/``: uvloop, httptools,
uvicorn's sans-I/O ``websockets`` implementation, and per-message deflate off
(``--ws-per-message-deflate`` turns it on). ``python -m nexios run ...`` works too.

Safety defaults: the server refuses WebSocket messages over ``--ws-max-size`` (1 MiB,
close 1009) before the app buffers them; the framework's own, tighter limit
(``NEXIOS_MAX_MESSAGE_SIZE``, 64 KiB) applies above it — raise both together. Shutdown
waits at most ``--timeout-graceful-shutdown`` (10 s) for handlers. Query strings in
uvicorn's WebSocket log lines are redacted (``?token=...`` → ``?token=<redacted>``), as
tokens often travel there, and so are credential headers in websockets' debug lines.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any

from nexios.exceptions import ConfigurationError
from nexios.wire import default_http_protocol, default_ws_protocol
from nexios.wire.settings import ENV as WIRE_ENV
from nexios.wire.settings import parse_setting

__all__ = [
    "DEFAULT_WS_MAX_SIZE",
    "RedactCredentialsFilter",
    "build_parser",
    "log_config",
    "main",
    "server_options",
    "wire_environment",
    "workers_warning",
]

DEFAULT_WS_MAX_SIZE = 1024 * 1024
"""uvicorn's frame/message cap under ``nexios run``: above the framework's 64 KiB limit,
so the app decides with a clear close code, yet low enough that nobody makes the server
buffer 16 MiB per connection."""


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
    run.add_argument(
        "--ws-max-size",
        type=int,
        default=DEFAULT_WS_MAX_SIZE,
        help="largest WebSocket message the server accepts, in bytes (closes 1009 above)",
    )
    run.add_argument("--ws-ping-interval", type=float, default=20.0)
    run.add_argument("--ws-ping-timeout", type=float, default=20.0)
    run.add_argument("--ws-per-message-deflate", action="store_true")
    run.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=10.0,
        help="seconds shutdown waits for connections and handlers before cancelling them",
    )
    run.add_argument(
        "--ws",
        default="auto",
        help="WebSocket implementation: auto (picows's compiled wire, else the hardened "
        "sans-I/O one), nexios.server:PicowsWebSocketProtocol, "
        "nexios.server:NexiosWebSocketProtocol, websockets-sansio, websockets, wsproto",
    )
    run.add_argument(
        "--http",
        default="auto",
        help="HTTP implementation: auto (httptools with a handshake timeout and caps, "
        "nexios.server:GuardedHttpToolsProtocol), httptools, h11",
    )
    run.add_argument("--channels-url", default=None, help="sets NEXIOS_CHANNELS_URL")
    _add_wire_limits(run)
    return parser


# ---------------------------------------------------------------------- wire limits
# Limits of nexios's protocol classes (nexios.wire.settings). uvicorn's Config has no room
# for them and --workers/--reload start new processes, so they travel as NEXIOS_* variables.

_WIRE_FLAGS = {
    "handshake_timeout": "seconds a request head may take to arrive (408 after; default 10)",
    "max_request_line": "longest request line, in bytes (414 above; default 8192)",
    "max_header_bytes": "largest request head, in bytes (431 above; default 16384)",
    "max_connections": "connections per process (default: the open-file limit minus a reserve)",
    "ws_max_fragments": "frames per WebSocket message (close 1009 above; default "
    "ws-max-size / 64, at least 1024)",
    "ws_max_control_frames": "pings/pongs a client may send per second (close 1008 above; "
    "default 50)",
}


def _add_wire_limits(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("wire limits (0 or off disables one)")
    for name, text in _WIRE_FLAGS.items():
        group.add_argument(
            "--" + name.replace("_", "-"), default=None, type=_wire_value(name), help=text
        )


def _wire_value(flag: str) -> Any:
    field = flag.removeprefix("ws_")

    def check(text: str) -> str:
        try:
            parse_setting(field, text)
        except ConfigurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    return check


def wire_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``NEXIOS_*`` variables for the wire limits given on the command line."""
    return {
        WIRE_ENV[flag.removeprefix("ws_")]: getattr(args, flag)
        for flag in _WIRE_FLAGS
        if getattr(args, flag, None) is not None
    }


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the parsed ``run`` command."""
    ws: Any = args.ws
    if ws == "auto":
        ws = default_ws_protocol()
    http: Any = args.http
    if http == "auto":
        http = default_http_protocol()
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers if args.workers > 1 else None,
        "reload": args.reload,
        "log_level": args.log_level,
        "log_config": log_config(args.log_level),
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": http,
        "ws": ws,
        "ws_max_size": args.ws_max_size,
        "ws_ping_interval": args.ws_ping_interval,
        "ws_ping_timeout": args.ws_ping_timeout,
        "ws_per_message_deflate": args.ws_per_message_deflate,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
        "lifespan": "on",
    }


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``nexios`` loggers, on uvicorn's handler.

    Without this, ``nexios.*`` records below WARNING (refused handshakes, disconnects)
    would go nowhere under ``nexios run``, whatever ``--log-level`` says.
    """
    from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["nexios_redact"] = {"()": "nexios.cli.RedactCredentialsFilter"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("nexios_redact")
    config["loggers"]["nexios"] = {
        "handlers": ["default"],
        "level": LOG_LEVELS[level],  # a number: "TRACE" is not a level name until uvicorn adds it
        "propagate": False,
    }
    return config


class RedactCredentialsFilter(logging.Filter):
    """Keep handshake credentials out of uvicorn's and websockets' log lines.

    Browsers cannot send headers with a WebSocket, so tokens often ride in the query
    string, and uvicorn logs every handshake with it: query values are blanked (names
    stay). At debug level websockets also logs the request line and every header:
    the request line is blanked the same way, and the values of ``Authorization``,
    ``Cookie`` and ``Sec-WebSocket-Protocol`` are replaced.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        msg = record.msg
        if not isinstance(args, tuple) or len(args) < 2 or not isinstance(msg, str):
            return True
        if msg.startswith(('%s - "WebSocket %s"', "< %s %s %s")):
            if isinstance(args[1], str) and "?" in args[1]:
                record.args = (args[0], redact_query(args[1]), *args[2:])
        elif (
            msg in ("< %s: %s", "> %s: %s")
            and isinstance(args[0], str)
            and args[0].lower() in _CREDENTIAL_HEADERS
        ):
            record.args = (args[0], "<redacted>")
        return True


_CREDENTIAL_HEADERS = frozenset(
    ("authorization", "proxy-authorization", "cookie", "set-cookie", "sec-websocket-protocol")
)


def redact_query(path: str) -> str:
    """``/ws?token=abc&x=1`` → ``/ws?token=<redacted>&x=<redacted>``."""
    base, _, query = path.partition("?")
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return base + "?" + "&".join(f"{name}=<redacted>" for name in names)


def workers_warning(workers: int, channels_url: str | None) -> str | None:
    """Several processes on the in-memory layer do not share groups: say so."""
    if workers > 1 and (channels_url or "memory://").startswith("memory:"):
        return (
            f"nexios: --workers {workers} with the in-memory channel layer: each process has "
            "its own groups, history and presence. Set NEXIOS_CHANNELS_URL=redis://host:6379/0 "
            "(or --channels-url) to share them."
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        import os

        import uvicorn

        if args.channels_url:
            os.environ["NEXIOS_CHANNELS_URL"] = args.channels_url
        os.environ.update(wire_environment(args))
        warning = workers_warning(args.workers, os.environ.get("NEXIOS_CHANNELS_URL"))
        if warning:
            print(warning, file=sys.stderr)
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        uvicorn.run(args.app, **server_options(args))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
