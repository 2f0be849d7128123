"""nexios.paths: path templates, converters and prefix joining."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexios.exceptions import ConfigurationError
from nexios.paths import CONVERTERS, PathTemplate, join_paths

# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/", "/", {}),
        ("/chat", "/chat", {}),
        ("/chat/{room_id}", "/chat/r1", {"room_id": "r1"}),
        ("/chat/{room_id:str}", "/chat/r1", {"room_id": "r1"}),
        ("/items/{id:int}", "/items/42", {"id": 42}),
        ("/items/{id:int}", "/items/-7", {"id": -7}),
        ("/price/{x:float}", "/price/1.5", {"x": 1.5}),
        ("/price/{x:float}", "/price/3", {"x": 3.0}),
        ("/files/{p:path}", "/files/a/b/c.txt", {"p": "a/b/c.txt"}),
        ("/files/{p:path}", "/files/", {"p": ""}),
        (
            "/u/{u:uuid}",
            "/u/12345678-1234-5678-1234-56781234ABCD",
            {"u": uuid.UUID("12345678-1234-5678-1234-56781234abcd")},
        ),
        ("/a/{x}/b/{y:int}", "/a/one/b/2", {"x": "one", "y": 2}),
        ("/a/{ x : int }", "/a/5", {"x": 5}),
        ("/v1.0/{x}", "/v1.0/y", {"x": "y"}),  # literal text is not a regex
    ],
)
def test_match_converts_parameters(template: str, path: str, expected: dict[str, Any]) -> None:
    result = PathTemplate(template).match(path)
    assert result == expected
    assert result is not None
    for name, value in expected.items():
        assert type(result[name]) is type(value)


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/chat", "/chat/"),
        ("/chat", "/chatroom"),
        ("/chat/{room_id}", "/chat/"),
        ("/chat/{room_id}", "/chat/a/b"),
        ("/items/{id:int}", "/items/abc"),
        ("/items/{id:int}", "/items/1.5"),
        ("/items/{id:int}", "/items/12\n"),  # "$" would have matched before the newline
        ("/items/{id:int}", "/items/\u0661"),  # an Arabic-Indic digit is not [0-9]
        ("/price/{x:float}", "/price/1e5"),
        ("/price/{x:float}", "/price/nan"),
        ("/u/{u:uuid}", "/u/not-a-uuid"),
        ("/u/{u:uuid}", "/u/12345678123456781234567812345678"),
        ("/v1.0/{x}", "/v1x0/y"),
    ],
)
def test_no_match(template: str, path: str) -> None:
    assert PathTemplate(template).match(path) is None


def test_param_names_in_order() -> None:
    assert PathTemplate("/a/{x}/{y:int}/{rest:path}").param_names == ("x", "y", "rest")


def test_int_too_long_to_convert_does_not_match() -> None:
    # int() refuses more than 4300 digits; that is "no match", not a crash.
    assert PathTemplate("/n/{n:int}").match("/n/" + "9" * 5000) is None


def test_int_range() -> None:
    # JSON encoders (orjson) and databases take signed 64-bit integers: beyond, no match.
    template = PathTemplate("/n/{n:int}")
    assert template.match(f"/n/{2**63 - 1}") == {"n": 2**63 - 1}
    assert template.match(f"/n/{-(2**63)}") == {"n": -(2**63)}
    assert template.match(f"/n/{2**63}") is None
    assert template.match(f"/n/{-(2**63) - 1}") is None
    assert template.match("/n/99999999999999999999999") is None
    assert template.match("/n/000000000000000000000000007") is None  # too long to be sane


def test_float_must_be_finite() -> None:
    assert PathTemplate("/x/{x:float}").match("/x/" + "9" * 400) is None


def test_default_kinds_type_unconverted_parameters_only() -> None:
    template = PathTemplate("/a/{n}/{m:str}", default_kinds={"n": "int", "m": "int"})
    assert template.kinds == {"n": "int", "m": "str"}
    assert template.explicit == {"m"}
    assert template.match("/a/7/x") == {"n": 7, "m": "x"}
    assert template.match("/a/x/x") is None


def test_format_reverses_match() -> None:
    template = PathTemplate("/rooms/{room}/items/{n:int}/{rest:path}")
    path = template.format({"room": "a b", "n": 7, "rest": "x/y.txt"})
    assert path == "/rooms/a%20b/items/7/x/y.txt"
    assert template.format({"room": "a", "n": 7}) is None  # a parameter missing
    assert template.format({"room": "a", "n": 7, "rest": "", "extra": 1}) is None
    assert template.format({"room": "a/b", "n": 7, "rest": ""}) is None  # would not match
    assert template.format({"room": "a", "n": "x", "rest": ""}) is None


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("chat", "must be a string starting with '/'"),
        ("", "must be a string starting with '/'"),
        ("/items/{id:integer}", "Unknown converter 'integer'"),
        ("/items/{1id}", "Invalid parameter name '1id'"),
        ("/items/{}", "Invalid parameter name ''"),
        ("/items/{a-b}", "Invalid parameter name 'a-b'"),
        ("/a/{x}/{x}", "appears twice"),
        ("/a/{x", "Unbalanced braces"),
        ("/a/x}", "Unbalanced braces"),
        ("/a}b/{x}", "Unbalanced braces"),
    ],
)
def test_bad_templates_fail_at_construction(template: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PathTemplate(template)


def test_non_string_template_fails() -> None:
    with pytest.raises(ConfigurationError, match="starting with '/'"):
        PathTemplate(42)  # type: ignore[arg-type]


def test_unknown_converter_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        PathTemplate("/x/{x:bool}")
    for name in CONVERTERS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("prefix", "path", "joined"),
    [
        (None, "/chat", "/chat"),
        ("", "/chat", "/chat"),
        ("/ws", "/chat", "/ws/chat"),
        ("/ws/", "/chat", "/ws/chat"),
        ("/ws", "chat", "/ws/chat"),
        ("/ws", "/", "/ws"),
        ("/ws", "", "/ws"),
        ("/", "/chat", "/chat"),
        ("/", "/", "/"),
        ("/rooms/{room_id}", "/chat", "/rooms/{room_id}/chat"),
    ],
)
def test_join_paths(prefix: str | None, path: str, joined: str) -> None:
    assert join_paths(prefix, path) == joined


def test_join_paths_rejects_relative_prefix() -> None:
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        join_paths("ws", "/chat")


# --------------------------------------------------------------------------- properties

_KINDS = ("str", "int", "float", "path", "uuid")
_SEGMENT = st.text(alphabet="abcxyz019-_.~", min_size=1, max_size=8)
_ANY_TEXT = st.text(max_size=30)


def _value_text(kind: str) -> st.SearchStrategy[str]:
    """Text that the converter ``kind`` must accept."""
    if kind == "int":
        # The signed 64-bit range: beyond it the converter refuses (see test_int_range).
        return st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str)
    if kind == "float":
        digits = st.text(alphabet="0123456789", min_size=1, max_size=12)
        fraction = st.none() | digits
        return st.tuples(st.sampled_from(["", "-"]), digits, fraction).map(
            lambda t: f"{t[0]}{t[1]}" + (f".{t[2]}" if t[2] is not None else "")
        )
    if kind == "uuid":
        return st.uuids().flatmap(lambda u: st.sampled_from([str(u), str(u).upper()]))
    if kind == "path":
        return st.text(max_size=20)
    return st.text(st.characters(exclude_characters="/"), min_size=1, max_size=20)


def _expected(kind: str, text: str) -> Any:
    return {
        "str": str,
        "path": str,
        "int": int,
        "float": float,
        "uuid": uuid.UUID,
    }[kind](text)


@st.composite
def _template_and_path(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """A template of literal and parameter segments, a path it must match, the params."""
    count = draw(st.integers(min_value=0, max_value=4))
    template_parts: list[str] = []
    path_parts: list[str] = []
    expected: dict[str, Any] = {}
    for index in range(count):
        if draw(st.booleans()):
            literal = draw(_SEGMENT)
            template_parts.append(literal)
            path_parts.append(literal)
            continue
        last = index == count - 1
        kind = draw(st.sampled_from(_KINDS if last else tuple(k for k in _KINDS if k != "path")))
        name = f"p{index}"
        text = draw(_value_text(kind))
        template_parts.append(f"{{{name}:{kind}}}")
        path_parts.append(text)
        expected[name] = _expected(kind, text)
    return "/" + "/".join(template_parts), "/" + "/".join(path_parts), expected


@given(_template_and_path())
def test_generated_paths_match_with_converted_values(
    case: tuple[str, str, dict[str, Any]],
) -> None:
    template, path, expected = case
    result = PathTemplate(template).match(path)
    assert result == expected
    assert result is not None
    for name, value in expected.items():
        assert type(result[name]) is type(value)


@given(st.sampled_from(_KINDS), _ANY_TEXT)
def test_any_text_matches_with_the_right_type_or_not_at_all(kind: str, text: str) -> None:
    result = PathTemplate(f"/x/{{v:{kind}}}/end").match(f"/x/{text}/end")
    if result is None:
        return
    value = result["v"]
    assert type(value) is type(_expected(kind, "0" if kind in ("int", "float") else "a"))
    if kind == "uuid":
        assert str(value) == text.lower()
    elif kind == "int":
        assert str(value) == str(int(text)) and "\n" not in text
    elif kind == "float":
        assert value == float(text)
    elif kind == "str":
        assert value == text and text and "/" not in text
    else:
        assert value == text


@given(_ANY_TEXT, _ANY_TEXT)
def test_matching_never_raises(template_tail: str, path: str) -> None:
    try:
        template = PathTemplate("/" + template_tail)
    except ConfigurationError:
        return
    result = template.match(path)
    assert result is None or isinstance(result, dict)


@given(st.from_regex(r"/[a-z]{1,5}(/[a-z]{1,5}){0,3}", fullmatch=True))
def test_static_template_matches_only_itself(path: str) -> None:
    template = PathTemplate(path)
    assert template.match(path) == {}
    assert template.match(path + "/") is None
    assert template.match(path + "x") is None
