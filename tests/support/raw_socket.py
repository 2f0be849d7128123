"""WebSocket clients on bare sockets: peers that stop reading, vanish or misbehave on purpose.

Blocking helpers (:func:`open_raw_websocket`, :func:`reset`) drive a server in another
process; the ``async`` ones (:func:`open_stream`, :func:`read_frame`...) a server on the
test's own loop. :func:`client_frame` builds any frame a client could send, valid or not.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "client_frame",
    "close_payload",
    "handshake_request",
    "open_raw_websocket",
    "open_stream",
    "read_frame",
    "read_http_response",
    "reset",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def handshake_request(port: int, path: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def open_raw_websocket(
    port: int, path: str, receive_buffer: int | None = 4096
) -> tuple[socket.socket, bytes]:
    """Complete a handshake on a bare socket, by default with a tiny receive buffer.

    Returns the socket and whatever arrived after the 101 response. Nothing reads from
    the socket unless the caller does, so the server sees a peer that stopped reading.
    ``receive_buffer=None`` keeps the kernel's default: a peer that pauses, then reads
    at full speed again.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(handshake_request(port, path))
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def reset(sock: socket.socket) -> None:
    """Vanish without a close frame: abort the TCP connection (RST)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame as a client sends it (masked), with any opcode, flags and payload."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return head + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


async def open_stream(
    port: int, path: str = "/", extra: str = "", *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A handshake on an asyncio stream; fails unless the answer is 101.

    ``rcvbuf`` fixes the socket's receive buffer (no autotuning): with a small one, a
    peer that stops reading stalls the server after a few KiB, not tens of MiB.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(handshake_request(port, path, extra))
    status, _, _ = await read_http_response(reader, body=False)
    assert status == 101, status
    return reader, writer


async def read_http_response(
    reader: asyncio.StreamReader, *, body: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and, with ``body``, the Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    content = b""
    if body and "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    return status, headers, content


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """The next server frame: ``(opcode, fin, payload)``; servers don't mask."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    assert not second & 0x80, "servers must not mask"
    return first & 0x0F, bool(first & 0x80), await reader.readexactly(length)
