"""A TCP proxy between a client and a server whose connections a test can cut.

``cut()`` resets every connection through it, both sides (what a dropped network, a
restarted proxy or a NAT timeout does to a long-lived stream), and until ``restore()``
resets new ones at once, so a reconnecting client keeps failing. Runs its own event
loop in a thread, so a synchronous test (Playwright's sync API) can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

__all__ = ["TcpProxy"]

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class TcpProxy:
    """``with TcpProxy(server_port) as proxy:`` clients connect to ``proxy.port``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        """Connections proxied so far (refused ones not counted)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._refusing = False

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        server = self._server
        if server is not None:
            server.close()
            self._call(server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self, *, refuse: bool = True) -> int:
        """Reset every open connection (both sides); with ``refuse``, reset new ones too
        until :meth:`restore`. Returns how many were cut."""
        return self._call(self._cut(refuse))

    def restore(self) -> None:
        """Accept and proxy connections again."""
        self._refusing = False

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _cut(self, refuse: bool) -> int:
        self._refusing = refuse
        pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for side in pair:
                side.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    writer.transport.abort()
