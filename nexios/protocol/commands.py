"""Client commands: parse and validate a frame into a typed command, or encode one.

>>> parse_command(b'{"id": 2, "type": "subscribe", "group": "room", "since": 41}')
SubscribeCommand(id=2, group='room', since=41, epoch=None, presence=False)

Every malformed frame raises :class:`~nexios.protocol.codes.ProtocolError` with the code
``docs/protocol.md`` gives for it. No I/O: the server endpoint and the Python client both
use this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from nexios.protocol.codes import ErrorCode, ProtocolError

__all__ = [
    "COMMAND_TYPES",
    "MAX_SAFE_INTEGER",
    "Command",
    "ConnectCommand",
    "HistoryCommand",
    "PingCommand",
    "PongCommand",
    "PresenceCommand",
    "ProtocolLimits",
    "PublishCommand",
    "RefreshCommand",
    "SubscribeCommand",
    "SubscribeOptions",
    "UnsubscribeCommand",
    "encode_command",
    "parse_command",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest ``id`` or ``since``: JavaScript's ``Number.MAX_SAFE_INTEGER``."""


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    """Bounds on what a command may carry (``docs/protocol.md``, Limits)."""

    max_group_length: int = 256
    max_token_length: int = 8192
    max_epoch_length: int = 64
    max_key_length: int = 128
    max_history_limit: int = 1000
    default_history_limit: int = 100
    max_connect_groups: int = 128


DEFAULT_LIMITS = ProtocolLimits()


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """Where to start in a group, and whether to watch its presence."""

    since: int | None = None
    epoch: str | None = None
    presence: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.since is not None:
            out["since"] = self.since
        if self.epoch is not None:
            out["epoch"] = self.epoch
        if self.presence:
            out["presence"] = True
        return out


@dataclass(frozen=True, slots=True)
class ConnectCommand:
    """The first command: the token and the groups to (re)join."""

    id: int
    token: str | None = None
    groups: dict[str, SubscribeOptions] = field(default_factory=dict)
    type = "connect"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": "connect"}
        if self.token is not None:
            out["token"] = self.token
        if self.groups:
            out["groups"] = {name: opts.to_dict() for name, opts in self.groups.items()}
        return out


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    """Join a group, optionally from a position (``since`` in ``epoch``)."""

    id: int
    group: str
    since: int | None = None
    epoch: str | None = None
    presence: bool = False
    type = "subscribe"

    @property
    def options(self) -> SubscribeOptions:
        return SubscribeOptions(self.since, self.epoch, self.presence)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "subscribe", "group": self.group, **self.options.to_dict()}


@dataclass(frozen=True, slots=True)
class UnsubscribeCommand:
    """Leave a group."""

    id: int
    group: str
    type = "unsubscribe"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "unsubscribe", "group": self.group}


@dataclass(frozen=True, slots=True)
class PublishCommand:
    """Send ``data`` to a group; a retry with the same ``idempotency_key`` counts once."""

    id: int
    group: str
    data: Any
    idempotency_key: str | None = None
    type = "publish"

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "type": "publish", "group": self.group, "data": self.data}
        if self.idempotency_key is not None:
            out["idempotency_key"] = self.idempotency_key
        return out


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    """Read saved messages: after ``since``, or the newest ``limit``."""

    id: int
    group: str
    since: int | None = None
    limit: int = DEFAULT_LIMITS.default_history_limit
    epoch: str | None = None
    type = "history"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": "history", "group": self.group}
        if self.since is not None:
            out["since"] = self.since
        out["limit"] = self.limit
        if self.epoch is not None:
            out["epoch"] = self.epoch
        return out


@dataclass(frozen=True, slots=True)
class PresenceCommand:
    """List a group's members."""

    id: int
    group: str
    type = "presence"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "presence", "group": self.group}


@dataclass(frozen=True, slots=True)
class RefreshCommand:
    """Replace the connection's token before it expires."""

    id: int
    token: str
    type = "refresh"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "refresh", "token": self.token}


@dataclass(frozen=True, slots=True)
class PingCommand:
    """A round trip; the reply is empty."""

    id: int
    type = "ping"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "ping"}


@dataclass(frozen=True, slots=True)
class PongCommand:
    """The answer to a ``ping`` push: no ``id``, no reply."""

    type = "pong"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "pong"}


Command: TypeAlias = (
    ConnectCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | PublishCommand
    | HistoryCommand
    | PresenceCommand
    | RefreshCommand
    | PingCommand
    | PongCommand
)


def encode_command(command: Command) -> bytes:
    """The frame for ``command`` (UTF-8 JSON), as a client sends it."""
    return orjson.dumps(command.to_dict())


# ---------------------------------------------------------------------- parsing


def parse_command(frame: str | bytes, limits: ProtocolLimits = DEFAULT_LIMITS) -> Command:
    """Parse and validate one client frame. Raises ``ProtocolError`` with the documented code."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"the frame is not JSON ({error}); send one JSON object"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"a command is a JSON object, got {type(obj).__name__}",
        )
    kind = obj.get("type")
    if kind == "pong" and "id" not in obj:
        _only(obj, _PONG_FIELDS, None)
        return PongCommand()
    command_id = _command_id(obj)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"unknown command type {kind!r}; expected one of {', '.join(COMMAND_TYPES)}",
            command_id=command_id,
            field="type",
        )
    return parser(obj, command_id, limits)


def _command_id(obj: dict[str, Any]) -> int:
    value = obj.get("id")
    if type(value) is not int or not 1 <= value <= MAX_SAFE_INTEGER:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f'"id" must be an integer from 1 to 2**53-1, got {value!r}',
            field="id",
        )
    return value


def _only(obj: dict[str, Any], allowed: frozenset[str], command_id: int | None) -> None:
    if obj.keys() <= allowed:
        return
    unknown = sorted(set(obj) - allowed)
    raise ProtocolError(
        ErrorCode.BAD_REQUEST,
        f"unknown field {unknown[0]!r} for {obj.get('type')!r}; "
        f"allowed: {', '.join(sorted(allowed))}",
        command_id=command_id,
        field=unknown[0],
    )


def _bad(command_id: int | None, name: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(
        ErrorCode.BAD_REQUEST,
        f'"{name}" must be {expected}, got {_short(value)}',
        command_id=command_id,
        field=name,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _group(value: Any, command_id: int | None, limits: ProtocolLimits, name: str = "group") -> str:
    if not isinstance(value, str):
        raise _bad(command_id, name, "a group name (a string)", value)
    if not 1 <= len(value) <= limits.max_group_length or not value.isprintable():
        raise ProtocolError(
            ErrorCode.UNKNOWN_GROUP,
            f"no group {_short(value)}: a group name has 1 to {limits.max_group_length} "
            "printable characters",
            command_id=command_id,
            field=name,
        )
    return value


def _required_group(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> str:
    if "group" not in obj:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f'{obj["type"]!r} needs a "group"',
            command_id=command_id,
            field="group",
        )
    return _group(obj["group"], command_id, limits)


def _since(value: Any, command_id: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
        raise _bad(command_id, "since", "the last seq you have (an integer, 0 or more)", value)
    return value


def _short_string(value: Any, command_id: int, name: str, maximum: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= maximum:
        raise _bad(command_id, name, f"{what} (1 to {maximum} characters)", value)
    return value


def _flag(value: Any, command_id: int, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(command_id, name, "true or false", value)
    return value


def _token(value: Any, command_id: int, limits: ProtocolLimits, required: bool) -> str | None:
    if value is None:
        if required:
            raise _bad(command_id, "token", "a string", value)
        return None
    if not isinstance(value, str):
        raise _bad(command_id, "token", "a string", value)
    if len(value) > limits.max_token_length:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"the token has {len(value)} characters; at most {limits.max_token_length}",
            command_id=command_id,
            field="token",
        )
    return value


def _options(value: Any, command_id: int, limits: ProtocolLimits) -> SubscribeOptions:
    return SubscribeOptions(
        since=_since(value.get("since"), command_id),
        epoch=_short_string(
            value.get("epoch"), command_id, "epoch", limits.max_epoch_length, "an epoch"
        ),
        presence=_flag(value.get("presence"), command_id, "presence"),
    )


_PONG_FIELDS = frozenset({"type"})
_OPTION_FIELDS = frozenset({"since", "epoch", "presence"})
_CONNECT_FIELDS = frozenset({"id", "type", "token", "groups"})
_SUBSCRIBE_FIELDS = frozenset({"id", "type", "group"}) | _OPTION_FIELDS
_GROUP_FIELDS = frozenset({"id", "type", "group"})
_PUBLISH_FIELDS = frozenset({"id", "type", "group", "data", "idempotency_key"})
_HISTORY_FIELDS = frozenset({"id", "type", "group", "since", "limit", "epoch"})
_REFRESH_FIELDS = frozenset({"id", "type", "token"})
_PING_FIELDS = frozenset({"id", "type"})


def _connect(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> ConnectCommand:
    _only(obj, _CONNECT_FIELDS, command_id)
    token = _token(obj.get("token"), command_id, limits, required=False)
    raw = obj.get("groups")
    if raw is None:
        return ConnectCommand(command_id, token)
    if not isinstance(raw, dict):
        raise _bad(command_id, "groups", "an object of group name → options", raw)
    if len(raw) > limits.max_connect_groups:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"connect lists {len(raw)} groups; at most {limits.max_connect_groups}",
            command_id=command_id,
            field="groups",
        )
    groups: dict[str, SubscribeOptions] = {}
    for name, value in raw.items():
        _group(name, command_id, limits, "groups")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _bad(command_id, "groups", f"options for {name!r} as an object", value)
        unknown = sorted(set(value) - _OPTION_FIELDS)
        if unknown:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"unknown field {unknown[0]!r} in the options of group {name!r}; "
                f"allowed: {', '.join(sorted(_OPTION_FIELDS))}",
                command_id=command_id,
                field=unknown[0],
            )
        groups[name] = _options(value, command_id, limits)
    return ConnectCommand(command_id, token, groups)


def _subscribe(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> SubscribeCommand:
    _only(obj, _SUBSCRIBE_FIELDS, command_id)
    group = _required_group(obj, command_id, limits)
    options = _options(obj, command_id, limits)
    return SubscribeCommand(command_id, group, options.since, options.epoch, options.presence)


def _unsubscribe(
    obj: dict[str, Any], command_id: int, limits: ProtocolLimits
) -> UnsubscribeCommand:
    _only(obj, _GROUP_FIELDS, command_id)
    return UnsubscribeCommand(command_id, _required_group(obj, command_id, limits))


def _publish(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> PublishCommand:
    _only(obj, _PUBLISH_FIELDS, command_id)
    group = _required_group(obj, command_id, limits)
    if obj.get("data") is None:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            '"publish" needs "data": any JSON value but null',
            command_id=command_id,
            field="data",
        )
    key = _short_string(
        obj.get("idempotency_key"),
        command_id,
        "idempotency_key",
        limits.max_key_length,
        "a string",
    )
    return PublishCommand(command_id, group, obj["data"], key)


def _history(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> HistoryCommand:
    _only(obj, _HISTORY_FIELDS, command_id)
    group = _required_group(obj, command_id, limits)
    limit = obj.get("limit")
    if limit is None:
        limit = limits.default_history_limit
    elif type(limit) is not int or limit < 1:
        raise _bad(command_id, "limit", "a positive integer", limit)
    elif limit > limits.max_history_limit:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f'"limit" is {limit}; at most {limits.max_history_limit} (page with "since")',
            command_id=command_id,
            field="limit",
        )
    return HistoryCommand(
        command_id,
        group,
        _since(obj.get("since"), command_id),
        limit,
        _short_string(obj.get("epoch"), command_id, "epoch", limits.max_epoch_length, "an epoch"),
    )


def _presence(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> PresenceCommand:
    _only(obj, _GROUP_FIELDS, command_id)
    return PresenceCommand(command_id, _required_group(obj, command_id, limits))


def _refresh(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> RefreshCommand:
    _only(obj, _REFRESH_FIELDS, command_id)
    token = _token(obj.get("token"), command_id, limits, required=True)
    assert token is not None
    return RefreshCommand(command_id, token)


def _ping(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> PingCommand:
    _only(obj, _PING_FIELDS, command_id)
    return PingCommand(command_id)


def _pong_with_id(obj: dict[str, Any], command_id: int, limits: ProtocolLimits) -> PongCommand:
    raise ProtocolError(
        ErrorCode.BAD_REQUEST,
        '"pong" has no "id": send {"type": "pong"}',
        command_id=command_id,
        field="id",
    )


_PARSERS: dict[str, Callable[[dict[str, Any], int, ProtocolLimits], Command]] = {
    "connect": _connect,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "publish": _publish,
    "history": _history,
    "presence": _presence,
    "refresh": _refresh,
    "ping": _ping,
    "pong": _pong_with_id,
}

COMMAND_TYPES: tuple[str, ...] = tuple(_PARSERS)
"""Every command ``type``, in documentation order."""
