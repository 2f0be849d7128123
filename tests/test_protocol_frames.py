"""``nexios.protocol.frames`` and ``codes``: server frames are the JSON the protocol
document shows, a message push embeds its data bytes verbatim, and the codes keep their
documented numbers and meanings.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexios.protocol import (
    PING_PUSH,
    SUBPROTOCOL,
    DisconnectCode,
    ErrorCode,
    ProtocolError,
    disconnect_push,
    error_push,
    error_reply,
    history_result,
    join_push,
    leave_push,
    member,
    message_push,
    reconnects,
    reply,
    resync_push,
    subscribe_result,
    unsubscribed_push,
)

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(texts, json_values, st.integers(min_value=1, max_value=2**53 - 1), texts)
def test_message_push_embeds_the_data_bytes_verbatim(
    group: str, value: Any, seq: int, epoch: str
) -> None:
    # Indented JSON: if the builder re-encoded the data, the whitespace would be gone.
    data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    frame = message_push(group, data, seq=seq, epoch=epoch)
    assert data in frame
    assert orjson.loads(frame) == {
        "type": "message",
        "group": group,
        "seq": seq,
        "epoch": epoch,
        "data": value,
    }
    assert message_push(group, data, seq=seq, epoch=epoch) == frame  # same input, same bytes


def test_message_push_shapes() -> None:
    assert message_push("room:1", b'{"text":"hi"}', seq=58, epoch="k3v9c2") == (
        b'{"type":"message","group":"room:1","seq":58,"epoch":"k3v9c2","data":{"text":"hi"}}'
    )
    # Unsaved messages have no seq and no epoch.
    assert message_push("news", b'"flash"') == b'{"type":"message","group":"news","data":"flash"}'


def test_replies() -> None:
    assert orjson.loads(reply(7)) == {"id": 7, "result": {}}
    assert orjson.loads(reply(7, {"seq": 3})) == {"id": 7, "result": {"seq": 3}}
    assert orjson.loads(error_reply(8, ErrorCode.FORBIDDEN, "no")) == {
        "id": 8,
        "error": {"code": 403, "message": "no"},
    }
    assert orjson.loads(error_push(ErrorCode.BAD_REQUEST, "not JSON")) == {
        "type": "error",
        "code": 400,
        "message": "not JSON",
    }
    assert orjson.loads(PING_PUSH) == {"type": "ping"}


def test_subscribe_and_history_results() -> None:
    members = [member("c1", {"name": "ada"}), member("c2")]
    assert subscribe_result("e1", 57, complete=True, recovered=16, presence=members) == {
        "epoch": "e1",
        "seq": 57,
        "complete": True,
        "recovered": 16,
        "presence": [{"id": "c1", "info": {"name": "ada"}}, {"id": "c2", "info": {}}],
    }
    assert "presence" not in subscribe_result("e1", 0)
    result = history_result([(42, b'{"a": 1}'), (43, b"[1, 2]")], "e1", 57, complete=False)
    encoded = reply(5, result)
    assert b'{"a": 1}' in encoded and b"[1, 2]" in encoded  # embedded as they are
    assert orjson.loads(encoded)["result"] == {
        "messages": [{"seq": 42, "data": {"a": 1}}, {"seq": 43, "data": [1, 2]}],
        "epoch": "e1",
        "seq": 57,
        "complete": False,
    }


def test_presence_and_resync_pushes() -> None:
    assert orjson.loads(join_push("g", "c1", {"name": "bo"})) == {
        "type": "join",
        "group": "g",
        "member": {"id": "c1", "info": {"name": "bo"}},
    }
    assert orjson.loads(leave_push("g", "c1", None, "evicted")) == {
        "type": "leave",
        "group": "g",
        "member": {"id": "c1", "info": {}},
        "reason": "evicted",
    }
    assert orjson.loads(resync_push("g", "e2", 0, "epoch")) == {
        "type": "resync",
        "group": "g",
        "epoch": "e2",
        "seq": 0,
        "reason": "epoch",
    }


@pytest.mark.parametrize(
    ("code", "resubscribe"),
    [
        (ErrorCode.FORBIDDEN, False),
        (ErrorCode.REMOVED, False),
        (ErrorCode.UNAVAILABLE, True),
        (ErrorCode.INTERNAL, True),
    ],
)
def test_unsubscribed_push_resubscribes_after_temporary_errors_only(
    code: ErrorCode, resubscribe: bool
) -> None:
    push = orjson.loads(unsubscribed_push("g", code, "why"))
    assert push == {
        "type": "unsubscribed",
        "group": "g",
        "code": int(code),
        "reason": "why",
        "resubscribe": resubscribe,
    }
    assert orjson.loads(unsubscribed_push("g", code, "why", resubscribe=True))["resubscribe"]


def test_disconnect_codes_say_whether_to_reconnect() -> None:
    again = {code for code in DisconnectCode if code.reconnect}
    assert again == {
        DisconnectCode.RECONNECT,
        DisconnectCode.TOKEN_EXPIRED,
        DisconnectCode.CONNECT_TIMEOUT,
    }
    assert all(4000 <= code < 4500 for code in again)
    assert all(4500 <= code < 5000 for code in set(DisconnectCode) - again)
    for code in DisconnectCode:
        push = orjson.loads(disconnect_push(code, "because"))
        assert push == {
            "type": "disconnect",
            "code": int(code),
            "reason": "because",
            "reconnect": code.reconnect,
        }
    # The framework's own close codes all mean "reconnect and recover".
    assert all(reconnects(code) for code in (1000, 1001, 1006, 1008, 1009, 1011, 1012, 1013))


def test_error_codes_are_the_documented_numbers() -> None:
    assert {code.name: int(code) for code in ErrorCode} == {
        "BAD_REQUEST": 400,
        "UNAUTHORIZED": 401,
        "FORBIDDEN": 403,
        "UNKNOWN_GROUP": 404,
        "ALREADY_SUBSCRIBED": 409,
        "REMOVED": 410,
        "LIMIT_EXCEEDED": 413,
        "UNRECOVERABLE": 416,
        "TOKEN_EXPIRED": 419,
        "TOO_MANY_REQUESTS": 429,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
    }
    assert {code for code in ErrorCode if code.temporary} == {429, 500, 503}


def test_every_code_is_in_the_protocol_document() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    for code in [*ErrorCode, *DisconnectCode]:
        assert f"| {int(code)} |" in doc, f"docs/protocol.md does not document {int(code)}"
    assert f"`{SUBPROTOCOL}`" in doc


def test_protocol_error_is_a_nexios_error_with_its_code() -> None:
    from nexios.exceptions import NexiosError

    error = ProtocolError(ErrorCode.FORBIDDEN, "not in this group", command_id=3, field="group")
    assert isinstance(error, NexiosError) and isinstance(error, ValueError)
    assert str(error) == "403 forbidden: not in this group"
    assert (error.command_id, error.field) == (3, "group")
