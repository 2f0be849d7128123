"""Property tests: every received message is decoded or refused with a documented error.

``receive_text/bytes/json`` (nexios.websockets.base), the consumer encodings
(nexios.websockets.consumers) and the size check (nexios.limits) are fed arbitrary
frames. The documented outcomes are the only ones allowed:

- ``receive_text``: the text, or ``WebSocketMessageTypeError`` for a binary frame;
- ``receive_bytes``: the bytes, or ``WebSocketMessageTypeError`` for a text frame;
- ``receive_json``: the parsed value, ``InvalidJSONError`` (a ``ValueError``) for
  anything that is not JSON, ``WebSocketMessageTypeError`` for the other frame type;
  the socket stays usable after each of them;
- consumers: ``encoding="text"``/``"bytes"`` pass their frame type and close **1003** on
  the other; ``"json"`` parses text or bytes and closes **1007** on invalid JSON;
  ``None`` passes either;
- the size limit: refused exactly when the UTF-8 (or binary) length exceeds it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexios.exceptions import InvalidJSONError, WebSocketMessageTypeError
from nexios.limits import Limits, MessageLimiter
from nexios.websockets.base import WebSocket, WebSocketState
from nexios.websockets.consumers import WebSocketConsumer, _BadFrame

# What a server can deliver: valid UTF-8 text (no lone surrogates) or any bytes.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
blobs = st.binary(max_size=300)
frames = st.one_of(
    texts.map(lambda t: {"type": "websocket.receive", "text": t}),
    blobs.map(lambda b: {"type": "websocket.receive", "bytes": b}),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
# Text that looks a bit like JSON, so the parser's error paths get exercised too.
jsonish = st.one_of(
    texts,
    json_values.map(lambda v: orjson.dumps(v).decode()),
    st.lists(st.sampled_from(list('{}[]":,0123456789.eE+-truefalsnl \\u')), max_size=40).map(
        "".join
    ),
)


def exact(raw: str | bytes) -> Any:
    """What receive_json returns for JSON orjson accepts: the stdlib's value (exact ints)."""
    return json.loads(raw)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _socket(messages: list[dict[str, Any]]) -> WebSocket:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    ws = WebSocket({"type": "websocket", "path": "/"}, receive, None)
    ws.connection_state = WebSocketState.CONNECTED
    return ws


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@SETTINGS
@given(frames)
def test_receive_text_and_bytes(frame: dict[str, Any]) -> None:
    async def scenario() -> None:
        ws = _socket([frame, frame])
        if "text" in frame:
            assert await ws.receive_text() == frame["text"]
            with pytest.raises(WebSocketMessageTypeError):
                await ws.receive_bytes()
        else:
            assert await ws.receive_bytes() == frame["bytes"]
            with pytest.raises(WebSocketMessageTypeError):
                await ws.receive_text()
        assert ws.connection_state is WebSocketState.CONNECTED

    _run(scenario())


@SETTINGS
@given(jsonish, st.sampled_from(["text", "binary"]))
def test_receive_json_parses_or_raises_invalid_json(raw: str, mode: str) -> None:
    frame = (
        {"type": "websocket.receive", "text": raw}
        if mode == "text"
        else {"type": "websocket.receive", "bytes": raw.encode()}
    )

    async def scenario() -> None:
        ws = _socket([frame, {"type": "websocket.receive", "text": "1"}])
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            with pytest.raises(InvalidJSONError) as error:
                await ws.receive_json(mode)
            assert isinstance(error.value, ValueError)
        else:
            assert await ws.receive_json(mode) == exact(raw)
        # Still usable after either outcome.
        assert await ws.receive_text() == "1"

    _run(scenario())


@SETTINGS
@given(blobs)
def test_receive_json_on_arbitrary_bytes(data: bytes) -> None:
    async def scenario() -> None:
        ws = _socket([{"type": "websocket.receive", "bytes": data}])
        try:
            value = await ws.receive_json("binary")
        except InvalidJSONError:
            return
        assert value == exact(data)

    _run(scenario())


@SETTINGS
@given(json_values, st.sampled_from(["text", "binary"]))
def test_json_round_trips(value: Any, mode: str) -> None:
    encoded = orjson.dumps(value)
    frame = (
        {"type": "websocket.receive", "text": encoded.decode()}
        if mode == "text"
        else {"type": "websocket.receive", "bytes": encoded}
    )
    assert _run(_socket([frame]).receive_json(mode)) == orjson.loads(encoded)


@SETTINGS
@given(frames)
def test_receive_json_wrong_frame_type(frame: dict[str, Any]) -> None:
    mode = "binary" if "text" in frame else "text"
    with pytest.raises(WebSocketMessageTypeError, match=r"receive_json\(mode="):
        _run(_socket([frame]).receive_json(mode))


def _consumer(encoding: str | None) -> WebSocketConsumer:
    cls = type(f"Consumer_{encoding}", (WebSocketConsumer,), {"encoding": encoding})
    return cls()  # type: ignore[no-any-return]


@SETTINGS
@given(frames, st.sampled_from([None, "text", "bytes", "json"]))
def test_consumer_encodings(frame: dict[str, Any], encoding: str | None) -> None:
    consumer = _consumer(encoding)
    text, data = frame.get("text"), frame.get("bytes")
    try:
        decoded = consumer._decode(frame)
    except _BadFrame as bad:
        if encoding == "text":
            assert (bad.code, text) == (1003, None)
        elif encoding == "bytes":
            assert (bad.code, data) == (1003, None)
        else:
            assert encoding == "json" and bad.code == 1007
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(text if text is not None else data)
        return
    if encoding is None:
        assert decoded == (text if text is not None else data)
    elif encoding == "text":
        assert decoded == text
    elif encoding == "bytes":
        assert decoded == data
    else:
        assert decoded == orjson.loads(text if text is not None else data)


@SETTINGS
@given(frames, st.integers(min_value=1, max_value=400))
def test_size_limit_counts_utf8_bytes(frame: dict[str, Any], limit: int) -> None:
    limiter = MessageLimiter(Limits(max_message_size=limit, messages_per_second=None))
    size = len(frame["text"].encode()) if "text" in frame else len(frame["bytes"])
    assert limiter.check(frame) is (size > limit)
    if size > limit:
        assert limiter.violation is not None and limiter.violation[0] == 1009


@SETTINGS
@given(st.lists(texts, max_size=40), st.integers(min_value=1, max_value=10))
def test_rate_limit_refuses_exactly_after_the_burst(messages: list[str], burst: int) -> None:
    limiter = MessageLimiter(
        Limits(max_message_size=None, messages_per_second=1, burst=burst), clock=lambda: 0.0
    )
    results = [limiter.check({"type": "websocket.receive", "text": m}) for m in messages]
    assert results == [i >= burst for i in range(len(messages))]
