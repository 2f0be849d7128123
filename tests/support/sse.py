"""Reading Server-Sent Events the way ``EventSource`` does, one line at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

__all__ = ["EventReader", "Page", "StreamReader"]


class EventReader:
    """Feed it the lines of a ``text/event-stream``; complete events come out.

    An event is a dict of its fields (``data`` lines joined with newlines); a comment
    (``: ping``) comes out as ``{"comment": "ping"}`` so that keep-alives can be counted.
    """

    def __init__(self) -> None:
        self._current: dict[str, str] = {}

    def feed(self, line: str) -> dict[str, str] | None:
        """The event this blank line ends, else ``None``."""
        if line == "":
            event, self._current = self._current, {}
            return event or None
        name, _, value = line.partition(": ")
        name = name or "comment"
        current = self._current
        current[name] = f"{current[name]}\n{value}" if name in current else value
        return None


class StreamReader:
    """The events of a streaming httpx response, one at a time (bounded waits)."""

    def __init__(self, lines: AsyncIterator[str], timeout: float = 10.0) -> None:
        self._lines = lines
        self._reader = EventReader()
        self.timeout = timeout

    async def next(self, *, comments: bool = False) -> dict[str, str] | None:
        """The next event (comments only when asked); None when the stream ended."""
        async with asyncio.timeout(self.timeout):
            async for line in self._lines:
                event = self._reader.feed(line)
                if event is not None and (comments or set(event) != {"comment"}):
                    return event
        return None


class Page:
    """What a browser's ``EventSource`` keeps across its connections: the last event id
    (sent back as ``Last-Event-ID``), the messages and the named events it dispatched."""

    def __init__(self) -> None:
        self.last_event_id = ""
        self.messages: list[tuple[int, str, Any]] = []
        """``(seq, epoch, data)`` of each message; seq 0 for one without an id."""
        self.named: list[tuple[str, dict[str, Any]]] = []

    def take(self, event: dict[str, str]) -> None:
        """Apply an event as ``EventSource`` does: the id first, then dispatch if data."""
        if "id" in event:
            self.last_event_id = event["id"]
        if "data" not in event:
            return
        name = event.get("event", "message")
        if name != "message":
            self.named.append((name, orjson.loads(event["data"])))
            return
        seq, _, epoch = event["id"].partition(":") if "id" in event else ("0", "", "")
        self.messages.append((int(seq), epoch, orjson.loads(event["data"])))

    async def read(self, stream: StreamReader, until_seq: int) -> None:
        """Take events until a message numbered ``until_seq`` or more arrived (fails when
        the stream ends first)."""
        start = len(self.messages)
        while len(self.messages) == start or self.messages[-1][0] < until_seq:
            event = await stream.next()
            assert event is not None, f"the stream ended at {self.last_event_id!r}"
            self.take(event)

    def headers(self) -> dict[str, str]:
        return {"last-event-id": self.last_event_id} if self.last_event_id else {}

    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.messages if seq]
