"""A protocol client for in-process tests: real ``nexios.v1`` frames over ``TestClient``.

>>> with protocol(client, token="ada") as conn:
...     conn.call("subscribe", group="room")
...     conn.push("message")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nexios.testing import TestClient, WebSocketTestSession

__all__ = ["Conn", "protocol"]


class Conn:
    """A protocol connection in a test: commands get their reply, pushes are kept."""

    def __init__(self, ws: WebSocketTestSession) -> None:
        self.ws = ws
        self.next_id = 0
        self.pushes: list[dict[str, Any]] = []
        self.client = ""

    def send(self, frame: dict[str, Any]) -> int:
        self.next_id += 1
        self.ws.send_json({"id": self.next_id, **frame})
        return self.next_id

    def reply(self, command_id: int) -> dict[str, Any]:
        """The reply to ``command_id``; pushes met on the way are kept."""
        while True:
            frame: dict[str, Any] = self.ws.receive_json()
            if frame.get("id") == command_id:
                return frame
            assert "id" not in frame, f"a reply to another command: {frame}"
            self.pushes.append(frame)

    def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply = self.reply(self.send({"type": kind, **fields}))
        assert "error" not in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def refused(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply = self.reply(self.send({"type": kind, **fields}))
        assert "error" in reply, reply
        error: dict[str, Any] = reply["error"]
        return error

    def push(self, kind: str, limit: int = 50) -> dict[str, Any]:
        """The next push of ``kind`` (kept ones first)."""
        for index, frame in enumerate(self.pushes):
            if frame["type"] == kind:
                return self.pushes.pop(index)
        for _ in range(limit):
            frame = self.ws.receive_json()
            assert "id" not in frame, f"an unexpected reply: {frame}"
            if frame["type"] == kind:
                return frame
            self.pushes.append(frame)
        raise AssertionError(f"no {kind!r} push within {limit} frames")

    def messages(self, count: int) -> list[dict[str, Any]]:
        return [self.push("message") for _ in range(count)]

    def nothing_more(self) -> None:
        """No push is waiting: a ping's reply comes next."""
        command_id = self.send({"type": "ping"})
        frame = self.ws.receive_json()
        assert frame == {"id": command_id, "result": {}}, frame
        assert not [p for p in self.pushes if p["type"] != "ping"], self.pushes


@contextlib.contextmanager
def protocol(client: TestClient, **connect: Any) -> Iterator[Conn]:
    """A connected protocol client (``connect`` fields as keywords)."""
    with client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws:
        assert ws.accepted_subprotocol == "nexios.v1"
        conn = Conn(ws)
        result = conn.call("connect", **connect)
        conn.client = result["client"]
        yield conn
