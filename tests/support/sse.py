"""Reading Server-Sent Events the way ``EventSource`` does, one line at a time."""

from __future__ import annotations

__all__ = ["EventReader"]


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
