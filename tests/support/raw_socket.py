"""WebSocket clients on bare sockets: peers that stop reading or vanish on purpose."""

from __future__ import annotations

import base64
import os
import socket
import struct

__all__ = ["open_raw_websocket", "reset"]


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
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
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
