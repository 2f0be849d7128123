"""nexios.logs: JSON lines, uvicorn's fields picked out, credentials redacted, dictConfig."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from nexios.logs import (
    LOG_FIELDS,
    JSONFormatter,
    RedactCredentialsFilter,
    log_config,
    redact_query,
)

ACCESS = '%s - "%s %s HTTP/%s" %d'


def record(
    msg: str,
    *args: Any,
    name: str = "nexios.websockets",
    level: int = logging.INFO,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(
        name, level, __file__, 1, msg, args, exc_info, extra=extra
    )
    return made


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    RedactCredentialsFilter().filter(made)
    line = JSONFormatter().format(made)
    assert "\n" not in line
    loaded: dict[str, Any] = json.loads(line)
    return loaded


def test_the_four_keys_always_there() -> None:
    entry = as_json(record("WebSocket %s closed", "/ws", level=logging.WARNING))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "nexios.websockets"
    assert entry["message"] == "WebSocket /ws closed"
    # RFC 3339, UTC, milliseconds: 2026-01-31T12:00:00.123Z
    assert len(entry["time"]) == 24 and entry["time"].endswith("Z") and entry["time"][10] == "T"


def test_time_is_the_record_time_in_utc() -> None:
    made = record("x")
    made.created = 0.5
    assert as_json(made)["time"] == "1970-01-01T00:00:00.500Z"


def test_extra_fields_are_kept_with_their_types() -> None:
    entry = as_json(
        record(
            "evicted",
            extra={"connection_id": "ab" * 16, "group": "room:1", "close_code": 1013, "n": 2.5},
        )
    )
    assert entry["connection_id"] == "ab" * 16
    assert entry["group"] == "room:1"
    assert entry["close_code"] == 1013
    assert entry["n"] == 2.5


def test_unserializable_extra_is_written_as_its_repr() -> None:
    entry = as_json(record("x", extra={"thing": object}))
    assert entry["thing"] == "<class 'object'>"


def test_uvicorn_colour_message_is_left_out() -> None:
    entry = as_json(record("Started", name="uvicorn.error", extra={"color_message": "\x1b[1m"}))
    assert "color_message" not in entry


def test_exception_is_one_escaped_string() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    entry = as_json(made)
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: boom" in entry["exception"]


def test_access_line_fields_and_redaction() -> None:
    made = record(
        ACCESS, "10.0.0.7:5123", "GET", "/dash?token=s3cret&x=1", "1.1", 200, name="uvicorn.access"
    )
    entry = as_json(made)
    assert entry["client"] == "10.0.0.7:5123"
    assert entry["method"] == "GET"
    assert entry["path"] == "/dash?token=<redacted>&x=<redacted>"
    assert entry["http_version"] == "1.1"
    assert entry["status"] == 200
    assert "s3cret" not in json.dumps(entry)


@pytest.mark.parametrize(
    ("msg", "args", "status"),
    [
        ('%s - "WebSocket %s" [accepted]', ("1.2.3.4:5", "/ws?token=t0k"), 101),
        ('%s - "WebSocket %s" 403', ("1.2.3.4:5", "/ws?token=t0k"), 403),
        ('%s - "WebSocket %s" %d', ("1.2.3.4:5", "/ws?token=t0k", 429), 429),
    ],
)
def test_websocket_handshake_line_fields(msg: str, args: tuple[Any, ...], status: int) -> None:
    entry = as_json(record(msg, *args, name="uvicorn.error"))
    assert entry["client"] == "1.2.3.4:5"
    assert entry["path"] == "/ws?token=<redacted>"
    assert entry["status"] == status
    assert "t0k" not in entry["message"]


def test_other_records_get_no_request_fields() -> None:
    entry = as_json(record("%s and %s", "a", "b", name="uvicorn.error"))
    assert entry["message"] == "a and b"
    assert not {"client", "path", "status"} & entry.keys()


def test_credential_headers_redacted_in_websockets_debug_lines() -> None:
    made = record("< %s: %s", "Authorization", "Bearer abc", name="uvicorn.error")
    RedactCredentialsFilter().filter(made)
    assert made.getMessage() == "< Authorization: <redacted>"
    kept = record("< %s: %s", "Host", "example.com", name="uvicorn.error")
    RedactCredentialsFilter().filter(kept)
    assert kept.getMessage() == "< Host: example.com"


def test_access_path_without_query_is_untouched() -> None:
    made = record(ACCESS, "c", "GET", "/pid", "1.1", 200, name="uvicorn.access")
    RedactCredentialsFilter().filter(made)
    assert made.args == ("c", "GET", "/pid", "1.1", 200)


def test_redact_query() -> None:
    assert redact_query("/ws?token=abc&x=1") == "/ws?token=<redacted>&x=<redacted>"
    assert redact_query("/ws?flag") == "/ws?flag=<redacted>"


def test_documented_fields_cover_what_nexios_writes() -> None:
    for name in ("connection_id", "group", "close_code", "client", "path", "status", "reason"):
        assert name in LOG_FIELDS


# --------------------------------------------------------------------------- dictConfig


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """dictConfig replaces global logging state: put the test runner's back afterwards."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "nexios", "")
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    disabled = {
        name: logger.disabled
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    for name, (handlers, level, propagate, was_disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = was_disabled
    for name, was_disabled in disabled.items():
        logging.getLogger(name).disabled = was_disabled


def configure(level: str, log_format: str, stream: io.StringIO) -> None:
    config = log_config(level, log_format)
    for handler in config["handlers"].values():
        handler["stream"] = stream
    logging.config.dictConfig(config)


def test_json_config_writes_json_lines_for_every_logger(restore_logging: None) -> None:
    stream = io.StringIO()
    configure("debug", "json", stream)
    logging.getLogger("nexios.channels").debug("joined", extra={"group": "g"})
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("uvicorn.access").info(ACCESS, "c:1", "GET", "/p?k=v", "1.1", 404)
    logging.getLogger("myapp").warning("disk %s", "full")
    logging.getLogger("myapp").info("not shown: the root logger starts at WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in lines] == [
        ("nexios.channels", "joined"),
        ("uvicorn.error", "Started server process [1]"),
        ("uvicorn.access", 'c:1 - "GET /p?k=<redacted> HTTP/1.1" 404'),
        ("myapp", "disk full"),
    ]
    assert lines[0]["group"] == "g"
    assert lines[2]["status"] == 404


def test_text_config_keeps_uvicorn_format(restore_logging: None) -> None:
    stream = io.StringIO()
    configure("info", "text", stream)
    logging.getLogger("nexios.websockets").info("WebSocket %s refused", "/x")
    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" 403', "c:1", "/ws?token=z")
    assert stream.getvalue().splitlines() == [
        "INFO:     WebSocket /x refused",
        'INFO:     c:1 - "WebSocket /ws?token=<redacted>" 403',
    ]


def test_text_config_leaves_the_root_logger_alone() -> None:
    assert "root" not in log_config("info", "text")


@pytest.mark.parametrize(("level", "number"), [("debug", 10), ("info", 20), ("trace", 5)])
def test_nexios_loggers_at_the_level(level: str, number: int) -> None:
    for log_format in ("text", "json"):
        assert log_config(level, log_format)["loggers"]["nexios"] == {
            "handlers": ["default"],
            "level": number,
            "propagate": False,
        }


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format must be one of"):
        log_config("info", "xml")
