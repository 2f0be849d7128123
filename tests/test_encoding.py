"""nexios.encoding: integers of any width stay exact, in and out, and through a broadcast.

orjson alone reads an integer outside [-2**63, 2**64 - 1] as a float and refuses to write
one; ``nexios.encoding`` must give the value the standard library's ``json`` gives
(the oracle here), or refuse with an error that says what to do.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexios import NexiosApp, encoding
from nexios.testing import AsyncTestClient
from nexios.websockets import Channel, ChannelBox, WebSocket

WIDE = 123456789012345678901234567890
EDGES = [-(2**63), -(2**63) - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64), 10**300, -(10**300)]

# Integers up to 300 digits (a longer number is beyond a float's range: refused below).
integers = st.integers(min_value=-(10**300), max_value=10**300) | st.sampled_from(EDGES)
keys = st.text(max_size=8) | integers.map(str)
values = st.recursive(
    st.none()
    | st.booleans()
    | integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 is not enough here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- loads


@given(values)
def test_loads_equals_the_standard_library(value: Any) -> None:
    text = json.dumps(value)
    expected = json.loads(text)
    assert same(encoding.loads(text), expected)
    assert same(encoding.loads(text.encode()), expected)


@given(values)
def test_dumps_then_loads_is_exact(value: Any) -> None:
    assert same(encoding.loads(encoding.dumps(value)), json.loads(json.dumps(value)))


@pytest.mark.parametrize("number", EDGES)
def test_the_64_bit_edges(number: int) -> None:
    assert same(encoding.loads(f'{{"n": {number}}}'), {"n": number})
    assert encoding.dumps(number) == str(number).encode()


def test_the_example_from_the_issue() -> None:
    assert encoding.loads("123456789012345678901234567890") == WIDE
    assert encoding.loads(memoryview(b"[123456789012345678901234567890]")) == [WIDE]
    assert encoding.loads(bytearray(b"[123456789012345678901234567890]")) == [WIDE]
    assert encoding.loads(b'{"id": 123456789012345678901234567890}') == {"id": WIDE}
    assert encoding.dumps({"id": WIDE}) == b'{"id":123456789012345678901234567890}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Long digit runs that are not wide integers keep orjson's value.
        ('{"t_ns": 1712345678901234567}', {"t_ns": 1712345678901234567}),
        ('["12345678901234567890123456"]', ["12345678901234567890123456"]),
        ("[12345678901234567890123.5]", [12345678901234567890123.5]),
        ("[1.12345678901234567890123]", [1.12345678901234567890123]),
        ("[1e-12345678901234567890]", [0.0]),
        ("[1234567890123456789012e2]", [1234567890123456789012e2]),
        # Wide integers next to them, in every position.
        ('[-12345678901234567890, "x", 1.5]', [-12345678901234567890, "x", 1.5]),
        ('{"a": [1, {"b": 99999999999999999999}]}', {"a": [1, {"b": 99999999999999999999}]}),
        (
            '["1234567890123456789012345", 1234567890123456789012345]',
            ["1234567890123456789012345", 1234567890123456789012345],
        ),
    ],
)
def test_digit_runs(text: str, expected: Any) -> None:
    assert same(encoding.loads(text), expected)
    assert same(encoding.loads(text.encode()), expected)


@pytest.mark.parametrize("text", ["1" * 400, "[1e400]", '{"f": -1e400}', "[NaN]", "[1,]"])
def test_what_orjson_refuses_is_still_refused(text: str) -> None:
    with pytest.raises(encoding.JSONDecodeError):
        encoding.loads(text)


def test_a_wide_integer_deep_down_is_exact_or_refused_clearly() -> None:
    # orjson accepts 1024 levels; the standard library's exact parser may stop earlier
    # (Python 3.11 does, 3.12+ does not): then the refusal says what to do instead.
    text = "[" * 1000 + str(WIDE) + "]" * 1000
    try:
        value = encoding.loads(text)
    except encoding.JSONDecodeError as refused:
        assert "send such integers as strings" in str(refused)
    else:
        for _ in range(1000):
            (value,) = value
        assert value == WIDE
    assert encoding.loads("[" * 1000 + "1" + "]" * 1000) is not None


# --------------------------------------------------------------------------- dumps


@dataclasses.dataclass
class Row:
    id: int
    tags: tuple[int, ...]
    _private: int = 0


class Entry:
    def to_dict(self) -> dict[str, Any]:
        return {"seq": WIDE, "items": {2**70}}


def test_dumps_writes_wide_integers_anywhere() -> None:
    value = {
        "row": Row(WIDE, (1, -(2**65))),
        "entry": Entry(),
        "tuple": (2**64,),
        2**80: "wide key",
        "nested": [[{"x": -WIDE}]],
    }
    assert json.loads(encoding.dumps(value)) == {
        "row": {"id": WIDE, "tags": [1, -(2**65)]},
        "entry": {"seq": WIDE, "items": [2**70]},
        "tuple": [2**64],
        str(2**80): "wide key",
        "nested": [[{"x": -WIDE}]],
    }


def test_dumps_matches_orjson_when_orjson_can() -> None:
    value = {"row": Row(1, (2, 3), 4), 5: [1.5, None, "x"], "set": {1}}
    assert encoding.dumps(value) == orjson.dumps(
        value, default=encoding.default, option=orjson.OPT_NON_STR_KEYS
    )


def test_dumps_still_names_what_cannot_be_serialised() -> None:
    with pytest.raises(TypeError, match="not JSON serializable") as plain:
        encoding.dumps({"x": object()})
    with pytest.raises(TypeError, match="not JSON serializable") as with_wide:
        encoding.dumps({"x": object(), "n": WIDE})
    assert str(plain.value) == str(with_wide.value)


def test_an_integer_longer_than_python_converts_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="send such an integer as a string"):
        encoding.dumps({"n": [10**5000]})


def test_a_value_error_from_to_dict_is_not_taken_for_a_long_integer() -> None:
    class Broken:
        def to_dict(self) -> Any:
            raise ValueError("broken")

    with pytest.raises(TypeError) as info:
        encoding.dumps({"n": WIDE, "x": Broken()})
    assert "integer" not in str(info.value)


# --------------------------------------------------------------------------- end to end


def room_app() -> NexiosApp:
    app = NexiosApp()

    @app.ws_route("/room")
    async def room(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.add_channel_to_group(Channel(ws, payload_type="json"), "wide")
        await ws.send_json({"joined": True})
        async for message in ws.iter_json():
            await ChannelBox.group_send("wide", message, save_history=True)

    @app.ws_route("/history")
    async def history(ws: WebSocket) -> None:
        await ws.accept()
        entries = await ChannelBox.show_history("wide")
        await ws.send_json({"entries": entries})

    return app


@pytest.mark.anyio
async def test_a_wide_integer_survives_broadcast_and_history() -> None:
    sent = '{"id":123456789012345678901234567890,"n":-99999999999999999999}'
    async with AsyncTestClient(room_app()) as client:
        async with (
            client.websocket_connect("/room") as ada,
            client.websocket_connect("/room") as bob,
        ):
            assert await ada.receive_json() == {"joined": True}
            assert await bob.receive_json() == {"joined": True}
            await ada.send_text(sent)
            assert await bob.receive_text() == sent
            assert await ada.receive_text() == sent
        async with client.websocket_connect("/history") as ws:
            text = await ws.receive_text()
    assert json.loads(text)["entries"][0]["payload"] == json.loads(sent)


@pytest.mark.anyio
async def test_a_wide_integer_survives_history_entry_payload() -> None:
    app = NexiosApp()
    payloads: list[Any] = []

    @app.ws_route("/h")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ChannelBox.group_send("wide", {"id": WIDE}, save_history=True)
        payloads.extend(entry.payload for entry in await ChannelBox.show_history("wide"))
        await ws.close()

    async with AsyncTestClient(app) as client, client.websocket_connect("/h") as ws:
        await ws.wait_closed()
    assert same(payloads, [{"id": WIDE}])
