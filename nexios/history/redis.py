"""History in Redis Streams: every process of an app shares one numbered log per group.

Keys, per group (see :class:`nexios._redis.KeySpace`; the hash tag ``{g:<group>}``
keeps them in one cluster slot): the stream ``{prefix}:{g:<group>}:h`` (entries with
fields ``seq``, ``kind``, ``data`` and a time-based id whose milliseconds are the entry's
``created``), the numbering hash ``...:m`` (``seq``: the counter, ``epoch``) and, for
appends with an idempotency key, ``...:i:<key>`` (the original entry, kept for
``idempotency_window``).

Appending is one Lua script (``append_entry.lua``: idempotency check, counter, epoch,
``XADD``, trims), so concurrent appends from many processes get unique, increasing
numbers in stream order. Bounds are exact, so behaviour is deterministic:
``MAXLEN = max_entries`` and ``XTRIM MINID`` for the age, whose clock is the Redis
server's (``TIME``), the same clock that stamps stream ids. Each append sets the stream
and the numbering to expire after ``max_age``: a group without appends for that long is
gone as a whole, and its next append starts a new numbering under a new epoch. With
``max_age=None`` nothing expires: each group that ever saved a message keeps its small
numbering hash and its (count-bounded) stream for good. Reads are Lua scripts as well,
so the entries, ``first_seq``, ``last_seq`` and ``epoch`` of a page come from one
snapshot. When Redis loses the data (restart without persistence, ``FLUSHALL``), the
next append creates a new epoch.

On a Redis Cluster (``redis+cluster://host:port[,host:port...]``) the same keys live in
the group's hash slot, and the numbering also records which primary made it: the first
append after a failover (a promoted replica may lack the last appends, whose seqs members
already received) or after the slot moved to another primary starts a new epoch, so that
no seq is ever given to two messages. ``groups()`` and ``clear()`` scan every primary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from nexios._redis import (
    DEFAULT_TIMEOUT,
    Backend,
    KeySpace,
    backend_from_url,
    driver_errors,
    load_script,
    redact_url,
    text_of,
)
from nexios.exceptions import HistoryStoreError
from nexios.history.base import (
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_append_args,
    check_group_name,
    check_read_args,
    is_complete,
    new_epoch,
    stamped,
)

__all__ = [
    "RedisHistoryStore",
    "append_args",
    "append_keys",
    "created_of",
    "entry_from_append",
]

_READ_PAGE = 200
_APPEND = load_script("history_append")
_READ = load_script("history_read")
SCRIPTS = (_APPEND, _READ)


class RedisHistoryStore(HistoryStore):
    """History shared by every process through Redis Streams (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        limits: HistoryLimits | None = None,
        key_prefix: str = "nexios",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.limits = limits or HistoryLimits()
        self.key_prefix = key_prefix
        self._backend: Backend = backend_from_url(
            url, timeout=timeout, scripts=SCRIPTS, key_prefix=key_prefix
        )
        self._address = self._backend.address
        self._queue = self._backend.queue
        self.keyspace: KeySpace = self._backend.keyspace
        """Where this store's keys live; a Redis layer with the same key space appends and
        publishes in one script (``RedisLayer.publish_saved``)."""

    def __repr__(self) -> str:
        return f"RedisHistoryStore({redact_url(self.url)!r}, limits={self.limits!r})"

    def _errors(self, action: str) -> Any:
        return driver_errors(
            self._address,
            action,
            failure=HistoryStoreError,
            hint="Check that redis-server is running and that the history URL points to it.",
        )

    async def append(
        self,
        group: str,
        kind: PayloadKind,
        data: bytes,
        *,
        idempotency_key: str | None = None,
        seq_field: str | None = None,
    ) -> HistoryEntry:
        check_group_name(group)
        check_append_args(kind, data, idempotency_key, seq_field)
        with self._errors(f"append to the history of {group!r}"):
            await self._backend.ready()
            reply = await self._queue.script(
                _APPEND,
                append_keys(self.keyspace, group, idempotency_key),
                append_args(self._backend, self.limits, kind, data, idempotency_key, seq_field),
                **self._backend.at(group),
            )
        return entry_from_append(group, kind, data, reply, seq_field)

    async def read(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> HistoryPage:
        check_group_name(group)
        check_read_args(since, limit, epoch)
        # The script leaves the entries out when the caller's epoch is not the group's
        # (the rule of epoch_matches, which it cannot import).
        checked = epoch is not None and not (epoch == "" and since == 0)
        max_age = 0 if self.limits.max_age is None else max(1, round(self.limits.max_age * 1000))
        with self._errors(f"read the history of {group!r}"):
            await self._backend.ready()
            last, first, current, flat = await self._queue.script(
                _READ,
                [self.keyspace.meta(group), self.keyspace.stream(group)],
                [
                    max_age,
                    -1 if since is None else since,
                    -1 if limit is None else limit,
                    _READ_PAGE,
                    epoch or "",
                    "1" if checked else "0",
                ],
                ordered=False,
                **self._backend.at(group),
            )
        current = text_of(current)
        entries = [
            HistoryEntry(
                group,
                int(flat[i + 1]),
                created_of(flat[i]),
                text_of(flat[i + 2]),
                flat[i + 3],
                epoch=current,
            )
            for i in range(0, len(flat), 4)
        ]
        last_seq = int(last)
        first_seq = None if int(first) < 0 else int(first)
        return HistoryPage(
            entries,
            complete=is_complete(since, first_seq, last_seq, epoch=current, client_epoch=epoch),
            first_seq=first_seq,
            last_seq=last_seq,
            epoch=current,
        )

    async def _streams(self) -> list[bytes]:
        """Every group's stream key (``SCAN``: cost grows with the keyspace, admin use)."""
        with self._errors("list the history groups"):
            return await self._backend.scan(self.keyspace.stream_pattern(), "stream")

    async def groups(self) -> list[str]:
        # A stream expires with its last entry (PEXPIRE max_age on every append) and is
        # deleted by clear(): the streams that exist are the groups with entries.
        return sorted({self.keyspace.group_of_stream(key) for key in await self._streams()})

    async def clear(self, group: str | None = None) -> None:
        if group is not None:
            check_group_name(group)
        keys = [self.keyspace.stream(group)] if group is not None else await self._streams()
        with self._errors("clear the history"):
            # one key per DEL: a multi-key DEL would cross cluster slots
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                await asyncio.gather(
                    *(
                        self._queue.call(
                            "DEL",
                            key,
                            **self._backend.at(self.keyspace.group_of_stream(key)),
                        )
                        for key in chunk
                    )
                )

    async def close(self) -> None:
        """Close the connections; a later call connects again."""
        await self._backend.close()


def append_args(
    backend: Backend,
    limits: HistoryLimits,
    kind: str,
    data: bytes,
    idempotency_key: str | None,
    seq_field: str | None = None,
) -> list[Any]:
    """ARGV[1..8] of ``append_entry.lua`` (with a fresh epoch, used if the group needs one)."""
    max_age = 0 if limits.max_age is None else max(1, round(limits.max_age * 1000))
    window = 0 if idempotency_key is None else max(1, round(limits.idempotency_window * 1000))
    field = b"" if seq_field is None else orjson.dumps(seq_field)
    node_check = "1" if backend.cluster else "0"
    return [kind, data, limits.max_entries, max_age, new_epoch(), window, field, node_check]


def append_keys(keys: KeySpace, group: str, idempotency_key: str | None) -> list[str]:
    """KEYS of ``append_entry.lua``."""
    return [keys.meta(group), keys.stream(group), keys.saved_key(group, idempotency_key)]


def entry_from_append(
    group: str, kind: str, data: bytes, reply: Sequence[Any], seq_field: str | None = None
) -> HistoryEntry:
    """The entry an ``append_entry.lua`` reply describes (the original one if a duplicate)."""
    duplicate, seq, epoch, entry_id = reply[:4]
    return HistoryEntry(
        group,
        int(seq),
        created_of(entry_id),
        kind,
        stamped(data, seq_field, int(seq)),
        epoch=text_of(epoch),
        duplicate=bool(int(duplicate)),
    )


def created_of(entry_id: bytes | str) -> float:
    """A stream entry's creation time: the milliseconds part of its id."""
    return int(text_of(entry_id).partition("-")[0]) / 1000
