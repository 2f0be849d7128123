"""The Redis channel layer (``redis://``): groups, broadcasts and presence across processes.

Publishing is one ``PUBLISH`` per message on a command client. Receiving uses ONE
pub/sub connection per layer, read by one task; a group is the channel
``{prefix}:g:{group}``. Delivery is at most once: what other processes publish while
the link is down is lost (history is how clients catch up).

Broker faults: every operation is bounded by ``timeout`` (2 s) and raises
:class:`~nexios.exceptions.BackendUnavailableError` instead of hanging. The reader
PINGs the pub/sub connection after ``ping_interval`` (1 s) of silence, so a frozen
server is noticed as surely as a dead one; it then reconnects with exponential backoff
(0.05 s doubling to 2 s, with jitter) and re-subscribes every group this process has.

Presence lives in a sorted set ``{prefix}:p:{group}`` (member = channel id, score =
expiry in Unix milliseconds) plus a hash ``{prefix}:pi:{group}`` (channel id -> info),
and the registry set ``{prefix}:pgroups`` names the groups that have any. Every
presence operation is one Lua script that reads the clock with Redis ``TIME``: expiry
is judged by the server's clock only, so the processes' clocks never have to agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexios.exceptions import BackendUnavailableError, ChannelError, ConfigurationError
from nexios.history.base import HistoryLimits
from nexios.layers import base
from nexios.layers.base import (
    ChannelLayer,
    LayerHealth,
    PresenceRecord,
    Receiver,
    WireMessage,
    decode_wire,
    encode_wire,
)

if TYPE_CHECKING:
    from nexios.history.base import HistoryStore

__all__ = ["RedisLayer"]

logger = logging.getLogger("nexios.layers.redis")

DEFAULT_TIMEOUT = 2.0
DEFAULT_PING_INTERVAL = 1.0
MAX_CONNECTIONS = 50
"""Command connections per client (the pub/sub connection is extra)."""
_BACKOFF_BASE = 0.05
_BACKOFF_MAX = 2.0
_SUBSCRIBE_CHUNK = 500
_SCRIPT_CHUNK = 500
_REAP_LIMIT = 1000
"""Expired members reaped per group per call, so one script never blocks Redis for long."""

LINK_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors that mean "the server cannot be reached" (``TimeoutError`` is an ``OSError``)."""
_READER_ERRORS: tuple[type[BaseException], ...] = (*LINK_ERRORS, RedisError)

_T = TypeVar("_T")

# Server time in Unix milliseconds. replicate_commands() lets Redis < 7 write after TIME
# (a no-op on 7+, where scripts always replicate their effects).
_NOW_MS = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: members zset, info hash, group registry. ARGV: channel id, info, ttl ms, group.
_PRESENCE_ADD = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""
)

# KEYS: members zset, info hash, group registry. ARGV: channel id, group.
_PRESENCE_REMOVE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[2])
end
return removed
"""

# KEYS: members zset, info hash. Returns {channel id, info, ...} of unexpired members.
_PRESENCE_LIST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for start = 1, #ids, 500 do
  local chunk = {}
  for i = start, math.min(start + 499, #ids) do chunk[#chunk + 1] = ids[i] end
  local infos = redis.call('HMGET', KEYS[2], unpack(chunk))
  for i, id in ipairs(chunk) do
    out[#out + 1] = id
    out[#out + 1] = infos[i] or ''
  end
end
return out
"""

# KEYS: one members zset per entry. ARGV: ttl ms, then the channel ids aligned with KEYS.
# XX: a member that was removed (left, or reaped as expired) is not brought back.
_PRESENCE_REFRESH = (
    _NOW_MS
    + """
local expires = now + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', expires, ARGV[i + 1])
end
return #KEYS
"""
)

# KEYS: zset1, hash1, zset2, hash2, ..., group registry. ARGV: limit, group1, group2, ...
# Atomic, so an expired member is removed -- and returned -- by exactly one caller.
_PRESENCE_REAP = (
    _NOW_MS
    + """
local registry = KEYS[#KEYS]
local limit = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local members, infos = KEYS[2 * i - 3], KEYS[2 * i - 2]
  local expired = redis.call('ZRANGEBYSCORE', members, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    if redis.call('ZREM', members, id) == 1 then
      local info = redis.call('HGET', infos, id)
      redis.call('HDEL', infos, id)
      out[#out + 1] = ARGV[i]
      out[#out + 1] = id
      out[#out + 1] = info or ''
    end
  end
  if redis.call('ZCARD', members) == 0 then
    redis.call('DEL', infos)
    redis.call('SREM', registry, ARGV[i])
  end
end
return out
"""
)


def client_from_url(url: str, *, timeout: float) -> aioredis.Redis:
    """A command client whose operations fail within ``timeout`` rather than retry.

    Bound: :data:`MAX_CONNECTIONS` per client; when all are busy a command waits for
    one, up to ``timeout``, then fails like an unreachable server (nothing was sent).
    One immediate retry on a connection error only: a pooled connection may have died
    with a restarted server, and a fresh connect then succeeds (or is refused at once).
    Timeouts are never retried, so a frozen server costs ``timeout``, not a multiple.
    """
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"Invalid Redis URL {redact_url(url)!r}: {exc}. "
            "Expected e.g. redis://127.0.0.1:6379/0 or unix:///run/redis.sock"
        ) from exc
    return aioredis.Redis.from_pool(pool)


def redis_address(client: aioredis.Redis) -> str:
    """``host:port`` (or the socket path) the client talks to, for error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def run_bounded(script: AsyncScript, keys: Sequence[str], args: Any, *, within: float) -> Any:
    """Run a Lua script (loading it if the server lost its cache) within ``within`` s."""
    async with asyncio.timeout(within):
        return await script(keys=list(keys), args=list(args))


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class _State(enum.Enum):
    NEW = "new"
    STARTED = "started"
    STOPPED = "stopped"


class RedisLayer(ChannelLayer):
    """Groups, broadcasts and presence shared through one Redis server.

    ``origin`` (16 bytes) marks this layer's messages so that its own reader skips
    them; by default it is :data:`nexios.layers.base.PROCESS_ID`, read at each use
    because it is re-drawn after ``fork``. Tests give a second layer in the same
    process another origin to play "another process".
    """

    def __init__(
        self,
        url: str,
        *,
        history_limits: HistoryLimits | None = None,
        key_prefix: str = "nexios",
        origin: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ping_interval: float = DEFAULT_PING_INTERVAL,
    ) -> None:
        if origin is not None and len(origin) != 16:
            raise ConfigurationError(
                f"RedisLayer origin must be 16 bytes (like uuid4().bytes), got {len(origin)}"
            )
        if timeout <= 0 or ping_interval <= 0:
            raise ConfigurationError("RedisLayer timeout and ping_interval must be positive")
        self.url = url
        self.key_prefix = key_prefix
        self._origin = origin
        self._history_limits = history_limits or HistoryLimits()
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._client = client_from_url(url, timeout=timeout)
        self._address = redis_address(self._client)
        self._channel_prefix = f"{key_prefix}:g:".encode()
        self._registry_key = f"{key_prefix}:pgroups"
        self._add_script = self._client.register_script(_PRESENCE_ADD)
        self._remove_script = self._client.register_script(_PRESENCE_REMOVE)
        self._list_script = self._client.register_script(_PRESENCE_LIST)
        self._refresh_script = self._client.register_script(_PRESENCE_REFRESH)
        self._reap_script = self._client.register_script(_PRESENCE_REAP)

        self._state = _State.NEW
        self._receiver: Receiver | None = None
        self._groups: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        # Serialises writes on the pub/sub connection (reader PINGs, subscribe calls).
        self._send_lock = asyncio.Lock()
        # channel -> futures of subscribe() calls waiting for Redis to confirm.
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        # Channels re-subscribed after a (re)connect that Redis has not confirmed yet.
        self._unconfirmed: set[bytes] = set()
        self._up = asyncio.Event()
        self._connected = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._down_since: float | None = None
        self._down_since_monotonic: float | None = None
        self._undecodable = 0

    @property
    def origin(self) -> bytes:
        """The origin stamped on published messages (this process's id by default)."""
        return self._origin if self._origin is not None else base.PROCESS_ID

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, receiver: Receiver) -> None:
        """Connect the pub/sub link (within ``timeout``); a stopped layer may start again."""
        if self._state is _State.STARTED:
            raise ChannelError("RedisLayer.start() was already called; stop() it first")
        self._receiver = receiver
        self._state = _State.STARTED
        self._reader = asyncio.create_task(self._run(), name=f"nexios-redis-reader-{self._address}")
        try:
            async with asyncio.timeout(self._timeout):
                await self._up.wait()
        except TimeoutError:
            error = self._last_error or "no answer"
            await self.stop()
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({error}): could not start the "
                f"channel layer for {redact_url(self.url)}. Start redis-server or fix "
                "NEXIOS_CHANNELS_URL."
            ) from None

    async def stop(self) -> None:
        if self._state is _State.STOPPED:
            return
        self._state = _State.STOPPED
        # Closing the pub/sub connection unsubscribes everything on the server.
        self._groups.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._release_waiters()
        self._connected = False
        self._up.clear()
        self._down_since = self._down_since_monotonic = None
        await self._client.aclose()

    # -- groups --------------------------------------------------------------------------

    def _channel(self, group: str) -> bytes:
        return self._channel_prefix + group.encode()

    async def subscribe(self, group: str) -> None:
        """Subscribe and wait (at most ``timeout``) until Redis confirms it.

        While the link is down the group is only recorded: the reader subscribes it as
        soon as the link is back, so a join never fails because of the broker.
        """
        self._check_open()
        self._groups.add(group)
        channel = self._channel(group)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            async with self._send_lock:
                conn = self._conn
                if conn is None:
                    return
                try:
                    await conn.send_command("SUBSCRIBE", channel, check_health=False)
                except LINK_ERRORS:
                    return  # the reader notices the broken link and re-subscribes
            async with asyncio.timeout(self._timeout):
                await waiter
        except TimeoutError:
            logger.debug("Redis did not confirm SUBSCRIBE %r in time", group)
        finally:
            self._drop_waiter(channel, waiter)

    async def unsubscribe(self, group: str) -> None:
        """Stop delivering the group at once; tell Redis if the link is up."""
        self._groups.discard(group)
        async with self._send_lock:
            conn = self._conn
            if conn is None:
                return
            # If the connection is gone, so is the subscription.
            with contextlib.suppress(*LINK_ERRORS):
                await conn.send_command("UNSUBSCRIBE", self._channel(group), check_health=False)

    def _drop_waiter(self, channel: bytes, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[channel]

    def _release_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- publish -------------------------------------------------------------------------

    async def publish(self, group: str, message: WireMessage) -> int:
        self._check_open()
        raw = encode_wire(WireMessage(message.kind, message.data, message.seq, self.origin))
        try:
            async with asyncio.timeout(self._timeout):
                receivers = await self._client.publish(self._channel(group), raw)
        except LINK_ERRORS as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({describe_error(exc)}): nothing was "
                f"sent to group {group!r}. Check that redis-server is running and that "
                "NEXIOS_CHANNELS_URL points to it."
            ) from exc
        except RedisError as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} refused to publish ({exc}): nothing was sent "
                f"to group {group!r}."
            ) from exc
        return int(receivers)

    def _check_open(self) -> None:
        if self._state is _State.STOPPED:
            raise BackendUnavailableError(
                f"The Redis channel layer for {self._address} was stopped: nothing was sent."
            )

    # -- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = _BACKOFF_BASE
        while True:
            conn: AbstractConnection | None = None
            try:
                conn = self._new_pubsub_connection()
                await self._open(conn)
                await self._listen(conn)
            except _READER_ERRORS as exc:
                if self._connected:
                    delay = _BACKOFF_BASE
                self._link_down(exc)
            except Exception as exc:  # a bug must not silently end cross-process delivery
                logger.exception("Redis channel layer reader failed; reconnecting")
                if self._connected:
                    delay = _BACKOFF_BASE
                self._link_down(exc)
            finally:
                self._conn = None
                if conn is not None:
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, _BACKOFF_MAX)

    def _new_pubsub_connection(self) -> AbstractConnection:
        pool = self._client.connection_pool
        kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        # RESP2 so that pub/sub messages are plain replies; no retries: the reader
        # owns reconnecting, and health checks are its own PINGs.
        kwargs.update(
            protocol=2,
            decode_responses=False,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            maint_notifications_config=None,
            maint_notifications_pool_handler=None,
        )
        connection: AbstractConnection = pool.connection_class(**kwargs)
        return connection

    async def _open(self, conn: AbstractConnection) -> None:
        async with asyncio.timeout(self._timeout):
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("PING", check_health=False)
            await conn.read_response()
        async with self._send_lock:
            channels = [self._channel(group) for group in self._groups]
            self._unconfirmed = set(channels)
            for chunk in _chunks(channels, _SUBSCRIBE_CHUNK):
                await conn.send_command("SUBSCRIBE", *chunk, check_health=False)
            self._conn = conn
        if not channels:
            self._link_up()

    async def _listen(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        last_reply = loop.time()
        ping_sent: float | None = None
        while True:
            now = loop.time()
            if ping_sent is None:
                wait = last_reply + self._ping_interval - now
                if wait <= 0:
                    async with self._send_lock:
                        await conn.send_command("PING", check_health=False)
                    ping_sent = now
                    continue
            else:
                wait = ping_sent + self._timeout - now
                if wait <= 0:
                    raise RedisTimeoutError(f"no answer to PING within {self._timeout:g} s")
            reply = await conn.read_response(timeout=wait, disconnect_on_error=False)
            if reply is None:  # the read timed out; decide above whether to PING or give up
                continue
            last_reply = loop.time()
            ping_sent = None
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # PONG outside subscribed mode
        kind = reply[0]
        if kind == b"message":
            self._deliver(reply[1], reply[2])
        elif kind == b"subscribe":
            channel = reply[1]
            for waiter in self._waiters.get(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if self._unconfirmed:
                self._unconfirmed.discard(channel)
                if not self._unconfirmed:
                    self._link_up()

    def _deliver(self, channel: bytes, raw: bytes) -> None:
        if not channel.startswith(self._channel_prefix):
            return
        group = channel[len(self._channel_prefix) :].decode(errors="replace")
        if group not in self._groups or self._receiver is None:
            return  # unsubscribed while the message was in flight
        try:
            message = decode_wire(raw)
        except ValueError as exc:
            self._undecodable += 1
            log = logger.warning if self._undecodable == 1 else logger.debug
            log(
                "Skipping an undecodable message on Redis channel %r (%s); further ones "
                "are logged at debug level and counted in health().details",
                channel,
                exc,
            )
            return
        if message.origin == self.origin:
            return  # this process already delivered it to its own members
        try:
            self._receiver(group, message)
        except Exception:
            logger.exception("The channel layer receiver failed for group %r", group)

    def _link_up(self) -> None:
        self._connected = True
        self._up.set()
        if self._down_since_monotonic is not None:
            outage = asyncio.get_running_loop().time() - self._down_since_monotonic
            self._reconnects += 1
            logger.info(
                "Redis pub/sub link to %s is back after %.2f s; re-subscribed %d group(s)",
                self._address,
                outage,
                len(self._groups),
            )
        self._down_since = None
        self._down_since_monotonic = None

    def _link_down(self, exc: BaseException) -> None:
        self._connected = False
        self._up.clear()
        self._unconfirmed = set()
        self._last_error = describe_error(exc)
        self._release_waiters()
        if self._down_since_monotonic is None:
            self._down_since = time.time()
            self._down_since_monotonic = asyncio.get_running_loop().time()
            logger.warning(
                "Redis pub/sub link to %s is down (%s): reconnecting; messages other "
                "processes publish meanwhile are not received",
                self._address,
                self._last_error,
            )

    # -- presence ------------------------------------------------------------------------

    def _presence_keys(self, group: str) -> tuple[str, str]:
        return f"{self.key_prefix}:p:{group}", f"{self.key_prefix}:pi:{group}"

    async def _script(self, script: AsyncScript, keys: Sequence[str], args: Any) -> Any:
        self._check_open()
        try:
            return await run_bounded(script, keys, args, within=self._timeout)
        except LINK_ERRORS as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({describe_error(exc)}): presence "
                "was not read or updated."
            ) from exc
        except RedisError as exc:
            raise ChannelError(f"Redis at {self._address} failed a presence update: {exc}") from exc

    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        members, infos = self._presence_keys(group)
        await self._script(
            self._add_script,
            [members, infos, self._registry_key],
            [channel_id, info, _ttl_ms(ttl), group],
        )

    async def presence_remove(self, group: str, channel_id: str) -> bool:
        members, infos = self._presence_keys(group)
        removed = await self._script(
            self._remove_script, [members, infos, self._registry_key], [channel_id, group]
        )
        return bool(removed)

    async def presence_list(self, group: str) -> list[PresenceRecord]:
        flat = await self._script(self._list_script, self._presence_keys(group), [])
        return [
            PresenceRecord(group, _text(flat[i]), _as_bytes(flat[i + 1]))
            for i in range(0, len(flat), 2)
        ]

    async def presence_refresh(self, members: Iterable[tuple[str, str]], ttl: float) -> None:
        entries = list(members)
        for chunk in _chunks(entries, _SCRIPT_CHUNK):
            await self._script(
                self._refresh_script,
                [self._presence_keys(group)[0] for group, _ in chunk],
                [_ttl_ms(ttl), *(channel_id for _, channel_id in chunk)],
            )

    async def presence_reap(self) -> list[PresenceRecord]:
        self._check_open()
        try:
            async with asyncio.timeout(self._timeout):
                groups = sorted(
                    {_text(g) async for g in self._client.sscan_iter(self._registry_key)}
                )
        except LINK_ERRORS as exc:
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({describe_error(exc)}): "
                "nothing was reaped."
            ) from exc
        reaped: list[PresenceRecord] = []
        for chunk in _chunks(groups, _SCRIPT_CHUNK):
            keys = [key for group in chunk for key in self._presence_keys(group)]
            flat = await self._script(
                self._reap_script, [*keys, self._registry_key], [_REAP_LIMIT, *chunk]
            )
            reaped.extend(
                PresenceRecord(_text(flat[i]), _text(flat[i + 1]), _as_bytes(flat[i + 2]))
                for i in range(0, len(flat), 3)
            )
        return reaped

    # -- the rest ------------------------------------------------------------------------

    def default_history(self) -> HistoryStore:
        from nexios.history.redis import RedisHistoryStore

        return RedisHistoryStore(self.url, limits=self._history_limits, key_prefix=self.key_prefix)

    def health(self) -> LayerHealth:
        return LayerHealth(
            url=redact_url(self.url),
            connected=self._connected,
            subscribed_groups=len(self._groups),
            reconnects=self._reconnects,
            last_error=self._last_error,
            details={
                "address": self._address,
                "down_since": self._down_since,
                "undecodable": self._undecodable,
            },
        )


def _ttl_ms(ttl: float) -> int:
    if ttl <= 0:
        raise ValueError(f"presence ttl must be positive seconds, got {ttl!r}")
    return max(1, round(ttl * 1000))


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__
