"""Log configuration for ``nexios run``: text or JSON lines, credentials kept out.

``nexios run --log-format json`` writes one JSON object per line, on the same streams
as uvicorn (access lines on stdout, the rest on stderr), for uvicorn's loggers, the
``nexios.*`` loggers and, from WARNING up, any other logger (the app's own)::

    {"time": "2026-01-31T12:00:00.123Z", "level": "INFO", "logger": "nexios.websockets",
     "message": "...", "connection_id": "3f2a...", "close_code": 1008}

Always present: ``time`` (UTC, RFC 3339, milliseconds), ``level``, ``logger``,
``message``; ``exception`` (the formatted traceback) when one is attached. Then the
fields a record carries — nexios passes them with ``extra=`` (see :data:`LOG_FIELDS`
for their names and meaning), and so can an app: every ``extra=`` key is kept.
uvicorn's access and WebSocket handshake lines get ``client``, ``method``, ``path``,
``http_version`` and ``status`` picked out of their arguments.

Redaction (:class:`RedactCredentialsFilter`) runs on both formats: query string values in
uvicorn's access and WebSocket lines, credential headers in websockets' debug lines.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import orjson
from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

__all__ = [
    "LOG_FIELDS",
    "LOG_FORMATS",
    "JSONFormatter",
    "RedactCredentialsFilter",
    "log_config",
    "redact_query",
]

LOG_FORMATS = ("text", "json")
"""Values of ``nexios run --log-format``."""

LOG_FIELDS: dict[str, str] = {
    "connection_id": "id of the WebSocket connection (its channel's uuid, 32 hex digits)",
    "group": "name of the channel group the record is about",
    "close_code": "WebSocket close code (int) the connection ended or was refused with",
    "client": 'peer address, "host:port" (the forwarded one behind a trusted proxy)',
    "path": "request path, query values redacted",
    "status": "HTTP status of a response or a refused handshake (int)",
    "reason": "short machine-readable cause: origin, auth, limit, unknown_path, ...",
    "method": "HTTP method (access lines)",
    "http_version": "HTTP version (access lines)",
}
"""The structured fields nexios writes into JSON log lines, by name. Code that logs
about a connection passes them with ``extra={"connection_id": ..., "group": ...}``."""

_ACCESS = '%s - "%s %s HTTP/%s" %d'
_WS_ACCEPTED = '%s - "WebSocket %s" [accepted]'
_WS_REFUSED = '%s - "WebSocket %s" 403'
_WS_STATUS = '%s - "WebSocket %s" %d'
_WS_DEBUG_REQUEST = "< %s %s %s"
_CREDENTIAL_HEADERS = frozenset(
    ("authorization", "proxy-authorization", "cookie", "set-cookie", "sec-websocket-protocol")
)


class RedactCredentialsFilter(logging.Filter):
    """Keep credentials out of uvicorn's and websockets' log lines.

    Browsers cannot send headers with a WebSocket, so tokens often ride in the query
    string, and uvicorn logs every handshake and HTTP request with it: query values are
    blanked (names stay). At debug level websockets also logs the request line and every
    header: the request line is blanked the same way, and the values of
    ``Authorization``, ``Cookie`` and ``Sec-WebSocket-Protocol`` are replaced.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        msg = record.msg
        if not isinstance(args, tuple) or len(args) < 2 or not isinstance(msg, str):
            return True
        if msg == _ACCESS and len(args) == 5:
            if isinstance(args[2], str) and "?" in args[2]:
                record.args = (*args[:2], redact_query(args[2]), *args[3:])
        elif msg.startswith(('%s - "WebSocket %s"', _WS_DEBUG_REQUEST)):
            if isinstance(args[1], str) and "?" in args[1]:
                record.args = (args[0], redact_query(args[1]), *args[2:])
        elif (
            msg in ("< %s: %s", "> %s: %s")
            and isinstance(args[0], str)
            and args[0].lower() in _CREDENTIAL_HEADERS
        ):
            record.args = (args[0], "<redacted>")
        return True


def redact_query(path: str) -> str:
    """``/ws?token=abc&x=1`` → ``/ws?token=<redacted>&x=<redacted>``."""
    base, _, query = path.partition("?")
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return base + "?" + "&".join(f"{name}=<redacted>" for name in names)


# Attributes every LogRecord has, and uvicorn's colour variant of the message: anything
# else on a record came from ``extra=`` and goes into the JSON object.
_RECORD_ATTRIBUTES = frozenset(
    (
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "color_message",
        "taskName",
    )
)


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line; see the module docstring for the keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_uvicorn_fields(record))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=repr).decode()


def _rfc3339(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _uvicorn_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Structured fields out of uvicorn's access and WebSocket handshake lines."""
    args = record.args
    if not isinstance(args, tuple) or not args:
        return {}
    msg = record.msg
    if msg == _ACCESS and len(args) == 5:
        client, method, path, version, status = args
        return {
            "client": client,
            "method": method,
            "path": path,
            "http_version": version,
            "status": status,
        }
    if msg in (_WS_ACCEPTED, _WS_REFUSED, _WS_STATUS):
        fields: dict[str, Any] = {"client": args[0], "path": args[1]}
        if msg == _WS_ACCEPTED:
            fields["status"] = 101
        elif msg == _WS_REFUSED:
            fields["status"] = 403
        elif len(args) > 2:
            fields["status"] = args[2]
        return fields
    return {}


def log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging config plus the ``nexios`` loggers, with redaction, as text or JSON.

    The ``nexios`` logger gets uvicorn's handler at ``level``: without it, ``nexios.*``
    records below WARNING (refused handshakes, disconnects) would go nowhere. In JSON,
    the root logger gets that handler too (from WARNING), so the app's own warnings are
    JSON lines instead of bare text on stderr.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {log_format!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["nexios_redact"] = {"()": RedactCredentialsFilter}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("nexios_redact")
    config["loggers"]["nexios"] = {
        "handlers": ["default"],
        "level": LOG_LEVELS[level],  # a number: "TRACE" is not a level name until uvicorn adds it
        "propagate": False,
    }
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": JSONFormatter}
        config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
