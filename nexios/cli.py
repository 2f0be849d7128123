"""``nexios run module:app``: serve an app with uvicorn, tuned for WebSockets, ready to deploy.
``nexios listen URL GROUP``: print a group's messages from a channels endpoint (debugging).

Defaults are the fastest sound configuration measured in ``bench/``: uvloop, httptools,
uvicorn's sans-I/O ``websockets`` implementation, and per-message deflate off
(``--ws-per-message-deflate`` turns it on). ``python -m nexios run ...`` works too.

Deployment options keep uvicorn's names, meanings and defaults: binding (``--uds``,
``--fd``, ``--backlog``), TLS (``--ssl-*``), proxies (``--proxy-headers``,
``--forwarded-allow-ips``: behind a trusted proxy ``scope["client"]`` is the forwarded
client, so the per-address connection limit counts real clients), the app (``--factory``,
``--app-dir``, ``--env-file``, ``--root-path``), HTTP (``--timeout-keep-alive``,
``--limit-concurrency``, ``--header``...) and logs (``--access-log/--no-access-log``,
``--log-config``); plus ``--log-format json`` (see :mod:`nexios.logs`) and ``--metrics``
(Prometheus metrics at ``/metrics``, summed over ``--workers``: see
:mod:`nexios.metrics`). See ``docs/deployment.md`` and ``docs/operations.md``.

Safety defaults: the server refuses WebSocket messages over ``--ws-max-size`` (1 MiB,
close 1009) before the app buffers them; the framework's own, tighter limit
(``NEXIOS_MAX_MESSAGE_SIZE``, 64 KiB) applies above it — raise both together. Shutdown
waits at most ``--timeout-graceful-shutdown`` (10 s) for handlers. Query strings in
uvicorn's log lines are redacted (``?token=...`` → ``?token=<redacted>``), as tokens often
travel there, and so are credential headers in websockets' debug lines.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import shutil
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from dotenv import load_dotenv
from uvicorn.config import SSL_PROTOCOL_VERSION

from nexios.client import Message, Recovery, Subscription, connect
from nexios.exceptions import ConfigurationError, ProtocolError
from nexios.logs import LOG_FORMATS, JSONFormatter, RedactCredentialsFilter, log_config
from nexios.metrics import MULTIPROC_ENV, multiprocess_dir, prepare_multiprocess_dir
from nexios.wire import default_http_protocol, default_ws_protocol
from nexios.wire.settings import ENV as WIRE_ENV
from nexios.wire.settings import parse_setting

__all__ = [
    "DEFAULT_WS_MAX_SIZE",
    "RedactCredentialsFilter",
    "build_parser",
    "check_arguments",
    "listen",
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
    _add_socket_options(run)
    _add_app_options(run)
    _add_websocket_options(run)
    _add_http_options(run)
    _add_proxy_options(run)
    _add_tls_options(run)
    _add_log_options(run)
    _add_metrics_options(run)
    _add_wire_limits(run)
    _add_listen_command(commands)
    return parser


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the parsed ``run`` command."""
    return {
        **_socket_options(args),
        **_app_options(args),
        **_websocket_options(args),
        **_http_options(args),
        **_proxy_options(args),
        **_tls_options(args),
        **_log_options(args),
    }


# --------------------------------------------------------------------------- binding


def _add_socket_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("binding and processes")
    group.add_argument("--host", default="127.0.0.1", help="bind to this address")
    group.add_argument("--port", type=int, default=8000, help="bind to this port (0: any free)")
    group.add_argument("--uds", default=None, help="bind to a UNIX domain socket at this path")
    group.add_argument(
        "--fd", type=int, default=None, help="serve on an inherited listening socket (systemd)"
    )
    group.add_argument("--backlog", type=int, default=2048, help="listen queue length")
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes, default $WEB_CONCURRENCY or 1 (share state with a redis:// URL)",
    )
    group.add_argument("--reload", action="store_true", help="restart on code changes")


def _socket_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "uds": args.uds,
        "fd": args.fd,
        "backlog": args.backlog,
        "workers": args.workers,
        "reload": args.reload,
    }


# --------------------------------------------------------------------------- the app


def _add_app_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("the app")
    group.add_argument("--factory", action="store_true", help="APP is a function returning the app")
    group.add_argument(
        "--app-dir", default="", help="import APP from this directory (default: the cwd)"
    )
    group.add_argument(
        "--env-file",
        default=None,
        help="load environment variables from this file (the process environment wins)",
    )
    group.add_argument(
        "--root-path", default="", help="URL prefix the app is mounted under by a proxy"
    )
    group.add_argument("--channels-url", default=None, help="sets NEXIOS_CHANNELS_URL")


def _app_options(args: argparse.Namespace) -> dict[str, Any]:
    # --env-file and --channels-url are applied by main() to the environment, so that
    # the workers warning and every worker process see them.
    return {
        "factory": args.factory,
        "app_dir": args.app_dir,
        "root_path": args.root_path,
        "lifespan": "on",
    }


# --------------------------------------------------------------------------- WebSockets


def _add_websocket_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("WebSockets")
    group.add_argument(
        "--ws-max-size",
        type=int,
        default=DEFAULT_WS_MAX_SIZE,
        help="largest WebSocket message the server accepts, in bytes (closes 1009 above)",
    )
    group.add_argument("--ws-ping-interval", type=float, default=20.0)
    group.add_argument("--ws-ping-timeout", type=float, default=20.0)
    group.add_argument("--ws-per-message-deflate", action="store_true")
    group.add_argument(
        "--ws",
        default="auto",
        help="WebSocket implementation: auto (picows's compiled wire, else the hardened "
        "sans-I/O one), nexios.server:PicowsWebSocketProtocol, "
        "nexios.server:NexiosWebSocketProtocol, websockets-sansio, websockets, wsproto",
    )
    group.add_argument(
        "--http",
        default="auto",
        help="HTTP implementation: auto (httptools with a handshake timeout and caps, "
        "nexios.server:GuardedHttpToolsProtocol), httptools, h11",
    )


def _websocket_options(args: argparse.Namespace) -> dict[str, Any]:
    ws: Any = default_ws_protocol() if args.ws == "auto" else args.ws
    http: Any = default_http_protocol() if args.http == "auto" else args.http
    return {
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": http,
        "ws": ws,
        "ws_max_size": args.ws_max_size,
        "ws_ping_interval": args.ws_ping_interval,
        "ws_ping_timeout": args.ws_ping_timeout,
        "ws_per_message_deflate": args.ws_per_message_deflate,
    }


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


# --------------------------------------------------------------------------- HTTP


def _add_http_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("HTTP and connections")
    group.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=5,
        help="seconds an idle HTTP keep-alive connection stays open (not WebSockets)",
    )
    group.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=10.0,
        help="seconds shutdown waits for connections and handlers before cancelling them",
    )
    group.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        help="open connections (WebSockets included) above which the server answers 503",
    )
    group.add_argument(
        "--limit-max-requests",
        type=int,
        default=None,
        help="a worker exits after this many requests (its WebSockets are closed)",
    )
    group.add_argument(
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header on every response; repeatable",
    )
    group.add_argument("--server-header", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--date-header", action=argparse.BooleanOptionalAction, default=True)


def _http_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "timeout_keep_alive": args.timeout_keep_alive,
        "timeout_graceful_shutdown": args.timeout_graceful_shutdown,
        "limit_concurrency": args.limit_concurrency,
        "limit_max_requests": args.limit_max_requests,
        "headers": [_header(text) for text in args.headers],
        "server_header": args.server_header,
        "date_header": args.date_header,
    }


def _header(text: str) -> tuple[str, str]:
    name, _, value = text.partition(":")
    return name.strip(), value.strip()


# --------------------------------------------------------------------------- proxies


def _add_proxy_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("behind a proxy")
    group.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take the client address and scheme from X-Forwarded-For and "
        "X-Forwarded-Proto, when the peer is a trusted proxy",
    )
    group.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated addresses and networks of trusted proxies, or '*' (needed "
        "with --uds); default $FORWARDED_ALLOW_IPS or 127.0.0.1,::1",
    )


def _proxy_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "proxy_headers": args.proxy_headers,
        "forwarded_allow_ips": args.forwarded_allow_ips,
    }


# --------------------------------------------------------------------------- TLS


def _add_tls_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("TLS (https and wss)")
    group.add_argument("--ssl-certfile", default=None, help="certificate chain file (PEM)")
    group.add_argument("--ssl-keyfile", default=None, help="private key file (PEM)")
    group.add_argument("--ssl-keyfile-password", default=None, help="password of the key file")
    group.add_argument(
        "--ssl-ca-certs", default=None, help="CA certificates to verify client certificates"
    )
    group.add_argument(
        "--ssl-cert-reqs",
        type=int,
        default=int(ssl.CERT_NONE),
        help="client certificates: 0 not asked, 1 optional, 2 required",
    )
    group.add_argument("--ssl-version", type=int, default=int(SSL_PROTOCOL_VERSION))
    group.add_argument("--ssl-ciphers", default=None, help="OpenSSL cipher list")


def _tls_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile": args.ssl_keyfile,
        "ssl_keyfile_password": args.ssl_keyfile_password,
        "ssl_ca_certs": args.ssl_ca_certs,
        "ssl_cert_reqs": args.ssl_cert_reqs,
        "ssl_version": args.ssl_version,
        "ssl_ciphers": args.ssl_ciphers,
    }


# --------------------------------------------------------------------------- logs


def _add_log_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("logs")
    group.add_argument("--log-level", default="info", choices=_LOG_LEVELS)
    group.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="json: one JSON object per line (time, level, logger, message, fields)",
    )
    group.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per HTTP request and WebSocket handshake",
    )
    group.add_argument(
        "--log-config",
        default=None,
        help="a logging config file (.json, .yaml, .ini) replacing nexios's; add "
        "nexios.logs.RedactCredentialsFilter to its handlers to keep credentials out",
    )


def _log_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "log_level": args.log_level,
        "log_config": args.log_config or log_config(args.log_level, args.log_format),
        "access_log": args.access_log,
    }


# --------------------------------------------------------------------------- metrics


def _add_metrics_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("metrics")
    group.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics (sets NEXIOS_METRICS=1); with --workers "
        "every worker's metrics are summed",
    )
    group.add_argument(
        "--metrics-dir",
        default=None,
        help="with --workers: the folder the workers share their metrics in, emptied at "
        f"start (default ${MULTIPROC_ENV}, else a new temporary folder)",
    )


# --------------------------------------------------------------------------- listen


def _add_listen_command(commands: Any) -> None:
    listen = commands.add_parser(
        "listen",
        help="print a group's messages, one JSON line each: nexios listen URL GROUP",
        description="Connect to a channels endpoint (app.channels_endpoint) and print the "
        "messages of one or more groups as JSON lines on stdout; reconnects and recovers "
        "by itself. Notes (recoveries, reconnects) go to stderr.",
    )
    listen.add_argument("url", help="the endpoint, e.g. ws://127.0.0.1:8000/connect")
    listen.add_argument("groups", nargs="+", metavar="GROUP", help="group(s) to print")
    listen.add_argument("--since", type=int, default=None, help="start after this seq")
    listen.add_argument("--epoch", default=None, help="the epoch --since belongs to")
    listen.add_argument(
        "--token", default=None, help="token for the connect frame (default $NEXIOS_TOKEN)"
    )
    listen.add_argument("--presence", action="store_true", help="also print joins and leaves")
    listen.add_argument("--count", type=int, default=None, help="exit after this many messages")
    listen.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to connect and per command"
    )


async def _listen(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()

    def note(text: str) -> None:
        print(f"nexios listen: {text}", file=sys.stderr, flush=True)

    seen = {"connected": False}

    def on_state(state: str, code: int | None) -> None:
        if state == "connected":
            if seen["connected"]:
                note("reconnected")
            seen["connected"] = True
        elif state in ("connecting", "disconnected") and seen["connected"]:
            note(state + (f" ({code})" if code else ""))

    def printer(group: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
        def changed(members: dict[str, Any], change: dict[str, Any]) -> None:
            kind = change.get("type")
            if kind in ("join", "leave"):
                line = {"group": group, kind: change.get("member")}
                print(orjson.dumps(line).decode(), file=out, flush=True)

        return changed

    def recovered(group: str) -> Callable[[Recovery], None]:
        def told(recovery: Recovery) -> None:
            if not recovery.complete:
                note(f"{group}: messages were lost ({recovery.reason}); going on after them")

        return told

    token = args.token or os.environ.get("NEXIOS_TOKEN")
    async with connect(args.url, token=token, timeout=args.timeout, on_state=on_state) as client:
        subscriptions = [
            await client.subscribe(
                group,
                since=args.since,
                epoch=args.epoch,
                presence=args.presence,
                on_recovered=recovered(group),
                on_presence=printer(group) if args.presence else None,
            )
            for group in args.groups
        ]

        async def pump(sub: Subscription) -> None:
            try:
                async for message in sub:
                    queue.put_nowait(message)
            except Exception as error:
                queue.put_nowait(error)

        pumps = [asyncio.create_task(pump(sub)) for sub in subscriptions]
        printed = 0
        try:
            while args.count is None or printed < args.count:
                item = await queue.get()
                if isinstance(item, BaseException):
                    note(str(item))
                    return 1
                line = {
                    "group": item.group,
                    "seq": item.seq,
                    "epoch": item.epoch,
                    "data": item.data,
                }
                print(orjson.dumps(line).decode(), file=out, flush=True)
                printed += 1
        finally:
            for task in pumps:
                task.cancel()
    return 0


def listen(args: argparse.Namespace) -> int:
    """Run ``nexios listen``; its exit status (0, or 1 when the server refused)."""
    try:
        return asyncio.run(_listen(args))
    except KeyboardInterrupt:
        return 0
    except ProtocolError as error:
        print(f"nexios listen: {error}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- main


def check_arguments(args: argparse.Namespace) -> str | None:
    """Why the parsed ``run`` options cannot work, or None; checked before anything starts."""
    for flag, path in (
        ("--ssl-certfile", args.ssl_certfile),
        ("--ssl-keyfile", args.ssl_keyfile),
        ("--ssl-ca-certs", args.ssl_ca_certs),
        ("--env-file", args.env_file),
        ("--log-config", args.log_config),
    ):
        if path is not None and not Path(path).is_file():
            return f"{flag} {path}: no such file"
    if args.ssl_keyfile and not args.ssl_certfile:
        return "--ssl-keyfile needs --ssl-certfile (the certificate the key belongs to)"
    if args.log_config and args.log_format != "text":
        return (
            "--log-config replaces nexios's logging setup, --log-format too: use "
            "nexios.logs.JSONFormatter in the config file instead"
        )
    if args.uds and args.fd is not None:
        return "--uds and --fd both name the socket to serve on: give one"
    bad_headers = [text for text in args.headers if ":" not in text]
    if bad_headers:
        return f"--header takes NAME:VALUE, got {bad_headers[0]!r}"
    if args.metrics_dir and not args.metrics:
        return "--metrics-dir is where --metrics keeps the workers' metrics: add --metrics"
    return None


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        problem = check_arguments(args)
        if problem:
            parser.error(problem)
        _prepare_environment(args)
        made = _prepare_metrics(args)
        try:
            uvicorn.run(args.app, **server_options(args))
        finally:
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
    elif args.command == "listen":
        return listen(args)
    return 0


def _prepare_environment(args: argparse.Namespace) -> None:
    """Apply ``--env-file`` and ``--channels-url``; warn about a setup that cannot share."""
    if args.env_file:
        load_dotenv(args.env_file, override=False)  # as uvicorn: the environment wins
    if args.channels_url:
        os.environ["NEXIOS_CHANNELS_URL"] = args.channels_url
    os.environ.update(wire_environment(args))
    workers = args.workers or int(os.environ.get("WEB_CONCURRENCY") or 1)
    warning = workers_warning(workers, os.environ.get("NEXIOS_CHANNELS_URL"))
    if warning:
        print(_as_log_line(warning, args.log_format), file=sys.stderr)


def _prepare_metrics(args: argparse.Namespace) -> str | None:
    """``--metrics``: turn metrics on in the app; for several workers, give them a clean
    shared folder. Returns the folder if this call made it (removed at exit)."""
    if not args.metrics:
        return None
    os.environ["NEXIOS_METRICS"] = "1"
    workers = args.workers or int(os.environ.get("WEB_CONCURRENCY") or 1)
    given = args.metrics_dir or multiprocess_dir()
    if workers > 1 or given:
        # Workers are new interpreters: they see the variable before importing anything.
        # One process (no --workers) that already had the variable set at its start is
        # in multiprocess mode too, and gets its folder emptied likewise.
        if workers == 1 and args.metrics_dir and not multiprocess_dir():
            print(
                _as_log_line(
                    "nexios: --metrics-dir is used with --workers N; one process keeps its "
                    "metrics in memory",
                    args.log_format,
                ),
                file=sys.stderr,
            )
            return None
        folder = prepare_multiprocess_dir(given)
        return None if given else str(folder)
    return None


def _as_log_line(message: str, log_format: str) -> str:
    """A warning printed before logging is set up, in the format the logs will have."""
    if log_format != "json":
        return message
    record = logging.LogRecord("nexios.cli", logging.WARNING, __file__, 0, message, (), None)
    return JSONFormatter().format(record)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
