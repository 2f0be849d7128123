"""The history store contract: bytes in, numbered entries out.

A store keeps, per group, the messages sent with ``save_history=True``. It assigns each
entry a sequence number (``seq``) that is unique and strictly increasing within the
group's *numbering*, and a creation time. Each group is bounded by count and by age
(:class:`HistoryLimits`): the oldest entries are pruned one by one, never the whole
history at once.

Epochs. A group's numbering (its counter) is created with an *epoch*, a random id
(16 hex characters). The epoch changes exactly when the numbering is lost: a new memory
store, Redis data lost (restart without persistence, ``FLUSHALL``, key expiry), the
sqlite file replaced or deleted, the group's state freed after ``max_age`` without an
append or evicted by ``max_groups``. ``clear`` keeps the counter and the epoch, so
numbers are never reused within an epoch: ``(epoch, seq)`` names one message for good.
A client keeps the epoch with its last seq and passes both to ``read``; see
:func:`is_complete` for the one rule every store applies.

Idempotency. ``append(..., idempotency_key=k)`` with a key already used for that group
within ``limits.idempotency_window`` (120 s) saves nothing and returns the original
entry's ``seq`` and ``epoch`` with ``duplicate=True``: a publisher may retry after an
error without saving twice.

Stores move bytes. Encoding happens once, above them (see :mod:`nexios.encoding`);
:class:`HistoryEntry` decodes its payload lazily and serialises to JSON without
decoding it at all.
"""

from __future__ import annotations

import abc
import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nexios import encoding
from nexios.exceptions import ConfigurationError
from nexios.framing import stamp_seq

__all__ = [
    "MAX_GROUP_NAME_BYTES",
    "HistoryEntry",
    "HistoryLimits",
    "HistoryPage",
    "HistoryStore",
    "PayloadKind",
    "check_group_name",
    "check_idempotency_key",
    "is_complete",
    "is_group_name",
    "new_epoch",
    "stamped",
]

PayloadKind = str
"""One of ``"json"``, ``"text"`` or ``"bytes"``: how ``HistoryEntry.data`` is encoded."""

KINDS: frozenset[str] = frozenset({"json", "text", "bytes"})


MAX_GROUP_NAME_BYTES = 1024
"""The longest group name (UTF-8 bytes) layers and stores accept."""


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """Bounds of the history, per group and per store.

    - ``max_entries``, ``max_age``: older entries beyond either bound are pruned on
      append. A group without an append for ``max_age`` is freed as a whole — entries,
      counter and epoch (the next append starts a new numbering under a new epoch). With
      ``max_age=None`` a group's numbering is kept for good (the Redis and sqlite stores
      then keep one small record per group that ever saved a message).
    - ``max_groups`` (memory store only): the most groups one store holds; appending to
      one more frees the least recently appended group (its epoch is gone with it).
    - ``idempotency_window``: seconds an idempotency key is remembered per group.
    """

    max_entries: int = 1000
    max_age: float | None = 7 * 24 * 3600.0
    max_groups: int = 100_000
    idempotency_window: float = 120.0

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("HistoryLimits.max_entries must be at least 1")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("HistoryLimits.max_age must be positive seconds, or None")
        if self.max_groups < 1:
            raise ValueError("HistoryLimits.max_groups must be at least 1")
        if not self.idempotency_window > 0:
            raise ValueError("HistoryLimits.idempotency_window must be positive seconds")


def new_epoch() -> str:
    """A fresh epoch: 16 random hex characters."""
    return secrets.token_hex(8)


def check_group_name(group: object) -> str:
    """Return ``group`` if it is a usable group name; raise ConfigurationError if not.

    A name must be a ``str`` that encodes to UTF-8 (no lone surrogates) in at most
    :data:`MAX_GROUP_NAME_BYTES` bytes. Layers and stores check it before any state
    changes, so a bad name never leaves a trace.
    """
    return _checked_text(group, "group name")


def is_group_name(group: object) -> bool:
    """Whether :func:`check_group_name` accepts ``group``."""
    try:
        check_group_name(group)
    except ConfigurationError:
        return False
    return True


def check_idempotency_key(key: object) -> str:
    """Return ``key`` if it is a usable idempotency key: the rules of group names, non-empty."""
    if key == "":
        raise ConfigurationError("An idempotency key must not be empty")
    return _checked_text(key, "idempotency key")


def _checked_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"A {what} must be a str, got {type(value).__name__}")
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"The {what} {value!r} is not valid text ({exc.reason} at position "
            f"{exc.start}): use one that encodes to UTF-8."
        ) from None
    if size > MAX_GROUP_NAME_BYTES:
        raise ConfigurationError(
            f"A {what} of {size} bytes is too long: at most {MAX_GROUP_NAME_BYTES} UTF-8 "
            f"bytes. Use a short id (e.g. a hash) instead of {value[:40]!r}..."
        )
    return value


class HistoryEntry:
    """One saved message: ``seq``, ``epoch``, ``created`` (Unix seconds) and ``payload``.

    ``payload`` is decoded on first access; ``orjson`` serialises an entry (via
    :func:`nexios.encoding.default`) as ``{"seq", "payload", "created"}`` without
    decoding JSON payloads. ``duplicate`` is True when ``append`` found its idempotency
    key already used: nothing was saved, and ``seq``, ``epoch`` and ``created`` are the
    original entry's.
    """

    __slots__ = ("_payload", "created", "data", "duplicate", "epoch", "group", "kind", "seq")

    _MISSING: Any = object()

    def __init__(
        self,
        group: str,
        seq: int,
        created: float,
        kind: PayloadKind,
        data: bytes,
        *,
        epoch: str = "",
        duplicate: bool = False,
    ):
        self.group = group
        self.seq = seq
        self.created = created
        self.kind = kind
        self.data = data
        self.epoch = epoch
        self.duplicate = duplicate
        self._payload: Any = HistoryEntry._MISSING

    @property
    def payload(self) -> Any:
        """The message as it was sent: a JSON value, a ``str`` or ``bytes``."""
        if self._payload is HistoryEntry._MISSING:
            if self.kind == "json":
                self._payload = encoding.loads(self.data)
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
        return (self.group, self.seq, self.epoch, self.kind, self.data) == (
            other.group,
            other.seq,
            other.epoch,
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
    ``since``) were already pruned, when ``since`` is ahead of the store (the store
    was reset), or when the caller's epoch is not the group's (see :func:`is_complete`):
    the caller must reload from its own source of truth instead of trusting the list to
    be gap-free. ``last_seq`` is the group's newest number (0 when it has no numbering);
    ``first_seq`` the oldest number still kept (None when empty); ``epoch`` the group's
    epoch ("" when it has no numbering).
    """

    complete: bool
    first_seq: int | None
    last_seq: int
    epoch: str

    def __init__(
        self,
        entries: list[HistoryEntry] | None = None,
        *,
        complete: bool = True,
        first_seq: int | None = None,
        last_seq: int = 0,
        epoch: str = "",
    ) -> None:
        super().__init__(entries or ())
        self.complete = complete
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.epoch = epoch


def page_for(
    entries: Sequence[HistoryEntry],
    *,
    since: int | None,
    limit: int | None,
    last_seq: int,
    epoch: str = "",
    client_epoch: str | None = None,
) -> HistoryPage:
    """Select from ``entries`` (all kept entries, oldest first) what a read returns.

    Without ``since``: the newest ``limit`` entries. With ``since``: the first ``limit``
    entries after ``since`` (oldest first, so a client can page forward). Nothing when
    ``client_epoch`` is not the group's ``epoch`` (see :func:`epoch_matches`).
    """
    first_seq = entries[0].seq if entries else None
    complete = is_complete(since, first_seq, last_seq, epoch=epoch, client_epoch=client_epoch)
    page = HistoryPage(complete=complete, first_seq=first_seq, last_seq=last_seq, epoch=epoch)
    if limit == 0 or not epoch_matches(client_epoch, since, epoch):
        return page
    if since is None:
        page.extend(entries if limit is None else entries[max(0, len(entries) - limit) :])
        return page
    after = [entry for entry in entries if entry.seq > since]
    page.extend(after if limit is None else after[:limit])
    return page


def epoch_matches(client_epoch: str | None, since: int | None, epoch: str) -> bool:
    """Whether a caller holding ``client_epoch`` may trust the group's numbering.

    True without a client epoch (None), when it is the group's, and for ``""`` with
    ``since == 0``: a client that has seen nothing yet has nothing to lose.
    """
    if client_epoch is None or client_epoch == epoch:
        return True
    return client_epoch == "" and since == 0


def is_complete(
    since: int | None,
    first_seq: int | None,
    last_seq: int,
    *,
    epoch: str = "",
    client_epoch: str | None = None,
) -> bool:
    """Whether everything after ``since`` is still kept. Every store uses this rule.

    False when the caller's epoch is not the group's (:func:`epoch_matches`: its numbers
    belong to a numbering that was lost), when entries after ``since`` were pruned, or
    when ``since`` is ahead of the store (it was reset).
    """
    if not epoch_matches(client_epoch, since, epoch):
        return False
    if since is None:
        return True
    if since > last_seq:
        return False
    if first_seq is None:
        return since == last_seq
    return since >= first_seq - 1


def check_read_args(since: int | None, limit: int | None, epoch: str | None = None) -> None:
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        raise ValueError(f"since must be a non-negative int sequence number, got {since!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")
    if epoch is not None and not isinstance(epoch, str):
        raise ValueError(f"epoch must be a str (as read from HistoryPage.epoch), got {epoch!r}")


def check_append_args(
    kind: str, data: bytes, idempotency_key: str | None, seq_field: str | None = None
) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(data, bytes):
        raise TypeError(f"history data must be bytes, got {type(data).__name__}")
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    if seq_field is not None and (
        not isinstance(seq_field, str) or not seq_field or kind != "json" or data[:1] != b"{"
    ):
        raise ConfigurationError(
            f"seq_field={seq_field!r} needs a non-empty name and a JSON object payload."
        )


def stamped(data: bytes, seq_field: str | None, seq: int) -> bytes:
    """What is saved (and delivered) for ``data``: with ``"<seq_field>": seq`` first in
    the JSON object when ``seq_field`` is given. History keeps what members received."""
    return data if seq_field is None else stamp_seq(data, seq_field, seq)


class HistoryStore(abc.ABC):
    """Where saved messages live. Implementations: memory, sqlite, redis."""

    limits: HistoryLimits

    @abc.abstractmethod
    async def append(
        self,
        group: str,
        kind: PayloadKind,
        data: bytes,
        *,
        idempotency_key: str | None = None,
        seq_field: str | None = None,
    ) -> HistoryEntry:
        """Save one message; assign its ``seq``, ``epoch`` and ``created``; prune beyond
        the limits. With an ``idempotency_key`` already used for ``group`` within
        ``limits.idempotency_window``: save nothing, return the original entry's numbers
        with ``duplicate=True``. With ``seq_field``, the saved (and returned) data has
        ``"<seq_field>": seq`` first in its JSON object (see :func:`stamped`)."""

    @abc.abstractmethod
    async def read(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> HistoryPage:
        """Entries of ``group`` oldest first (see :func:`page_for` for since/limit).

        ``epoch``: the epoch the caller's ``since`` belongs to; when it is not the
        group's, no entries and ``complete=False`` (see :func:`is_complete`).
        ``read(group, limit=0)`` is cheap: the group's position (``last_seq``, ``epoch``).
        """

    @abc.abstractmethod
    async def groups(self) -> list[str]:
        """Names of groups that have kept entries."""

    @abc.abstractmethod
    async def clear(self, group: str | None = None) -> None:
        """Drop the entries of one group, or of all. Counters and epochs are kept, so
        sequence numbers are not reused."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""
