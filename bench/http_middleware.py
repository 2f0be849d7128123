"""Three pure-ASGI middleware, the same classes under every app of the HTTP benchmark.

They do what real middleware does on every request: read a request header, put a
value in the scope, and add response headers (one of them a timing).
"""

from __future__ import annotations

import time
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestID:
    """Take ``x-request-id`` from the request (or make one) and echo it back."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counter = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
                break
        if not request_id:
            self.counter += 1
            request_id = str(self.counter).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class Timing:
    """Add ``server-timing`` with the time to the response start."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                header = f"app;dur={took:.3f}".encode()
                message["headers"] = [*message["headers"], (b"server-timing", header)]
            await send(message)

        await self.app(scope, receive, send_with_timing)


class Tenant:
    """Read the ``host`` header into ``scope["state"]["tenant"]``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"host":
                    scope.setdefault("state", {})["tenant"] = value.split(b":")[0].decode()
                    break
        await self.app(scope, receive, send)


STACK = (RequestID, Timing, Tenant)
