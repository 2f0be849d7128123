"""History in Redis Streams: every process of an app shares one numbered log per group.

Keys, per group: the stream ``{prefix}:h:{group}`` (entries with fields ``seq``,
``kind``, ``data`` and a time-based id whose milliseconds are the entry's ``created``),
and the counter ``{prefix}:hseq:{group}`` that numbers them — never deleted, so numbers
are not reused after :meth:`RedisHistoryStore.clear`. The set ``{prefix}:hgroups``
names the groups that have a stream.

Appending is one Lua script (``INCR`` + ``XADD`` + trims), so concurrent appends from
many processes get unique, increasing numbers in stream order. Bounds are exact, so
behaviour is deterministic: ``MAXLEN = max_entries`` and ``XTRIM MINID`` for the age,
whose clock is the Redis server's (``TIME``), the same clock that stamps stream ids.
Reads apply the age bound too (as the lower end of the range), and a stream that sees no
append for ``max_age`` expires as a whole. Reads are Lua scripts as well, so the
entries, ``first_seq`` and ``last_seq`` of a page come from one consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from nexios.exceptions import BackendUnavailableError, HistoryStoreError
from nexios.history.base import (
    KINDS,
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
    check_read_args,
    is_complete,
)
from nexios.layers.redis import (
    DEFAULT_TIMEOUT,
    LINK_ERRORS,
    client_from_url,
    describe_error,
    redact_url,
    redis_address,
    run_bounded,
)

__all__ = ["RedisHistoryStore"]

_READ_PAGE = 200
_GROUPS_CHUNK = 500

# KEYS: counter, stream, group registry. ARGV: group, kind, data, max entries, max age ms
# (0 = no age bound). Returns {seq, id}.
_APPEND = """
redis.replicate_commands()
local seq = redis.call('INCR', KEYS[1])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[4], '*',
                      'seq', seq, 'kind', ARGV[2], 'data', ARGV[3])
local max_age = tonumber(ARGV[5])
if max_age > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- never trim the entry just added, whatever the clock did
  local id_ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', math.min(now - max_age, id_ms)))
  redis.call('PEXPIRE', KEYS[2], max_age)
end
redis.call('SADD', KEYS[3], ARGV[1])
return {seq, id}
"""

# Lowest id still within the age bound ('-' without one); defines `lower`.
_LOWER_BOUND = """
local lower = '-'
local max_age = tonumber(ARGV[1])
if max_age > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  lower = string.format('%d', now - max_age)
end
"""

# KEYS: counter, stream. ARGV: max age ms, since (-1 = none), limit (-1 = none), page size.
# Returns {last_seq, first_seq (-1 = none), {id, seq, kind, data, ...} oldest first}.
_READ = (
    _LOWER_BOUND
    + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local since, limit, page = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local first = -1
local oldest = redis.call('XRANGE', KEYS[2], lower, '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(oldest[1][2][2]) end

-- newest first: entries to return, in reverse
local picked = {}
if since < 0 then
  if limit ~= 0 then
    if limit > 0 then
      picked = redis.call('XREVRANGE', KEYS[2], '+', lower, 'COUNT', limit)
    else
      picked = redis.call('XREVRANGE', KEYS[2], '+', lower)
    end
  end
else
  -- walk back page by page to the newest entry at or before `since`
  local upper = '+'
  while true do
    local batch = redis.call('XREVRANGE', KEYS[2], upper, lower, 'COUNT', page)
    local reached = false
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) <= since then
        reached = true
        break
      end
      picked[#picked + 1] = entry
    end
    if reached or #batch < page then break end
    upper = '(' .. batch[#batch][1]
  end
  -- keep the oldest `limit` of them
  if limit >= 0 and #picked > limit then
    local kept = {}
    for i = #picked - limit + 1, #picked do kept[#kept + 1] = picked[i] end
    picked = kept
  end
end

local out = {}
for i = #picked, 1, -1 do
  local entry = picked[i]
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
  out[#out + 1] = entry[2][4]
  out[#out + 1] = entry[2][6]
end
return {last, first, out}
"""
)

# KEYS: stream per group, then the registry. ARGV: max age ms, then the groups.
# Returns the groups that still have entries within the age bound; forgets the others.
_GROUPS = (
    _LOWER_BOUND
    + """
local registry = KEYS[#KEYS]
local out = {}
for i = 1, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SREM', registry, ARGV[i + 1])
  elseif #redis.call('XRANGE', KEYS[i], lower, '+', 'COUNT', 1) > 0 then
    out[#out + 1] = ARGV[i + 1]
  end
end
return out
"""
)

# KEYS: stream per group, then the registry. ARGV: the groups.
_CLEAR = """
local registry = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', registry, ARGV[i])
end
return #KEYS - 1
"""


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
        self._timeout = timeout
        self._client = client_from_url(url, timeout=timeout)
        self._address = redis_address(self._client)
        self._registry_key = f"{key_prefix}:hgroups"
        self._append_script = self._client.register_script(_APPEND)
        self._read_script = self._client.register_script(_READ)
        self._groups_script = self._client.register_script(_GROUPS)
        self._clear_script = self._client.register_script(_CLEAR)

    def __repr__(self) -> str:
        return f"RedisHistoryStore({redact_url(self.url)!r}, limits={self.limits!r})"

    def _stream_key(self, group: str) -> str:
        return f"{self.key_prefix}:h:{group}"

    def _counter_key(self, group: str) -> str:
        return f"{self.key_prefix}:hseq:{group}"

    def _max_age_ms(self) -> int:
        if self.limits.max_age is None:
            return 0
        return max(1, round(self.limits.max_age * 1000))

    async def _run(self, action: str, script: Any, keys: Sequence[str], args: Any) -> Any:
        try:
            return await run_bounded(script, keys, args, within=self._timeout)
        except LINK_ERRORS as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({describe_error(exc)}): could not "
                f"{action}. Check that redis-server is running and that the history URL "
                "points to it."
            ) from exc
        except RedisError as exc:
            raise HistoryStoreError(
                f"Redis history store at {self._address} failed to {action}: {exc}"
            ) from exc

    async def append(self, group: str, kind: PayloadKind, data: bytes) -> HistoryEntry:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"history data must be bytes, got {type(data).__name__}")
        seq, entry_id = await self._run(
            f"append to the history of {group!r}",
            self._append_script,
            [self._counter_key(group), self._stream_key(group), self._registry_key],
            [group, kind, data, self.limits.max_entries, self._max_age_ms()],
        )
        return HistoryEntry(group, int(seq), _created(entry_id), kind, data)

    async def read(
        self, group: str, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        check_read_args(since, limit)
        last, first, flat = await self._run(
            f"read the history of {group!r}",
            self._read_script,
            [self._counter_key(group), self._stream_key(group)],
            [
                self._max_age_ms(),
                -1 if since is None else since,
                -1 if limit is None else limit,
                _READ_PAGE,
            ],
        )
        entries = [
            HistoryEntry(
                group, int(flat[i + 1]), _created(flat[i]), _text(flat[i + 2]), flat[i + 3]
            )
            for i in range(0, len(flat), 4)
        ]
        last_seq = int(last)
        first_seq = None if int(first) < 0 else int(first)
        return HistoryPage(
            entries,
            complete=is_complete(since, first_seq, last_seq),
            first_seq=first_seq,
            last_seq=last_seq,
        )

    async def _registered_groups(self) -> list[str]:
        try:
            return sorted(
                {_text(name) async for name in self._client.sscan_iter(self._registry_key)}
            )
        except LINK_ERRORS as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({describe_error(exc)}): could not "
                "list the history groups."
            ) from exc
        except RedisError as exc:
            raise HistoryStoreError(
                f"Redis history store at {self._address} failed to list groups: {exc}"
            ) from exc

    async def groups(self) -> list[str]:
        found: list[str] = []
        names = await self._registered_groups()
        for start in range(0, len(names), _GROUPS_CHUNK):
            chunk = names[start : start + _GROUPS_CHUNK]
            kept = await self._run(
                "list the history groups",
                self._groups_script,
                [*(self._stream_key(name) for name in chunk), self._registry_key],
                [self._max_age_ms(), *chunk],
            )
            found.extend(_text(name) for name in kept)
        return sorted(found)

    async def clear(self, group: str | None = None) -> None:
        names = [group] if group is not None else await self._registered_groups()
        for start in range(0, len(names), _GROUPS_CHUNK):
            chunk = names[start : start + _GROUPS_CHUNK]
            await self._run(
                "clear the history",
                self._clear_script,
                [*(self._stream_key(name) for name in chunk), self._registry_key],
                chunk,
            )

    async def close(self) -> None:
        await self._client.aclose()


def _created(entry_id: bytes | str) -> float:
    return int(_text(entry_id).partition("-")[0]) / 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
