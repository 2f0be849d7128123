"""``nexios.protocol.commands``: every valid command round-trips, every malformed frame
maps to the code ``docs/protocol.md`` gives it, and nothing else ever escapes the parser.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexios.protocol import (
    COMMAND_TYPES,
    MAX_SAFE_INTEGER,
    Command,
    ConnectCommand,
    ErrorCode,
    HistoryCommand,
    PingCommand,
    PongCommand,
    PresenceCommand,
    ProtocolError,
    ProtocolLimits,
    PublishCommand,
    RefreshCommand,
    SubscribeCommand,
    SubscribeOptions,
    UnsubscribeCommand,
    encode_command,
    parse_command,
)

LIMITS = ProtocolLimits()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
ids = st.integers(min_value=1, max_value=MAX_SAFE_INTEGER)
groups = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn")),
    min_size=1,
    max_size=LIMITS.max_group_length,
).filter(str.isprintable)
seqs = st.none() | st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)
epochs = st.none() | st.text(min_size=1, max_size=LIMITS.max_epoch_length)
keys = st.none() | st.text(min_size=1, max_size=LIMITS.max_key_length)
tokens = st.text(max_size=200)
options = st.builds(SubscribeOptions, since=seqs, epoch=epochs, presence=st.booleans())

commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        ConnectCommand,
        id=ids,
        token=st.none() | tokens,
        groups=st.dictionaries(groups, options, max_size=5),
    ),
    st.builds(
        SubscribeCommand, id=ids, group=groups, since=seqs, epoch=epochs, presence=st.booleans()
    ),
    st.builds(UnsubscribeCommand, id=ids, group=groups),
    st.builds(
        PublishCommand,
        id=ids,
        group=groups,
        data=json_values.filter(lambda value: value is not None),
        idempotency_key=keys,
    ),
    st.builds(
        HistoryCommand,
        id=ids,
        group=groups,
        since=seqs,
        limit=st.integers(min_value=1, max_value=LIMITS.max_history_limit),
        epoch=epochs,
    ),
    st.builds(PresenceCommand, id=ids, group=groups),
    st.builds(RefreshCommand, id=ids, token=tokens),
    st.builds(PingCommand, id=ids),
    st.just(PongCommand()),
)


def refused(frame: Any) -> ProtocolError:
    raw = frame if isinstance(frame, str | bytes) else orjson.dumps(frame)
    with pytest.raises(ProtocolError) as caught:
        parse_command(raw)
    return caught.value


# ------------------------------------------------------------------ valid commands


@SETTINGS
@given(commands)
def test_every_valid_command_round_trips(command: Command) -> None:
    assert parse_command(encode_command(command)) == command
    assert parse_command(encode_command(command).decode()) == command


def test_defaults_and_nulls() -> None:
    assert parse_command('{"id":1,"type":"connect"}') == ConnectCommand(1)
    assert parse_command(
        '{"id":1,"type":"connect","token":null,"groups":{"a":{},"b":null}}'
    ) == ConnectCommand(1, None, {"a": SubscribeOptions(), "b": SubscribeOptions()})
    assert parse_command(
        '{"id":2,"type":"subscribe","group":"g","since":null,"epoch":null,"presence":null}'
    ) == SubscribeCommand(2, "g")
    history = parse_command('{"id":3,"type":"history","group":"g"}')
    assert history == HistoryCommand(3, "g", None, LIMITS.default_history_limit, None)
    error = refused({"id": 4, "type": "publish", "group": "g", "data": None})
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "data")
    assert parse_command('{"type":"pong"}') == PongCommand()


# ------------------------------------------------------------------ malformed frames


@SETTINGS
@given(st.binary(max_size=60).filter(lambda b: not _is_json(b)))
def test_not_json_is_400_without_id(frame: bytes) -> None:
    error = refused(frame)
    assert (error.code, error.command_id) == (ErrorCode.BAD_REQUEST, None)


def _is_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


@SETTINGS
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_not_an_object_is_400_without_id(value: Any) -> None:
    error = refused(value)
    assert (error.code, error.command_id) == (ErrorCode.BAD_REQUEST, None)


bad_ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=0),
    st.integers(min_value=MAX_SAFE_INTEGER + 1, max_value=2**64 - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.none(),
    st.lists(int64s, max_size=2),
)


@SETTINGS
@given(commands.filter(lambda c: not isinstance(c, PongCommand)), st.none() | bad_ids)
def test_a_bad_or_missing_id_is_400_without_id(command: Command, bad_id: Any) -> None:
    frame = command.to_dict()
    if bad_id is None:
        del frame["id"]
    else:
        frame["id"] = bad_id
    error = refused(frame)
    assert (error.code, error.command_id, error.field) == (ErrorCode.BAD_REQUEST, None, "id")


@SETTINGS
@given(ids, json_values.filter(lambda v: v not in COMMAND_TYPES))
def test_an_unknown_type_is_400_with_the_id(command_id: int, kind: Any) -> None:
    error = refused({"id": command_id, "type": kind})
    assert (error.code, error.command_id, error.field) == (
        ErrorCode.BAD_REQUEST,
        command_id,
        "type",
    )
    assert "expected one of connect, subscribe" in error.message


@SETTINGS
@given(
    commands.filter(lambda c: not isinstance(c, PongCommand)),
    texts.filter(lambda k: k not in {"id", "type", "group", "data", "token", "groups"}),
    json_values,
)
def test_an_unknown_field_is_400_naming_it(command: Command, name: str, value: Any) -> None:
    frame = command.to_dict()
    if name in frame:  # a known optional field of this command: not unknown
        return
    frame[name] = value
    error = refused(frame)
    assert (error.code, error.command_id, error.field) == (ErrorCode.BAD_REQUEST, command.id, name)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
# (command type, field, a value of the wrong type or range) → 400 naming the field
MISTYPED = [
    (
        "subscribe",
        "since",
        st.one_of(
            st.integers(min_value=-(2**63), max_value=-1), texts, finite_floats, st.booleans()
        ),
    ),
    ("subscribe", "since", st.integers(min_value=MAX_SAFE_INTEGER + 1, max_value=2**63)),
    ("subscribe", "epoch", st.one_of(st.just(""), int64s, st.booleans(), st.lists(texts))),
    ("subscribe", "epoch", st.text(min_size=LIMITS.max_epoch_length + 1, max_size=100)),
    ("subscribe", "presence", st.one_of(int64s, texts, st.lists(st.booleans()))),
    ("subscribe", "group", st.one_of(int64s, st.booleans(), st.lists(texts))),
    (
        "history",
        "limit",
        st.one_of(
            st.integers(min_value=-(2**63), max_value=0), texts, finite_floats, st.booleans()
        ),
    ),
    ("history", "since", st.one_of(st.integers(min_value=-(2**63), max_value=-1), texts)),
    ("publish", "idempotency_key", st.one_of(st.just(""), int64s, st.lists(texts))),
    ("publish", "idempotency_key", st.text(min_size=LIMITS.max_key_length + 1, max_size=200)),
    ("refresh", "token", st.one_of(st.none(), int64s, st.lists(texts))),
    ("connect", "token", st.one_of(int64s, st.booleans(), st.lists(texts))),
    ("connect", "groups", st.one_of(int64s, texts, st.lists(texts))),
]
BASE = {
    "subscribe": {"group": "g"},
    "history": {"group": "g"},
    "publish": {"group": "g", "data": 1},
    "refresh": {"token": "t"},
    "connect": {},
}


@pytest.mark.parametrize(("kind", "name", "values"), MISTYPED, ids=lambda v: str(v)[:20])
@SETTINGS
@given(data=st.data())
def test_a_mistyped_field_is_400_naming_it(
    kind: str, name: str, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values)
    if kind == "subscribe" and name == "presence" and value in (0, 1):
        value = [value]  # 0 == False in Python; JSON keeps them apart, orjson too
    error = refused({"id": 9, "type": kind, **BASE[kind], name: value})
    assert (error.code, error.command_id, error.field) == (ErrorCode.BAD_REQUEST, 9, name)


@SETTINGS
@given(st.sampled_from(["subscribe", "unsubscribe", "publish", "history", "presence"]))
def test_a_missing_group_is_400(kind: str) -> None:
    error = refused(
        {"id": 5, "type": kind, "data": 1} if kind == "publish" else {"id": 5, "type": kind}
    )
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "group")


def test_publish_without_data_is_400() -> None:
    error = refused({"id": 5, "type": "publish", "group": "g"})
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "data")


def test_pong_with_an_id_is_400() -> None:
    error = refused({"id": 5, "type": "pong"})
    assert (error.code, error.command_id) == (ErrorCode.BAD_REQUEST, 5)


invalid_group_names = st.one_of(
    st.just(""),
    st.text(min_size=LIMITS.max_group_length + 1, max_size=LIMITS.max_group_length + 50),
    st.tuples(texts, st.characters(categories=("Cc",)), texts).map("".join),
)


@SETTINGS
@given(
    st.sampled_from(["subscribe", "unsubscribe", "history", "presence", "publish", "connect"]),
    invalid_group_names,
)
def test_an_invalid_group_name_is_404(kind: str, name: str) -> None:
    if kind == "connect":
        frame: dict[str, Any] = {"id": 3, "type": kind, "groups": {name: {}}}
    else:
        frame = {"id": 3, "type": kind, "group": name, "data": 0}
        if kind != "publish":
            del frame["data"]
    error = refused(frame)
    assert (error.code, error.command_id) == (ErrorCode.UNKNOWN_GROUP, 3)


@SETTINGS
@given(st.integers(min_value=LIMITS.max_history_limit + 1, max_value=2**40))
def test_a_history_limit_over_the_maximum_is_413(limit: int) -> None:
    error = refused({"id": 4, "type": "history", "group": "g", "limit": limit})
    assert (error.code, error.field) == (ErrorCode.LIMIT_EXCEEDED, "limit")


@pytest.mark.parametrize("kind", ["connect", "refresh"])
def test_a_token_over_the_maximum_is_413(kind: str) -> None:
    error = refused({"id": 4, "type": kind, "token": "x" * (LIMITS.max_token_length + 1)})
    assert (error.code, error.field) == (ErrorCode.LIMIT_EXCEEDED, "token")
    assert parse_command(orjson.dumps({"id": 4, "type": kind, "token": "x" * 8192}))


def test_too_many_groups_in_connect_is_413() -> None:
    many = {f"g{i}": {} for i in range(LIMITS.max_connect_groups + 1)}
    error = refused({"id": 1, "type": "connect", "groups": many})
    assert (error.code, error.field) == (ErrorCode.LIMIT_EXCEEDED, "groups")
    many.popitem()
    assert (
        len(parse_command(orjson.dumps({"id": 1, "type": "connect", "groups": many})).groups) == 128
    )  # type: ignore[union-attr]


def test_bad_group_options_in_connect_are_400() -> None:
    error = refused({"id": 1, "type": "connect", "groups": {"g": {"sinse": 3}}})
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "sinse")
    error = refused({"id": 1, "type": "connect", "groups": {"g": {"since": "3"}}})
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "since")
    error = refused({"id": 1, "type": "connect", "groups": {"g": [1]}})
    assert (error.code, error.field) == (ErrorCode.BAD_REQUEST, "groups")


def test_limits_are_settings() -> None:
    tight = ProtocolLimits(max_group_length=3, max_history_limit=10)
    with pytest.raises(ProtocolError) as caught:
        parse_command('{"id":1,"type":"presence","group":"abcd"}', tight)
    assert caught.value.code == ErrorCode.UNKNOWN_GROUP
    with pytest.raises(ProtocolError) as caught:
        parse_command('{"id":1,"type":"history","group":"abc","limit":11}', tight)
    assert caught.value.code == ErrorCode.LIMIT_EXCEEDED


# ------------------------------------------------------------------ fuzz

FIELDS = ("id", "type", "group", "since", "epoch", "presence", "data", "idempotency_key")
frame_like = st.dictionaries(
    st.sampled_from((*FIELDS, "limit", "token", "groups", "x")),
    st.one_of(json_values, st.sampled_from(COMMAND_TYPES), ids, groups),
    max_size=7,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(frame_like.map(orjson.dumps), st.binary(max_size=80), texts))
def test_fuzz_a_command_or_a_documented_error_nothing_else(frame: bytes | str) -> None:
    try:
        command = parse_command(frame)
    except ProtocolError as error:
        assert error.code in ErrorCode
        assert error.message
        if error.command_id is not None:
            assert orjson.loads(frame)["id"] == error.command_id
        return
    # What was accepted means exactly what it says: it encodes back to an equal command.
    assert parse_command(encode_command(command)) == command
