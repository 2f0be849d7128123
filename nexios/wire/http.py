"""uvicorn's httptools protocol with the limits a public server needs before any app runs.

Every connection starts here (a WebSocket is an HTTP request first), so this is where
slow and oversized request heads are stopped (``--http nexios.server:GuardedHttpToolsProtocol``,
the default of ``nexios run``):

- **handshake timeout**: a request head (request line and headers) must be complete
  within ``handshake_timeout`` (10 s) of the connection opening, or of its first byte on
  a kept-alive connection; else ``408`` and close. uvicorn has no such bound: a client
  sending one header byte per second holds a socket forever (slowloris).
- **request line**: over ``max_request_line`` (8 KiB) → ``414``, close.
- **request head**: over ``max_header_bytes`` (16 KiB) before it ends → ``431``, close.
  httptools buffers an unfinished header without limit.
- **connections**: at ``max_connections`` (derived from the open-file limit), a new
  connection first makes room by dropping the oldest connection still sending its
  request head; with none to drop it is answered ``503`` and closed — never left to
  fail ``accept()`` with "too many open files", which would refuse everybody.

Settings: :mod:`nexios.wire.settings`. Pinned like the WebSocket wires: uvicorn
``>=0.54,<0.55`` (it overrides internals of ``HttpToolsProtocol``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nexios.wire.guards import ServerGuard, guard_for, plain_response, refuse

__all__ = ["GuardedHttpToolsProtocol"]


class _Refuse(Exception):
    """Raised from a parser callback to stop parsing and answer ``status``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`uvicorn.protocols.http.httptools_impl.HttpToolsProtocol` with the limits above."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard: ServerGuard = guard_for(config, server_state)
        self.head_bytes = -1  # bytes of the request head so far; -1 between requests
        self.head_began = False  # a request head began in the chunk being parsed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        if guard.full() and not guard.make_room():
            guard.log.warning(
                "cap503",
                "%d connections reach the cap (--max-connections %d): refusing with 503",
                len(self.connections),
                guard.max_connections,
            )
            self._answer(503, "Too many connections; try again later.\n")
            return
        self._head_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.handshake_done(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server is stopping: a response still streaming (Server-Sent Events, a
        ``StreamingResponse``) ends now — what it wrote is flushed, the connection closes
        and the app's ``receive`` returns ``http.disconnect`` — instead of holding the
        graceful shutdown for its full timeout; the client reconnects elsewhere."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.parser is None:  # answered and closing
            return
        self.head_began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            refusal = error.__context__
            if isinstance(refusal, _Refuse):
                self._answer(refusal.status, refusal.text)
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                self.parser = None  # type: ignore[assignment]  # no cycle left behind
            else:
                self._unsupported_upgrade_warning()
            return
        # A head that began inside this chunk is not charged for it (it may hold the end
        # of the previous request): the cap is exact to within one read.
        if self.head_bytes >= 0 and not self.head_began:
            self.head_bytes += len(data)
            cap = self.guard.settings.max_header_bytes
            if cap is not None and self.head_bytes > cap:
                self._answer(431, f"Request head larger than {cap} bytes.\n")

    def _invalid(self) -> None:
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self.send_400_response(message)

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_bytes < 0:
            self.head_began = True
            self._head_started()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        cap = self.guard.settings.max_request_line
        if cap is not None and len(self.url) > cap:
            raise _Refuse(414, f"Request line longer than {cap} bytes.\n")

    def on_headers_complete(self) -> None:
        self.head_bytes = -1
        self.guard.handshake_done(self)
        super().on_headers_complete()

    # ------------------------------------------------------------------ the guard's calls

    def handshake_timed_out(self) -> None:
        self._answer(408, "Request head not received in time.\n")

    def drop_for_room(self) -> None:
        self.transport.abort()

    # ------------------------------------------------------------------ helpers

    def _head_started(self) -> None:
        self.head_bytes = 0
        self.guard.handshake_started(self)

    def _answer(self, status: int, text: str) -> None:
        self.head_bytes = -1
        self.guard.handshake_done(self)
        refuse(self.transport, plain_response(status, text, self.server_state.default_headers))
        self.parser = None  # type: ignore[assignment]
