"""The history store contract: bytes in, numbered entries out.

A store keeps, per group, the messages sent with ``save_history=True``. It assigns each
entry a sequence number (``seq``) that is unique and strictly increasing within the
group — also after ``clear`` (numbers are never reused, so a client's "last seq seen"
stays meaningful) — and a creation time. Each group is bounded by count and by age
(:class:`HistoryLimits`): the oldest entries are pruned one by one, never the whole
history at once.

Stores move bytes. Encoding happens once, above them (see :mod:`nexios.encoding`);
:class:`HistoryEntry` decodes its payload lazily and serialises to JSON without
decoding it at all.
"""

from __future__ import annotations

import abc
import base64
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "HistoryEntry",
    "HistoryLimits",
    "HistoryPage",
    "HistoryStore",
    "PayloadKind",
]

PayloadKind = str
"""One of ``"json"``, ``"text"`` or ``"bytes"``: how ``HistoryEntry.data`` is encoded."""

KINDS: frozenset[str] = frozenset({"json", "text", "bytes"})


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """Per-group bounds. Older entries beyond either bound are pruned on append."""

    max_entries: int = 1000
    max_age: float | None = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("HistoryLimits.max_entries must be at least 1")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("HistoryLimits.max_age must be positive seconds, or None")


class HistoryEntry:
    """One saved message: ``seq``, ``created`` (Unix seconds) and ``payload``.

    ``payload`` is decoded on first access; ``orjson`` serialises an entry (via
    :func:`nexios.encoding.default`) as ``{"seq", "payload", "created"}`` without
    decoding JSON payloads.
    """

    __slots__ = ("_payload", "created", "data", "group", "kind", "seq")

    _MISSING: Any = object()

    def __init__(self, group: str, seq: int, created: float, kind: PayloadKind, data: bytes):
        self.group = group
        self.seq = seq
        self.created = created
        self.kind = kind
        self.data = data
        self._payload: Any = HistoryEntry._MISSING

    @property
    def payload(self) -> Any:
        """The message as it was sent: a JSON value, a ``str`` or ``bytes``."""
        if self._payload is HistoryEntry._MISSING:
            if self.kind == "json":
                self._payload = orjson.loads(self.data)
            elif self.kind == "text":
                self._payload = self.data.decode()
            else:
                self._payload = self.data
        return self._payload

    def payload_fragment(self) -> Any:
        """The payload as something ``orjson.dumps`` writes without decoding it first."""
        if self.kind == "json":
            return orjson.Fragment(self.data)
        if self.kind == "text":
            return self.data.decode()
        return base64.b64encode(self.data).decode()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: ``{"seq": ..., "payload": ..., "created": ...}``."""
        return {"seq": self.seq, "payload": self.payload_fragment(), "created": self.created}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HistoryEntry):
            return NotImplemented
        return (self.group, self.seq, self.kind, self.data) == (
            other.group,
            other.seq,
            other.kind,
            other.data,
        )

    def __hash__(self) -> int:
        return hash((self.group, self.seq))

    def __repr__(self) -> str:
        return f"HistoryEntry(group={self.group!r}, seq={self.seq}, payload={self.payload!r})"


class HistoryPage(list[HistoryEntry]):
    """Entries oldest first, plus what a reconnecting client needs to know.

    ``complete`` is False when entries the caller asked for (everything after
    ``since``) were already pruned, or when ``since`` is ahead of the store (the store
    was reset): the caller must reload from its own source of truth instead of
    trusting the list to be gap-free. ``last_seq`` is the group's newest number (0 when
    nothing was ever saved); ``first_seq`` the oldest number still kept (None when empty).
    """

    complete: bool
    first_seq: int | None
    last_seq: int

    def __init__(
        self,
        entries: list[HistoryEntry] | None = None,
        *,
        complete: bool = True,
        first_seq: int | None = None,
        last_seq: int = 0,
    ) -> None:
        super().__init__(entries or ())
        self.complete = complete
        self.first_seq = first_seq
        self.last_seq = last_seq


def page_for(
    entries: list[HistoryEntry],
    *,
    since: int | None,
    limit: int | None,
    last_seq: int,
) -> HistoryPage:
    """Select from ``entries`` (all kept entries, oldest first) what a read returns.

    Without ``since``: the newest ``limit`` entries. With ``since``: the first ``limit``
    entries after ``since`` (oldest first, so a client can page forward).
    """
    first_seq = entries[0].seq if entries else None
    complete = is_complete(since, first_seq, last_seq)
    if since is None:
        chosen = entries if limit is None else entries[max(0, len(entries) - limit) :]
        return HistoryPage(chosen, complete=complete, first_seq=first_seq, last_seq=last_seq)
    after = [entry for entry in entries if entry.seq > since]
    if limit is not None:
        after = after[:limit]
    return HistoryPage(after, complete=complete, first_seq=first_seq, last_seq=last_seq)


def is_complete(since: int | None, first_seq: int | None, last_seq: int) -> bool:
    """Whether everything after ``since`` is still kept, from the group's bounds alone.

    False when entries after ``since`` were pruned, or when ``since`` is ahead of the
    store (it was reset). Every store uses this rule.
    """
    if since is None:
        return True
    if since > last_seq:
        return False
    if first_seq is None:
        return since == last_seq
    return since >= first_seq - 1


def check_read_args(since: int | None, limit: int | None) -> None:
    if since is not None and (not isinstance(since, int) or since < 0):
        raise ValueError(f"since must be a non-negative int sequence number, got {since!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")


class HistoryStore(abc.ABC):
    """Where saved messages live. Implementations: memory, sqlite, redis."""

    limits: HistoryLimits

    @abc.abstractmethod
    async def append(self, group: str, kind: PayloadKind, data: bytes) -> HistoryEntry:
        """Save one message; assign its ``seq`` and ``created``; prune beyond the limits."""

    @abc.abstractmethod
    async def read(
        self, group: str, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        """Entries of ``group`` oldest first (see :func:`page_for` for since/limit)."""

    @abc.abstractmethod
    async def groups(self) -> list[str]:
        """Names of groups that have kept entries."""

    @abc.abstractmethod
    async def clear(self, group: str | None = None) -> None:
        """Drop the entries of one group, or of all. Sequence numbers are not reused."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""
