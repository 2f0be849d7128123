"""The wire format layers publish: versions, fields, stamping the seq at delivery."""

from __future__ import annotations

import struct
import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexios.layers.base import WireMessage, decode_wire, encode_wire, stamp_seq, wire_header

ORIGIN = uuid.uuid4().bytes

messages = st.builds(
    WireMessage,
    kind=st.sampled_from(["json", "text", "bytes"]),
    data=st.binary(max_size=300),
    seq=st.integers(min_value=0, max_value=2**63),
    origin=st.just(ORIGIN),
    epoch=st.text(max_size=40),
    seq_field=st.none() | st.text(max_size=40),
)


@given(messages)
def test_every_message_round_trips(message: WireMessage) -> None:
    assert decode_wire(encode_wire(message)) == message


def test_the_bytes_before_the_seq_are_the_header() -> None:
    message = WireMessage("json", b"{}", 7, ORIGIN, "abc", "n")
    raw = encode_wire(message)
    header = wire_header("json", ORIGIN, "n")
    assert raw.startswith(header)
    # what follows is what publish_saved.lua appends: seq, epoch length, epoch, data
    assert raw[len(header) :] == struct.pack(">Q", 7) + b"\x03abc" + b"{}"


def test_version_one_messages_are_still_read() -> None:
    raw = struct.pack(">B1sQ16s", 1, b"t", 42, ORIGIN) + b"hello"
    assert decode_wire(raw) == WireMessage("text", b"hello", 42, ORIGIN)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x03" + b"\x00" * 40,  # a future version
        b"\x02j",  # cut short
        wire_header("json", ORIGIN, "n")[:-1],
        wire_header("json", ORIGIN, None) + b"\x00" * 3,
        wire_header("json", ORIGIN, None) + struct.pack(">Q", 1) + b"\x09ab",  # epoch cut
        struct.pack(">B1s16sH", 2, b"x", ORIGIN, 0xFFFF) + b"\x00" * 9,  # unknown kind
        wire_header("json", ORIGIN, None) + struct.pack(">Q", 1) + b"\x02\xff\xfe",
    ],
)
def test_foreign_bytes_are_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_wire(raw)


def test_an_epoch_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="epoch"):
        encode_wire(WireMessage("json", b"{}", epoch="e" * 256))


@pytest.mark.parametrize(
    ("message", "delivered"),
    [
        (WireMessage("json", b'{"a":1}', 5, seq_field="seq"), {"seq": 5, "a": 1}),
        (WireMessage("json", b"{}", 9, seq_field="n"), {"n": 9}),
        (WireMessage("json", b'{"a":1}', 5, seq_field='we"ird'), {'we"ird': 5, "a": 1}),
    ],
)
def test_delivered_data_stamps_the_seq(message: WireMessage, delivered: object) -> None:
    assert orjson.loads(message.delivered_data()) == delivered


@pytest.mark.parametrize(
    "message",
    [
        WireMessage("json", b'{"a":1}', 5),  # no seq_field
        WireMessage("json", b"[1,2]", 5, seq_field="seq"),  # not an object
        WireMessage("text", b"{hi}", 5, seq_field="seq"),
        WireMessage("bytes", b"{", 5, seq_field="seq"),
    ],
)
def test_delivered_data_leaves_other_payloads_alone(message: WireMessage) -> None:
    assert message.delivered_data() == message.data


def test_stamp_seq_matches_encoding_the_field_in_front() -> None:
    assert stamp_seq(b'{"b":[1]}', "seq", 12) == orjson.dumps({"seq": 12, "b": [1]})
