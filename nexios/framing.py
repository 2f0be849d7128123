"""Framing: from a payload to the bytes each member's connection writes. No I/O here.

A broadcast is encoded once (:func:`encode_payload`: ``(kind, data)``), then framed once
per payload type present in the group (:class:`FrameSet`): every member of the same
payload type gets the same :class:`Frame` object. A frame offers what each kind of
sender needs, built on first use and then shared: the ASGI ``websocket.send`` message
(:meth:`Frame.asgi`) for servers that only speak ASGI, and the complete WebSocket frame
(:meth:`Frame.wire`) for servers that accept pre-built frames (see :mod:`nexios.server`).

What a member receives, by its payload type and the payload's kind:

===============  ==============  ==============  =====================
member \\ kind    json            text            bytes
===============  ==============  ==============  =====================
json             text frame      JSON string     base64 JSON string
text             text frame      text frame      binary frame
bytes            binary frame    binary frame    binary frame
===============  ==============  ==============  =====================
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from nexios import encoding

__all__ = [
    "Frame",
    "FrameSet",
    "Framer",
    "PayloadKind",
    "build_frame",
    "encode_payload",
    "frame_for",
    "stamp_seq",
]

PayloadKind = str
"""``"json"``, ``"text"`` or ``"bytes"``: how an encoded payload's bytes are to be read."""

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def encode_payload(payload: Any) -> tuple[PayloadKind, bytes]:
    """Encode once: ``(kind, data)`` with kind ``text`` (str), ``bytes`` or ``json``."""
    if isinstance(payload, str):
        return "text", payload.encode()
    if isinstance(payload, bytes | bytearray | memoryview):
        return "bytes", bytes(payload)
    return "json", encoding.dumps(payload)


def stamp_seq(data: bytes, seq_field: str, seq: int) -> bytes:
    """Insert ``"<seq_field>": seq`` first into an encoded JSON object, without re-encoding.

    ``data`` must be an encoded JSON object (``{...}``).
    """
    head = b"{" + encoding.dumps(seq_field) + b":" + str(seq).encode()
    if data == b"{}":
        return head + b"}"
    return head + b"," + data[1:]


def build_frame(payload: bytes, *, text: bool) -> bytes:
    """One complete, unmasked server frame (FIN set) carrying ``payload``.

    ``text=True`` makes a text frame: ``payload`` must then be UTF-8, as the peer checks
    it. No extension (per-message deflate) may be active on the connection.
    """
    first = _FIN_TEXT if text else _FIN_BINARY
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 0x10000:
        return _LENGTH_16.pack(first, 126, length) + payload
    return _LENGTH_64.pack(first, 127, length) + payload


class Frame:
    """One outgoing message for members of one payload type, shared by all of them."""

    __slots__ = ("_asgi", "is_text", "payload", "size", "wire_bytes")

    def __init__(self, payload: bytes, *, is_text: bool) -> None:
        self.payload = payload
        self.is_text = is_text
        self.size = len(payload)
        self._asgi: dict[str, Any] | None = None
        self.wire_bytes: bytes | None = None
        """The complete WebSocket frame once :meth:`wire` built it (senders read it
        first: it is read once per member)."""

    def asgi(self) -> dict[str, Any]:
        """The ASGI ``websocket.send`` message (built once)."""
        message = self._asgi
        if message is None:
            if self.is_text:
                message = {"type": "websocket.send", "text": self.payload.decode()}
            else:
                message = {"type": "websocket.send", "bytes": self.payload}
            self._asgi = message
        return message

    def wire(self) -> bytes:
        """The complete WebSocket frame (built once)."""
        frame = self.wire_bytes
        if frame is None:
            frame = self.wire_bytes = build_frame(self.payload, text=self.is_text)
        return frame

    def __repr__(self) -> str:
        return f"<Frame {'text' if self.is_text else 'binary'} {self.size} bytes>"


def frame_for(payload_type: str, kind: PayloadKind, data: bytes) -> Frame:
    """What a member of ``payload_type`` receives for an encoded payload (see the table)."""
    if payload_type == "bytes" or (kind == "bytes" and payload_type == "text"):
        return Frame(data, is_text=False)
    if payload_type == "json" and kind != "json":
        if kind == "text":
            return Frame(encoding.dumps(data.decode()), is_text=True)
        return Frame(encoding.dumps(base64.b64encode(data).decode()), is_text=True)
    return Frame(data, is_text=True)


class FrameSet:
    """The frames of one message to one group, built on demand, once per frame key.

    ``seq`` and ``epoch`` number a saved message (``seq == 0``: unsaved). ``notice`` is
    set on a framework notice to the group's members (e.g. ``"resync"``), whose ``data``
    is the notice as JSON.
    """

    __slots__ = ("_frames", "data", "epoch", "group", "kind", "notice", "seq")

    def __init__(
        self,
        kind: PayloadKind,
        data: bytes,
        *,
        group: str = "",
        seq: int = 0,
        epoch: str = "",
        notice: str | None = None,
    ) -> None:
        self.kind = kind
        self.data = data
        self.group = group
        self.seq = seq
        self.epoch = epoch
        self.notice = notice
        self._frames: dict[str, Frame] = {}

    def get(self, key: str, framer: Framer | None = None) -> Frame:
        """The frame for members of ``key``: a payload type, or a framer's key."""
        frame = self._frames.get(key)
        if frame is None:
            built = framer(self) if framer is not None else frame_for(key, self.kind, self.data)
            frame = self._frames[key] = built
        return frame


class Framer:
    """Frames messages for members that speak a protocol of their own (e.g. the
    client protocol's ``message`` push, which names the group, seq and epoch).

    Subclass and implement :meth:`__call__`; ``key`` names the framing, so the frame of a
    message is still built once for every member that uses the same framer.
    """

    key: str = "custom"

    def __call__(self, frames: FrameSet) -> Frame:
        raise NotImplementedError
