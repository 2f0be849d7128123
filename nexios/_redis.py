"""What the Redis channel layer and the Redis history store share.

- :func:`backend_from_url`: where the commands go — one server (:class:`ServerBackend`,
  ``redis://``, ``rediss://``, ``unix://``) or a Redis Cluster (:class:`ClusterBackend`,
  ``redis+cluster://host:port[,host:port...]``, redis-py's asyncio cluster client). Both
  give a :class:`CommandQueue` and a :class:`KeySpace`, and say what differs: the publish
  command (``PUBLISH`` / sharded ``SPUBLISH``), which node a group's calls go to, scans
  over every primary, pub/sub connections.
- :func:`client_from_url`: a client whose connections load every Lua script as they
  connect, never wait for a pooled connection with a deadline, and carry no socket or
  connect timeout of redis-py's (its socket timeout is built on ``asyncio.wait_for``,
  which loses cancellations on Python 3.11, and neither knows a busy event loop from a
  slow server); every call is bounded by :func:`bounded` instead.
- :class:`CommandQueue`: concurrent calls are coalesced into pipelines on a few
  connections ("lanes") per server; calls on the ordered lane run in the order they
  were made. Waiting in the queue is not an outage: only a batch the server does not
  answer within the timeout, or a refused connection, is.
- :func:`driver_errors`: the boundary where redis-py's errors become nexios's:
  :class:`~nexios.exceptions.BackendUnavailableError` when the server cannot be reached,
  the caller's error class when it answered with an error.
- :class:`KeySpace`: every key and channel name. A group's keys and its pub/sub channel
  carry the hash tag ``{g:<group>}``, so they share one Redis Cluster hash slot and every
  per-group script stays within one slot; on a cluster the presence expiry index is one
  key per slot (:func:`slot_tags`).
- Lua scripts live in ``nexios/lua/*.lua``, read once; a line ``-- @include name``
  is replaced by ``name.lua`` when the script is loaded (the server-clock snippet
  ``now_ms.lua`` is written once and composed into every script that needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.resources
import re
import weakref
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexios.exceptions import BackendUnavailableError, ChannelError, ConfigurationError

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_TIMEOUT",
    "LINK_ERRORS",
    "Backend",
    "Bounded",
    "ClusterBackend",
    "CommandQueue",
    "KeySpace",
    "LoopClock",
    "Script",
    "ServerBackend",
    "backend_from_url",
    "bounded",
    "client_from_url",
    "cluster_client_from_url",
    "describe_error",
    "driver_errors",
    "is_cluster_url",
    "load_script",
    "pubsub_connection",
    "redact_url",
    "redis_address",
    "server_identity",
    "slot_tags",
    "text_of",
]

DEFAULT_TIMEOUT = 2.0
"""Seconds a command batch may wait for the server's answer before it is an outage."""

LINK_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    # a Redis Cluster in flux: a failover under way, slots moving, a stale slot map
    ClusterError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    SlotNotCoveredError,
)
"""Errors that mean "the server cannot be reached" (``TimeoutError`` is an ``OSError``)."""

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
"""URL schemes of a Redis Cluster: ``redis+cluster://host:port[,host:port...]``."""

LANES = 4
"""Connections a :class:`CommandQueue` runs batches on per server (the ordered lane is
one of them)."""
MAX_BATCH = 512
"""Commands per pipeline."""
MAX_QUEUED = 200_000
"""Calls waiting in one queue; one more is refused with a ChannelError (overload)."""

_INCLUDE = re.compile(r"^[ \t]*-- @include (\w+)[ \t]*$", re.MULTILINE)


# -- Lua ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script with its includes expanded, and the SHA1 ``EVALSHA`` calls it by."""

    name: str
    source: str
    sha: str


@functools.cache
def _lua_text(name: str) -> str:
    return importlib.resources.files("nexios").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _expand(name: str, seen: tuple[str, ...] = ()) -> str:
    if name in seen:
        raise RuntimeError(f"Lua include cycle: {' -> '.join((*seen, name))}")

    def include(match: re.Match[str]) -> str:
        return _expand(match.group(1), (*seen, name))

    return _INCLUDE.sub(include, _lua_text(name))


@functools.cache
def load_script(name: str) -> Script:
    """``nexios/lua/<name>.lua`` with its ``-- @include`` lines expanded (read once)."""
    source = _expand(name)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


# -- clients and errors ------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__


def client_from_url(
    url: str, *, timeout: float, scripts: Sequence[Script] = (), max_connections: int = LANES + 2
) -> aioredis.Redis:
    """A command client for ``url`` (see the module docstring).

    Each new connection loads ``scripts`` before its first command, so a restarted server
    (which forgets its script cache) never answers ``NOSCRIPT`` to a batch. One immediate
    retry on a connection error: a pooled connection may have died with a restarted
    server, and a fresh connect then succeeds (or is refused at once).
    """

    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,
            socket_timeout=None,
            socket_connect_timeout=None,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            redis_connect_func=_script_loader(scripts),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"Invalid Redis URL {redact_url(url)!r}: {exc}. "
            "Expected e.g. redis://127.0.0.1:6379/0 or unix:///run/redis.sock"
        ) from exc
    return aioredis.Redis.from_pool(pool)


def _script_loader(scripts: Sequence[Script]) -> Any:
    """A ``redis_connect_func`` that loads ``scripts`` on each new connection."""

    async def connect(connection: AbstractConnection) -> None:
        await connection.on_connect()
        if scripts:
            await connection.send_packed_command(
                connection.pack_commands([("SCRIPT", "LOAD", s.source) for s in scripts])
            )
            for _ in scripts:
                await connection.read_response()

    return connect


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _cluster_url_error(url: str, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"Invalid Redis Cluster URL {redact_url(url)!r}: {problem}. Expected "
        "redis+cluster://host:port[,host:port...] naming any reachable nodes (the others "
        "are discovered), e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    )


def _cluster_nodes(url: str, hosts: str) -> list[tuple[str, int]]:
    nodes = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = port, "6379"
        host = host.strip("[]")  # an IPv6 address: [::1]:7000
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _cluster_url_error(url, f"{part!r} is not host:port")
        nodes.append((host, int(port)))
    return nodes


def cluster_client_from_url(
    url: str, *, timeout: float, scripts: Sequence[Script] = (), max_connections: int = 3 * LANES
) -> RedisCluster:
    """A Redis Cluster client for ``redis+cluster://[user:password@]host:port[,...][/0]``.

    Like :func:`client_from_url`: every new connection loads ``scripts``, commands carry
    no socket timeout (each call is bounded by :func:`bounded`). redis-py follows
    ``MOVED``/``ASK`` redirects itself; it never re-sends a command after a connection
    error (a script may have run), and the next command after one reloads the slot map.
    ``max_connections`` is per node and must cover every lane of every queue using it.
    """
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    credentials, at, hosts = netloc.rpartition("@")
    if not hosts:
        raise _cluster_url_error(url, "no host:port")
    if path not in ("", "0"):
        raise _cluster_url_error(url, f"a Redis Cluster has database 0 only, not {path!r}")
    nodes = _cluster_nodes(url, hosts)
    # redis-py's URL parser reads the credentials and options; the nodes are ours
    single = f"{'rediss' if scheme.lower() == 'rediss+cluster' else 'redis'}://"
    single += f"{credentials}{at}{nodes[0][0]}:{nodes[0][1]}" + (f"?{query}" if query else "")
    try:
        options: dict[str, Any] = dict(parse_url(single))
    except ValueError as exc:
        raise _cluster_url_error(url, str(exc)) from exc
    for name in ("host", "port", "db", "path"):
        options.pop(name, None)
    if options.pop("connection_class", None) is not None:
        options["ssl"] = True
    try:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            # no timeouts of redis-py's (see client_from_url): every call is bounded,
            # by loop-free time, and so is every reload of the slot map
            socket_timeout=None,
            socket_connect_timeout=None,
            **options,
        )
    except (TypeError, RedisClusterException) as exc:
        raise _cluster_url_error(url, str(exc)) from exc
    connect = _script_loader(scripts)
    client.nodes_manager.connection_kwargs["redis_connect_func"] = connect
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_kwargs["redis_connect_func"] = connect
    return client


def pubsub_connection(
    connection_class: type[AbstractConnection], connection_kwargs: Mapping[str, Any]
) -> AbstractConnection:
    """A dedicated pub/sub connection made like the command client's ones.

    RESP2, so that messages are plain replies; no scripts; no retries (the reader owns
    reconnecting) and no health checks or socket timeouts (the reader PINGs, and every
    wait has its own bound).
    """
    kwargs = dict(connection_kwargs)
    kwargs.pop("redis_connect_func", None)
    kwargs.update(
        protocol=2,
        decode_responses=False,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=None,
        socket_connect_timeout=None,
        maint_notifications_config=None,
        maint_notifications_pool_handler=None,
    )
    return connection_class(**kwargs)


def redis_address(client: aioredis.Redis) -> str:
    """``host:port`` (or the socket path) the client talks to, for error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def server_identity(client: aioredis.Redis) -> str:
    """Address and database: two clients with the same identity share every key."""
    return f"{redis_address(client)}/{client.connection_pool.connection_kwargs.get('db', 0)}"


@contextlib.contextmanager
def driver_errors(
    address: str, action: str, *, failure: type[ChannelError], hint: str = ""
) -> Iterator[None]:
    """Map redis-py errors raised inside the block to nexios errors.

    ``action`` completes "could not ..." / "failed to ...", e.g. "read the history of 'a'".
    """
    try:
        yield
    except LINK_ERRORS as exc:
        raise BackendUnavailableError(
            f"Redis at {address} is unreachable ({describe_error(exc)}): could not {action}."
            + (f" {hint}" if hint else "")
        ) from exc
    except (RedisError, RedisClusterException) as exc:
        raise failure(f"Redis at {address} failed to {action}: {exc}") from exc


# -- keys --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key and channel names under ``prefix`` on one server or cluster (``server``).

    Per group ``g``: ``{prefix}:{g:<g>}`` is the pub/sub channel and the stem of its
    keys: ``:h`` history stream, ``:m`` numbering (hash: ``seq``, ``epoch``, and on a
    cluster ``node``, the id of the primary that numbered last), ``:i:<key>``
    idempotency of saved publishes, ``:u:<key>`` of unsaved ones (``<key>`` is a digest
    of the idempotency key), ``:p`` presence (zset of channel ids scored by expiry) and
    ``:pi`` presence info (hash). What follows the last ``}`` of a key never contains
    one, so no group name can make one group's key another's.

    The presence expiry index (see ``presence_reap.lua``) is ``{prefix}:pidx`` on one
    server. On a cluster (``sharded``) a script may not write keys of two slots, so each
    slot has its own index, ``{prefix}:pidx:{<tag>}`` with a tag that hashes to that
    slot (:func:`slot_tags`): a group's presence and its index entry change in one
    script. A sharded prefix must not contain ``{`` or ``}``, which would make it the
    hash tag of every key.
    """

    server: str
    prefix: str
    sharded: bool = False
    group_head: str = field(init=False)

    def __post_init__(self) -> None:
        if self.sharded and ("{" in self.prefix or "}" in self.prefix):
            raise ConfigurationError(
                f"The key prefix {self.prefix!r} contains a brace: on a Redis Cluster it "
                "would put every key in one hash slot. Choose a prefix without braces."
            )
        object.__setattr__(self, "group_head", f"{self.prefix}:{{g:")

    def stem(self, group: str) -> str:
        return f"{self.group_head}{group}}}"

    def channel(self, group: str) -> bytes:
        return self.stem(group).encode()

    def slot(self, group: str) -> int:
        """The Redis Cluster hash slot of every key and the channel of ``group``."""
        return key_slot(self.channel(group))

    def group_of_channel(self, channel: bytes) -> str | None:
        """The group a channel name belongs to, or None for a foreign channel."""
        head = self.group_head.encode()
        if not channel.startswith(head) or not channel.endswith(b"}"):
            return None
        try:
            return channel[len(head) : -1].decode()
        except UnicodeDecodeError:
            return None

    def stream(self, group: str) -> str:
        return f"{self.stem(group)}:h"

    def meta(self, group: str) -> str:
        return f"{self.stem(group)}:m"

    def saved_key(self, group: str, idempotency_key: str | None) -> str:
        return f"{self.stem(group)}:i:{_digest(idempotency_key or '')}"

    def unsaved_key(self, group: str, idempotency_key: str) -> str:
        return f"{self.stem(group)}:u:{_digest(idempotency_key)}"

    def presence(self, group: str) -> tuple[str, str]:
        stem = self.stem(group)
        return f"{stem}:p", f"{stem}:pi"

    def presence_index(self, group: str) -> str:
        """The expiry index that holds ``group``'s presence entries."""
        if not self.sharded:
            return self.server_presence_index
        return self.presence_index_of_slot(self.slot(group))

    @property
    def server_presence_index(self) -> str:
        """The one expiry index of a single server (not sharded)."""
        return f"{self.prefix}:pidx"

    def presence_index_of_slot(self, slot: int) -> str:
        """The expiry index of one cluster slot (sharded key spaces only)."""
        return _slot_indexes(self.prefix)[slot]

    def reap_lease_of_slot(self, slot: int) -> str:
        """The lease on sweeping the expiry indexes of the primary serving ``slot``."""
        return f"{self.prefix}:reaping:{{{slot_tags()[slot]}}}"

    def stream_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every group's stream."""
        return f"{_glob_escape(self.group_head)}*}}:h"

    def group_of_stream(self, key: bytes | str) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return text[len(self.group_head) : -len("}:h")]


@functools.cache
def _slot_indexes(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}:pidx:{{{tag}}}" for tag in slot_tags())


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each of the 16384 cluster slots, a short hash tag that hashes to it.

    The decimal numbers from 0 are tried in turn (about 110,000 of them, 0.05 s, once
    per process) and each slot keeps the first that lands in it.
    """
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing = REDIS_CLUSTER_HASH_SLOTS
    number = 0
    while missing:
        text = str(number)
        slot = key_slot(text.encode())
        if tags[slot] is None:
            tags[slot] = text
            missing -= 1
        number += 1
    return tuple(tag for tag in tags if tag is not None)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# -- history appends (the history store and the layer's publish_saved share them) --------


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- deadlines ---------------------------------------------------------------------------

TICK = 0.01
"""How often the loop clock samples the event loop's lateness while a deadline runs."""
MAX_STRETCH = 30
"""How far a busy event loop may stretch a deadline (a multiple of it)."""


class LoopClock:
    """Time the event loop was busy running callbacks, sampled while deadlines run.

    A timer that runs late shows that the loop was busy elsewhere for that long: time
    in which a reply from Redis may have been waiting, unread. One clock per loop; it
    ticks every :data:`TICK` seconds while a deadline uses it, and stops by itself once
    none does.
    """

    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClock] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.busy = 0.0
        self.users = 0
        self._ticking = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopClock:
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = cls(loop)
        return clock

    def acquire(self) -> None:
        self.users += 1
        if not self._ticking:
            self._ticking = True
            due = self._loop.time() + TICK
            self._loop.call_at(due, self._sample, due)

    def release(self) -> None:
        self.users -= 1

    def _sample(self, due: float) -> None:
        now = self._loop.time()
        self.busy += max(0.0, now - due)
        if self.users:
            self._loop.call_at(now + TICK, self._sample, now + TICK)
        else:
            self._ticking = False


class Bounded:
    """The context manager :func:`bounded` returns."""

    __slots__ = ("_began", "_busy_before", "_check", "_clock", "_loop", "_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def __aenter__(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        clock = self._clock = LoopClock.of(loop)
        self._began = loop.time()
        self._busy_before = clock.busy
        clock.acquire()
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        self._check = loop.call_at(self._began + self._seconds, self._expire)

    def _expire(self) -> None:
        now = self._loop.time()
        free = now - self._began - (self._clock.busy - self._busy_before)
        if free < self._seconds and now < self._began + MAX_STRETCH * self._seconds:
            self._check = self._loop.call_at(now + self._seconds - free, self._expire)
        else:
            self._timeout.reschedule(now)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self._check.cancel()
        self._clock.release()
        await self._timeout.__aexit__(exc_type, exc, tb)


def bounded(seconds: float) -> Bounded:
    """``asyncio.timeout(seconds)`` that does not blame Redis for a busy event loop.

    Only time in which the loop was free counts: while a join storm or a big fan-out
    keeps the loop busy, a reply may be waiting unread, so the deadline moves on by the
    time the loop spent elsewhere (:class:`LoopClock`). A silent server times out after
    ``seconds`` of free loop time; a loop that never frees up gives up after
    :data:`MAX_STRETCH` times ``seconds``. Raises ``TimeoutError``.
    """
    return Bounded(seconds)


# -- the command queue -------------------------------------------------------------------


_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class _Call:
    __slots__ = ("args", "future", "options")

    def __init__(self, args: tuple[Any, ...], options: Mapping[str, Any]) -> None:
        self.args = args
        self.options = options
        self.future: asyncio.Future[Any] | None = None


@dataclass(slots=True, eq=False)
class _Lane:
    calls: deque[_Call] = field(default_factory=deque)
    busy: bool = False
    task: asyncio.Task[None] | None = None


class CommandQueue:
    """Runs commands for one client, coalescing concurrent calls into pipelines.

    Calls are grouped by ``where`` (the server they go to; one group for a single
    server), each group with its own lanes: a dead cluster node fails only its own
    calls. ``ordered=True`` calls go to the group's first lane and run in call order;
    other calls go to the least busy of the remaining lanes. A call on an idle lane runs
    at once in the caller's task; calls made while the lane is busy gather and run as
    one pipeline when it is free (group commit). A command or batch the server does not
    answer within ``timeout``, or a connection that cannot be made, fails with the
    driver's error, and so do the calls queued behind it on that lane (the server is
    down for them too). A caller cancelled while its call waits in the queue takes it
    out. ``options`` go to the client's ``execute_command`` (e.g. a cluster client's
    ``target_nodes``).
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        timeout: float,
        lanes: int = LANES,
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
        scripts: Sequence[Script] = (),
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._lane_count = max(1, lanes)
        self._lanes: dict[Hashable, list[_Lane]] = {}
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._scripts = tuple(scripts)
        self.batches = 0
        """Pipelines sent so far (for tests and benchmarks)."""

    async def call(
        self,
        *args: Any,
        ordered: bool = True,
        where: Hashable = None,
        options: Mapping[str, Any] = _NO_OPTIONS,
    ) -> Any:
        """Run one command; its reply, or the driver's exception."""
        return await self._submit(_Call(args, options), ordered, where)

    async def script(
        self,
        script: Script,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        ordered: bool = True,
        where: Hashable = None,
        options: Mapping[str, Any] = _NO_OPTIONS,
    ) -> Any:
        """Run a Lua script by its SHA1 (every connection loaded it when it connected)."""
        return await self._submit(_Call(_evalsha(script, keys, args), options), ordered, where)

    def submit_script(
        self,
        script: Script,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        ordered: bool = True,
        where: Hashable = None,
        options: Mapping[str, Any] = _NO_OPTIONS,
    ) -> asyncio.Future[Any]:
        """Queue a script now and return its future: calls queued together stay in order."""
        call = _Call(_evalsha(script, keys, args), options)
        self._queue(call, self._pick(ordered, where))
        assert call.future is not None
        return call.future

    async def _submit(self, call: _Call, ordered: bool, where: Hashable) -> Any:
        lane = self._pick(ordered, where)
        if lane.busy or lane.calls:
            return await self._queue(call, lane)
        lane.busy = True
        try:
            async with bounded(self._timeout):
                return await self._direct(call)
        except LINK_ERRORS as exc:
            _fail(lane.calls, exc)
            lane.calls.clear()
            raise
        finally:
            lane.busy = False
            self._wake(lane)

    def _queue(self, call: _Call, lane: _Lane) -> asyncio.Future[Any]:
        if len(lane.calls) >= self._max_queued:
            raise ChannelError(
                f"{len(lane.calls)} Redis operations are already waiting: the server is "
                "slower than the load. Retry later, or spread the load over time."
            )
        call.future = asyncio.get_running_loop().create_future()
        lane.calls.append(call)
        self._wake(lane)
        return call.future

    def _pick(self, ordered: bool, where: Hashable) -> _Lane:
        lanes = self._lanes.get(where)
        if lanes is None:
            lanes = self._lanes[where] = [_Lane() for _ in range(self._lane_count)]
        if ordered or len(lanes) == 1:
            return lanes[0]
        return min(lanes[1:], key=lambda lane: lane.busy + len(lane.calls))

    def _wake(self, lane: _Lane) -> None:
        if lane.calls and not lane.busy and lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(
                self._drain(lane), name="nexios-redis-commands"
            )

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.calls and not lane.busy:
                batch = self._take(lane)
                if batch:
                    lane.busy = True
                    try:
                        await self._run(lane, batch)
                    finally:
                        lane.busy = False
        finally:
            lane.task = None
        self._wake(lane)  # calls that came while the last batch finished

    def _take(self, lane: _Lane) -> list[_Call]:
        batch: list[_Call] = []
        while lane.calls and len(batch) < self._max_batch:
            call = lane.calls.popleft()
            if call.future is not None and not call.future.done():  # done: caller gave up
                batch.append(call)
        return batch

    async def _run(self, lane: _Lane, batch: list[_Call]) -> None:
        try:
            async with bounded(self._timeout):
                replies = await self._pipeline(batch)
        except asyncio.CancelledError:
            _fail(batch, RedisConnectionError("the Redis client was closed"))
            raise
        except LINK_ERRORS as exc:
            _fail(batch, exc)
            _fail(lane.calls, exc)
            lane.calls.clear()
            return
        except (RedisError, RedisClusterException) as exc:
            _fail(batch, exc)
            return
        self.batches += 1
        for call, reply in zip(batch, replies, strict=True):
            if call.future is None or call.future.done():
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)

    async def _direct(self, call: _Call) -> Any:
        try:
            return await self._client.execute_command(*call.args, **call.options)
        except NoScriptError:
            await self._load_scripts()
            return await self._client.execute_command(*call.args, **call.options)

    async def _pipeline(self, calls: Sequence[_Call]) -> list[Any]:
        replies = await self._pipeline_once(calls)
        failed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if failed:
            # Someone flushed the script cache (SCRIPT FLUSH; a restart reconnects and
            # reloads): load again and rerun what failed. Those calls then run after the
            # rest of their batch, the one case where calls may run out of order.
            await self._load_scripts()
            again = await self._pipeline_once([calls[i] for i in failed])
            for i, reply in zip(failed, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline_once(self, calls: Sequence[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args, **call.options)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _load_scripts(self) -> None:
        for script in self._scripts:
            await self._client.script_load(script.source)

    async def close(self) -> None:
        """Fail what is queued, stop the lanes (bounded), close the connections.

        A call made afterwards connects again.
        """
        closed = RedisConnectionError("the Redis client was closed")
        tasks = []
        for lane in (lane for lanes in self._lanes.values() for lane in lanes):
            _fail(lane.calls, closed)
            lane.calls.clear()
            if lane.task is not None:
                lane.task.cancel()
                tasks.append(lane.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self._timeout)
        with contextlib.suppress(*LINK_ERRORS, RedisError):
            await self._client.aclose()


def _evalsha(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _fail(calls: Iterable[_Call], exc: BaseException) -> None:
    for call in calls:
        if call.future is not None and not call.future.done():
            call.future.set_exception(exc)


# -- backends: one server or a cluster ----------------------------------------------------

SCAN_COUNT = 1000


class Backend:
    """Where the commands of a Redis layer or history store go (see the module docstring).

    Subclasses set :attr:`address`, :attr:`keyspace` and :attr:`queue`.
    """

    cluster: ClassVar[bool] = False
    publish_command: ClassVar[str] = "PUBLISH"
    """How a message reaches the subscribers of a channel."""

    url: str
    timeout: float
    address: str
    """``host:port`` (or the socket path), or the cluster's seed nodes, for messages."""
    keyspace: KeySpace
    queue: CommandQueue

    def at(self, group: str) -> Mapping[str, Any]:
        """Where ``group``'s calls go, as keyword arguments of :class:`CommandQueue`
        calls (none for a single server)."""
        return _NO_OPTIONS

    async def ready(self) -> None:
        """Learn what must be known before the first call (a cluster's slot map)."""

    async def scan(self, pattern: str, kind: str) -> list[bytes]:
        """Every key matching ``pattern`` of type ``kind``, on every server."""
        return await self._scan(pattern, kind, _NO_OPTIONS)

    async def _scan(self, pattern: str, kind: str, at: Mapping[str, Any]) -> list[bytes]:
        keys: list[bytes] = []
        cursor: Any = 0
        while True:
            cursor, found = await self.queue.call(
                "SCAN",
                cursor,
                "MATCH",
                pattern,
                "COUNT",
                SCAN_COUNT,
                "TYPE",
                kind,
                ordered=False,
                **at,
            )
            if isinstance(cursor, dict):  # a cluster client's answer: {node: cursor}
                (cursor,) = cursor.values()
            keys.extend(found)
            if int(cursor) == 0:
                return keys

    async def close(self) -> None:
        """Close the connections; a later call connects again."""
        await self.queue.close()


class ServerBackend(Backend):
    """One Redis server (``redis://``, ``rediss://``, ``unix://``)."""

    def __init__(
        self, url: str, *, timeout: float, scripts: Sequence[Script], key_prefix: str
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.client = client_from_url(url, timeout=timeout, scripts=scripts)
        self.address = redis_address(self.client)
        self.keyspace = KeySpace(server_identity(self.client), key_prefix)
        self.queue = CommandQueue(self.client, timeout=timeout, scripts=scripts)

    def pubsub_connection(self) -> AbstractConnection:
        """A new, unconnected pub/sub connection to the server."""
        pool = self.client.connection_pool
        return pubsub_connection(pool.connection_class, pool.connection_kwargs)


class ClusterBackend(Backend):
    """A Redis Cluster (``redis+cluster://host:port[,host:port...]``).

    Each group lives in one hash slot, served by one primary: its calls queue on that
    primary's lanes, its messages use sharded pub/sub (``SPUBLISH``), and scripts that
    write a numbering record the primary's id so that a failover starts a new epoch
    (``append_entry.lua``).
    """

    cluster: ClassVar[bool] = True
    publish_command: ClassVar[str] = "SPUBLISH"

    def __init__(
        self, url: str, *, timeout: float, scripts: Sequence[Script], key_prefix: str
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.client = cluster_client_from_url(url, timeout=timeout, scripts=scripts)
        seeds = sorted(self.client.nodes_manager.startup_nodes)
        self.address = f"cluster {','.join(seeds)}"
        self.keyspace = KeySpace(f"cluster {','.join(seeds)}", key_prefix, sharded=True)
        self.queue = CommandQueue(self.client, timeout=timeout, scripts=scripts)

    def at(self, group: str) -> Mapping[str, Any]:
        """The lanes of the primary serving ``group``'s slot, and that node as the
        target: redis-py then skips finding each command's keys (a ``MOVED`` answer
        still sends the command where its keys live now)."""
        return self.at_slot(self.keyspace.slot(group))

    def at_slot(self, slot: int) -> Mapping[str, Any]:
        node = self.node_of_slot(slot)
        return _NO_OPTIONS if node is None else self.at_node(node)

    @staticmethod
    def at_node(node: ClusterNode) -> Mapping[str, Any]:
        return {"where": node.name, "options": {"target_nodes": node}}

    def node_of_slot(self, slot: int) -> ClusterNode | None:
        """The primary serving ``slot`` in the slot map known here (None: not known yet)."""
        try:
            return self.client.nodes_manager.get_node_from_slot(slot)
        except (SlotNotCoveredError, KeyError):
            return None

    def primaries(self) -> list[ClusterNode]:
        return self.client.get_primaries()

    def node_named(self, name: str) -> ClusterNode | None:
        """The node ``host:port`` in the slot map known here (None: not a node now)."""
        return self.client.get_node(node_name=name)

    def slots_by_primary(self) -> dict[str, list[int]]:
        """The slots each primary serves, by node name, in the slot map known here."""
        served: dict[str, list[int]] = {}
        for slot, nodes in self.client.nodes_manager.slots_cache.items():
            if nodes:
                served.setdefault(nodes[0].name, []).append(slot)
        return served

    async def ready(self) -> None:
        """Read the slot map if it is not known yet (bounded by the timeout).

        Later the client reloads it by itself after a connection error or a redirect.
        """
        if self.client.nodes_manager.slots_cache:
            return
        try:
            async with bounded(self.timeout):
                await self.client.initialize()
        except RedisClusterException as exc:
            if "Cluster mode is not enabled" in str(exc):
                raise ConfigurationError(
                    f"{self.address} is not a Redis Cluster (cluster mode is disabled): "
                    "write redis://host:port/0 for one server, or point "
                    "redis+cluster:// at the nodes of a cluster."
                ) from exc
            # no node answered: an outage, not a mistake
            raise RedisConnectionError(str(exc)) from exc

    async def refresh(self) -> None:
        """Read the slot map again (after a failover, a resharding, a dead node)."""
        async with bounded(self.timeout):
            await self.client.nodes_manager.initialize()

    async def scan(self, pattern: str, kind: str) -> list[bytes]:
        await self.ready()
        found = await asyncio.gather(
            *(self._scan(pattern, kind, self.at_node(node)) for node in self.primaries())
        )
        return [key for keys in found for key in keys]

    @staticmethod
    def pubsub_connection(node: ClusterNode) -> AbstractConnection:
        """A new, unconnected pub/sub connection to ``node``."""
        return pubsub_connection(node.connection_class, node.connection_kwargs)


def backend_from_url(
    url: str, *, timeout: float, scripts: Sequence[Script], key_prefix: str
) -> ServerBackend | ClusterBackend:
    """A :class:`ClusterBackend` for ``redis+cluster://`` URLs, else a :class:`ServerBackend`."""
    kind = ClusterBackend if is_cluster_url(url) else ServerBackend
    return kind(url, timeout=timeout, scripts=scripts, key_prefix=key_prefix)
