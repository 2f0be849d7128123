"""What the Redis channel layer and the Redis history store share.

- :func:`client_from_url`: a client whose connections load every Lua script as they
  connect, never wait for a pooled connection with a deadline, and carry no socket
  timeout (redis-py builds that on ``asyncio.wait_for``, which loses cancellations on
  Python 3.11); each command batch is bounded by :class:`CommandQueue` instead.
- :class:`CommandQueue`: concurrent calls are coalesced into pipelines on a few
  connections ("lanes"); calls on the ordered lane run in the order they were made.
  Waiting in the queue is not an outage: only a batch the server does not answer within
  the timeout, or a refused connection, is.
- :func:`driver_errors`: the boundary where redis-py's errors become nexios's:
  :class:`~nexios.exceptions.BackendUnavailableError` when the server cannot be reached,
  the caller's error class when it answered with an error.
- :class:`KeySpace`: every key and channel name. A group's keys and its pub/sub channel
  carry the hash tag ``{g:<group>}``, so they share one Redis Cluster hash slot and every
  per-group script stays within one slot.
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
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexios.exceptions import BackendUnavailableError, ChannelError, ConfigurationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "LINK_ERRORS",
    "CommandQueue",
    "KeySpace",
    "Script",
    "client_from_url",
    "describe_error",
    "driver_errors",
    "load_script",
    "redact_url",
    "redis_address",
    "server_identity",
    "text_of",
]

DEFAULT_TIMEOUT = 2.0
"""Seconds a command batch may wait for the server's answer before it is an outage."""

LINK_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors that mean "the server cannot be reached" (``TimeoutError`` is an ``OSError``)."""

LANES = 4
"""Connections a :class:`CommandQueue` runs batches on (the ordered lane is one of them)."""
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

    async def connect(connection: AbstractConnection) -> None:
        await connection.on_connect()
        if scripts:
            await connection.send_packed_command(
                connection.pack_commands([("SCRIPT", "LOAD", s.source) for s in scripts])
            )
            for _ in scripts:
                await connection.read_response()

    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            redis_connect_func=connect,
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
    except RedisError as exc:
        raise failure(f"Redis at {address} failed to {action}: {exc}") from exc


# -- keys --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key and channel names under ``prefix`` on one server (``server``: address/db).

    Per group ``g``: ``{prefix}:{g:<g>}`` is the pub/sub channel and the stem of its
    keys: ``:h`` history stream, ``:m`` numbering (hash: ``seq``, ``epoch``), ``:i:<key>``
    idempotency of saved publishes, ``:u:<key>`` of unsaved ones, ``:p`` presence (zset of
    channel ids scored by expiry) and ``:pi`` presence info (hash). Shared:
    ``{prefix}:pidx``, the presence expiry index (see ``presence_reap.lua``); on a
    cluster it would become one index per slot, so its scripts stay within one slot.
    """

    server: str
    prefix: str
    group_head: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_head", f"{self.prefix}:{{g:")

    def stem(self, group: str) -> str:
        return f"{self.group_head}{group}}}"

    def channel(self, group: str) -> bytes:
        return self.stem(group).encode()

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
        return f"{self.stem(group)}:i:{idempotency_key or ''}"

    def unsaved_key(self, group: str, idempotency_key: str) -> str:
        return f"{self.stem(group)}:u:{idempotency_key}"

    def presence(self, group: str) -> tuple[str, str]:
        stem = self.stem(group)
        return f"{stem}:p", f"{stem}:pi"

    @property
    def presence_index(self) -> str:
        return f"{self.prefix}:pidx"

    def stream_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every group's stream."""
        return f"{_glob_escape(self.group_head)}*}}:h"

    def group_of_stream(self, key: bytes | str) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return text[len(self.group_head) : -len("}:h")]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# -- history appends (the history store and the layer's publish_saved share them) --------


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the command queue -------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Call:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    script: Script | None = None


@dataclass(slots=True, eq=False)
class _Lane:
    calls: deque[_Call] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class CommandQueue:
    """Runs commands for one client, coalescing concurrent calls into pipelines.

    ``ordered=True`` calls go to one lane and run in call order (group commit: while a
    batch is in flight the next one gathers). Other calls go to the least busy of the
    remaining lanes. A batch that the server does not answer within ``timeout``, or a
    connection that cannot be made, fails with the driver's error; the calls queued on
    that lane behind it fail with it (the server is down for them too). A caller
    cancelled while its call is still queued takes the call out of the queue.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        timeout: float,
        lanes: int = LANES,
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
        scripts: Sequence[Script] = (),
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._lanes = [_Lane() for _ in range(max(1, lanes))]
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._scripts: Mapping[str, Script] = {s.sha: s for s in scripts}
        self.batches = 0
        """Pipelines sent so far (for tests and benchmarks)."""

    async def call(self, *args: Any, ordered: bool = True) -> Any:
        """Run one command; its reply, or the driver's exception."""
        return await self._enqueue(_Call(args, self._future()), ordered)

    async def script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any], *, ordered: bool = True
    ) -> Any:
        """Run a Lua script by its SHA1 (every connection loaded it when it connected)."""
        call = _Call(("EVALSHA", script.sha, len(keys), *keys, *args), self._future(), script)
        return await self._enqueue(call, ordered)

    def submit_script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any], *, ordered: bool = True
    ) -> asyncio.Future[Any]:
        """Queue a script now and return its future: calls queued together stay in order."""
        call = _Call(("EVALSHA", script.sha, len(keys), *keys, *args), self._future(), script)
        self._put(call, ordered)
        return call.future

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _enqueue(self, call: _Call, ordered: bool) -> Any:
        self._put(call, ordered)
        return await call.future

    def _put(self, call: _Call, ordered: bool) -> None:
        lane = self._pick(ordered)
        if len(lane.calls) >= self._max_queued:
            raise ChannelError(
                f"{len(lane.calls)} Redis operations are already waiting: the server is "
                "slower than the load. Retry later, or spread the load over time."
            )
        lane.calls.append(call)
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(
                self._drain(lane), name="nexios-redis-commands"
            )

    def _pick(self, ordered: bool) -> _Lane:
        if ordered or len(self._lanes) == 1:
            return self._lanes[0]
        return min(self._lanes[1:], key=lambda lane: len(lane.calls))

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.calls:
                batch = self._take(lane)
                if batch:
                    await self._run(lane, batch)
        finally:
            lane.task = None

    def _take(self, lane: _Lane) -> list[_Call]:
        batch: list[_Call] = []
        while lane.calls and len(batch) < self._max_batch:
            call = lane.calls.popleft()
            if not call.future.done():  # done: the caller was cancelled
                batch.append(call)
        return batch

    async def _run(self, lane: _Lane, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._pipeline(batch)
                if self._scripts and any(isinstance(r, NoScriptError) for r in replies):
                    replies = await self._reload_and_retry(batch, replies)
        except asyncio.CancelledError:
            _fail(batch, RedisConnectionError("the Redis client was closed"))
            raise
        except LINK_ERRORS as exc:
            _fail(batch, exc)
            _fail(lane.calls, exc)
            lane.calls.clear()
            return
        except RedisError as exc:
            _fail(batch, exc)
            return
        self.batches += 1
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done():
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)

    async def _pipeline(self, batch: Sequence[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command(*call.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _reload_and_retry(self, batch: list[_Call], replies: list[Any]) -> list[Any]:
        """Someone flushed the script cache (SCRIPT FLUSH): load again, rerun what failed.

        The rerun calls run after the others of their batch; only a script-cache flush
        in the middle of a batch can reorder calls this way.
        """
        for script in self._scripts.values():
            await self._client.script_load(script.source)
        failed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        again = await self._pipeline([batch[i] for i in failed])
        for i, reply in zip(failed, again, strict=True):
            replies[i] = reply
        return replies

    async def close(self) -> None:
        """Fail what is queued, stop the lanes (bounded), close the connections.

        A call made afterwards connects again.
        """
        closed = RedisConnectionError("the Redis client was closed")
        tasks = []
        for lane in self._lanes:
            _fail(lane.calls, closed)
            lane.calls.clear()
            if lane.task is not None:
                lane.task.cancel()
                tasks.append(lane.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self._timeout)
        with contextlib.suppress(*LINK_ERRORS, RedisError):
            await self._client.aclose()


def _fail(calls: Iterable[_Call], exc: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)
