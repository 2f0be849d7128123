"""The Redis channel layer (``redis://``): groups, broadcasts and presence across processes.

Commands (publishes, presence, the scripts) go through a
:class:`~nexios._redis.CommandQueue`: concurrent calls are coalesced into pipelines on a
few connections, and writes run in the order they were made. A join storm is therefore
a few pipelines, not thousands of connections fighting over a pool, and waiting in the
queue is never reported as an outage.

Receiving uses ONE pub/sub connection per layer, read by one task that calls the
receiver synchronously, in the order Redis delivers (a group's messages arrive in
publish order). A group is the channel ``{prefix}:{g:<group>}``. Concurrent
``subscribe`` calls are coalesced into multi-channel ``SUBSCRIBE`` commands, and calls
for a group already being subscribed wait for that one confirmation. Delivery is at
most once: what other processes publish while the link is down is lost; ``on_link``
tells the runtime when the link went down and when it is back with every group
subscribed again, so that it can fill the gap from history.

Saved messages: when the history store is this layer's Redis store (same server, same
key prefix), :meth:`RedisLayer.publish_saved` numbers, stores and publishes in one Lua
script, so publish order is seq order in every process.

Broker faults: every command batch is bounded by ``timeout`` (2 s) and raises
:class:`~nexios.exceptions.BackendUnavailableError` instead of hanging. The reader
PINGs the pub/sub connection after ``ping_interval`` (1 s) of silence, so a frozen
server is noticed as surely as a dead one; it then reconnects with exponential backoff
(0.05 s doubling to 2 s, with jitter) and re-subscribes every group this process has.

Presence, per group: a sorted set ``...:p`` (member = channel id, score = expiry in
server milliseconds) and a hash ``...:pi`` (channel id -> info); one index ``{prefix}:pidx``
holds every entry (``group \\xff channel id``) scored by expiry, so reaping reads only
what expired. Every presence operation is one Lua script that reads the server's clock:
expiry is judged by one clock, so the processes' clocks never have to agree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexios._redis import (
    DEFAULT_TIMEOUT,
    LINK_ERRORS,
    CommandQueue,
    KeySpace,
    LoopClock,
    bounded,
    client_from_url,
    describe_error,
    driver_errors,
    load_script,
    redact_url,
    redis_address,
    server_identity,
    text_of,
)
from nexios.exceptions import (
    BackendUnavailableError,
    ChannelError,
    ConfigurationError,
    HistoryStoreError,
)
from nexios.history.base import (
    HistoryLimits,
    HistoryStore,
    PayloadKind,
    check_append_args,
    check_group_name,
    check_idempotency_key,
    is_group_name,
    new_epoch,
)
from nexios.history.redis import RedisHistoryStore, append_args, append_keys, entry_from_append
from nexios.layers import base
from nexios.layers.base import (
    ChannelLayer,
    LayerHealth,
    LinkListener,
    PresenceRecord,
    PublishResult,
    Receiver,
    WireMessage,
    decode_wire,
    encode_wire,
    wire_header,
)

__all__ = ["RedisLayer"]

logger = logging.getLogger("nexios.layers.redis")

DEFAULT_PING_INTERVAL = 1.0
_BACKOFF_BASE = 0.05
_BACKOFF_MAX = 2.0
_SUBSCRIBE_CHUNK = 500
_SCRIPT_CHUNK = 500
_REAP_LIMIT = 500
"""Expired members one reap script removes, so one script never blocks Redis for long."""
_REAP_ROUNDS = 20
"""Reap scripts per ``presence_reap`` call; what is left waits for the next call."""

_READER_ERRORS: tuple[type[BaseException], ...] = (*LINK_ERRORS, RedisError)

_PUBLISH_SAVED = load_script("publish_saved")
_PUBLISH_ONCE = load_script("publish_once")
_PRESENCE_ADD = load_script("presence_add")
_PRESENCE_REMOVE = load_script("presence_remove")
_PRESENCE_LIST = load_script("presence_list")
_PRESENCE_REFRESH = load_script("presence_refresh")
_PRESENCE_HEARTBEAT = load_script("presence_heartbeat")
_PRESENCE_REAP = load_script("presence_reap")
SCRIPTS = (
    _PUBLISH_SAVED,
    _PUBLISH_ONCE,
    _PRESENCE_ADD,
    _PRESENCE_REMOVE,
    _PRESENCE_LIST,
    _PRESENCE_REFRESH,
    _PRESENCE_HEARTBEAT,
    _PRESENCE_REAP,
)

_T = TypeVar("_T")

# A pub/sub command the server has to confirm: (command, channel, future of the caller).
_Pending = tuple[bytes, bytes, "asyncio.Future[bool] | None"]


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _ttl_ms(ttl: float) -> int:
    if ttl <= 0:
        raise ValueError(f"presence ttl must be positive seconds, got {ttl!r}")
    return max(1, round(ttl * 1000))


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
        self.idempotency_window = self._history_limits.idempotency_window
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._client = client_from_url(url, timeout=timeout, scripts=SCRIPTS)
        self._queue = CommandQueue(self._client, timeout=timeout, scripts=SCRIPTS)
        self._address = redis_address(self._client)
        self.keyspace = KeySpace(server_identity(self._client), key_prefix)
        """Where this layer's keys live (see :class:`nexios._redis.KeySpace`)."""

        self._state = _State.NEW
        self._receiver: Receiver | None = None
        self._on_link: LinkListener | None = None
        self._groups: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        # Serialises writes on the pub/sub connection (reader PINGs, (un)subscribes).
        self._send_lock = asyncio.Lock()
        # Channels the server confirmed on the current connection.
        self._active: set[bytes] = set()
        # Per channel, the latest SUBSCRIBE not yet confirmed: later calls wait for it.
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        # Commands not yet sent, then sent and awaiting confirmation (Redis confirms
        # each channel, in order).
        self._outgoing: list[_Pending] = []
        self._expected: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        # Confirmations still due for the re-subscription after a (re)connect.
        self._resubscribing = 0
        self._up = asyncio.Event()
        self._connected = False
        self._was_up = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._down_since: float | None = None
        self._down_since_monotonic: float | None = None
        self._undecodable = 0

    @property
    def origin(self) -> bytes:
        """The origin stamped on published messages (this process's id by default)."""
        return self._origin if self._origin is not None else base.PROCESS_ID

    def _errors(self, action: str, failure: type[ChannelError] = ChannelError) -> Any:
        return driver_errors(
            self._address,
            action,
            failure=failure,
            hint="Check that redis-server is running and that NEXIOS_CHANNELS_URL points to it.",
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, receiver: Receiver, *, on_link: LinkListener | None = None) -> None:
        """Connect the pub/sub link (within ``timeout``); a stopped layer may start again.

        ``receiver`` is called synchronously from the reader task, in the order Redis
        delivers; ``on_link(False)`` when the link goes down, ``on_link(True)`` when it is
        back and every group is subscribed again (not for this first connection).
        """
        if self._state is _State.STARTED:
            raise ChannelError("RedisLayer.start() was already called; stop() it first")
        self._receiver = receiver
        self._on_link = on_link
        self._state = _State.STARTED
        self._was_up = False
        self._reader = asyncio.create_task(self._run(), name=f"nexios-redis-reader-{self._address}")
        try:
            async with bounded(self._timeout):
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
            await asyncio.wait({reader}, timeout=self._timeout)
        self._release_waiters()
        self._connected = False
        self._up.clear()
        self._down_since = self._down_since_monotonic = None
        await self._queue.close()

    def _check_open(self) -> None:
        if self._state is _State.STOPPED:
            raise BackendUnavailableError(
                f"The Redis channel layer for {self._address} was stopped: nothing was sent."
            )

    # -- groups --------------------------------------------------------------------------

    async def subscribe(self, group: str) -> bool:
        """Subscribe and wait until Redis confirms it (True).

        While the link is down the group is only recorded (False): the reader subscribes
        it as soon as the link is back, so a join never fails because of the broker.
        Concurrent calls are sent as one multi-channel ``SUBSCRIBE``; calls for a group
        already being subscribed wait for the same confirmation.
        """
        check_group_name(group)
        self._check_open()
        channel = self.keyspace.channel(group)
        if group in self._groups and channel in self._active and channel not in self._pending:
            return True
        self._groups.add(group)
        if self._conn is None:
            return False
        waiter = self._pending.get(channel)
        if waiter is None:
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
            self._send(b"SUBSCRIBE", channel, waiter)
        # shield: one caller giving up must not cancel the others' confirmation
        return await asyncio.shield(waiter)

    async def unsubscribe(self, group: str) -> None:
        """Stop delivering the group at once; tell Redis if the link is up."""
        if group not in self._groups:
            return  # never subscribed (or not a valid name): nothing to undo
        self._groups.discard(group)
        channel = self.keyspace.channel(group)
        # A later subscribe must send its own SUBSCRIBE, after this UNSUBSCRIBE.
        self._pending.pop(channel, None)
        if self._conn is not None:
            self._send(b"UNSUBSCRIBE", channel, None)

    def _send(self, command: bytes, channel: bytes, waiter: asyncio.Future[bool] | None) -> None:
        self._outgoing.append((command, channel, waiter))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="nexios-redis-subscribe"
            )

    async def _flush(self) -> None:
        """Send the queued (un)subscribes, consecutive ones of a kind as one command."""
        try:
            async with self._send_lock:
                while self._outgoing:
                    batch, self._outgoing = self._outgoing, []
                    conn = self._conn
                    if conn is None:
                        return  # the link went down; the reconnect subscribes every group
                    for run in _runs(batch):
                        if self._conn is not conn:
                            return  # went down meanwhile; the reconnect redoes every group
                        self._expected.extend(run)
                        async with bounded(self._timeout):
                            await conn.send_command(
                                run[0][0], *(channel for _, channel, _ in run), check_health=False
                            )
        except LINK_ERRORS:
            pass  # the reader notices the broken link and re-subscribes every group
        finally:
            self._flusher = None

    def _confirmed(self, kind: bytes, channel: bytes) -> None:
        """Redis confirmed a (un)subscribe of ``channel``: settle the call that sent it."""
        if not self._expected:
            return
        # Redis confirms every channel of every command, in order: this is the oldest.
        _, _, waiter = self._expected.popleft()
        if self._resubscribing:
            self._resubscribing -= 1
            if not self._resubscribing:
                self._link_up()
        if kind == b"subscribe":
            self._active.add(channel)
            if waiter is not None:
                if self._pending.get(channel) is waiter:
                    del self._pending[channel]
                if not waiter.done():
                    waiter.set_result(True)
        else:
            self._active.discard(channel)

    def _release_waiters(self) -> None:
        """The link is gone: pending (un)subscribes end; the reconnect redoes every group."""
        waiters = [*self._pending.values(), *(w for _, _, w in self._expected)]
        waiters += [w for _, _, w in self._outgoing]
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_result(False)
        self._pending.clear()
        self._expected.clear()
        self._outgoing.clear()
        self._active.clear()
        self._resubscribing = 0

    # -- publish -------------------------------------------------------------------------

    async def publish(self, group: str, message: WireMessage) -> int:
        check_group_name(group)
        self._check_open()
        raw = encode_wire(dataclasses.replace(message, origin=self.origin))
        with self._errors(f"publish to group {group!r}: nothing was sent"):
            receivers = await self._queue.call("PUBLISH", self.keyspace.channel(group), raw)
        return int(receivers)

    async def publish_saved(
        self,
        group: str,
        kind: PayloadKind,
        data: bytes,
        *,
        history: HistoryStore,
        seq_field: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Save and publish; in ONE script when ``history`` shares this layer's key space
        (the default store of this layer), so that publish order is seq order."""
        if getattr(history, "keyspace", None) != self.keyspace:
            return await super().publish_saved(
                group,
                kind,
                data,
                history=history,
                seq_field=seq_field,
                idempotency_key=idempotency_key,
            )
        check_group_name(group)
        check_append_args(kind, data, idempotency_key, seq_field)
        self._check_open()
        args = append_args(history.limits, kind, data, new_epoch(), idempotency_key, seq_field)
        args += [self.keyspace.channel(group), wire_header(kind, self.origin, None)]
        with self._errors(f"save and publish to group {group!r}", HistoryStoreError):
            reply = await self._queue.script(
                _PUBLISH_SAVED, append_keys(self.keyspace, group, idempotency_key), args
            )
        entry = entry_from_append(group, kind, data, reply, seq_field)
        receivers = int(reply[4]) if len(reply) > 4 else 0
        return PublishResult(receivers, entry, duplicate=entry.duplicate)

    async def publish_once(
        self, group: str, message: WireMessage, *, idempotency_key: str
    ) -> PublishResult:
        """Publish unless the key was used for ``group`` within the window: one script
        (``SET NX PX`` + ``PUBLISH``), so the key is used up only if it published."""
        check_group_name(group)
        check_idempotency_key(idempotency_key)
        self._check_open()
        raw = encode_wire(dataclasses.replace(message, origin=self.origin))
        window = max(1, round(self.idempotency_window * 1000))
        with self._errors(f"publish to group {group!r}: nothing was sent"):
            duplicate, receivers = await self._queue.script(
                _PUBLISH_ONCE,
                [self.keyspace.unsaved_key(group, idempotency_key)],
                [window, self.keyspace.channel(group), raw],
            )
        return PublishResult(int(receivers), duplicate=bool(int(duplicate)))

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
        kwargs.pop("redis_connect_func", None)  # no scripts on this connection
        # RESP2 so that pub/sub messages are plain replies; no retries: the reader
        # owns reconnecting, and health checks are its own PINGs. No socket timeout:
        # every wait below has its own bound.
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
        connection: AbstractConnection = pool.connection_class(**kwargs)
        return connection

    async def _open(self, conn: AbstractConnection) -> None:
        async with bounded(self._timeout):
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("PING", check_health=False)
            await conn.read_response()
        async with self._send_lock:
            # From here subscribe() queues its SUBSCRIBE (sent after these); a group it
            # added before is in the snapshot below.
            self._conn = conn
            self._expected.clear()
            channels = [self.keyspace.channel(group) for group in self._groups]
            self._resubscribing = len(channels)
            for chunk in _chunks(channels, _SUBSCRIBE_CHUNK):
                self._expected.extend((b"SUBSCRIBE", channel, None) for channel in chunk)
                async with bounded(self._timeout):
                    await conn.send_command("SUBSCRIBE", *chunk, check_health=False)
        if not channels:
            self._link_up()

    async def _listen(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        clock = LoopClock.of(loop)
        last_reply = loop.time()
        ping_sent: float | None = None
        busy_at_ping = 0.0
        try:
            while True:
                now = loop.time()
                if ping_sent is None:
                    wait = last_reply + self._ping_interval - now
                    if wait <= 0:
                        async with self._send_lock, bounded(self._timeout):
                            await conn.send_command("PING", check_health=False)
                        ping_sent, busy_at_ping = now, clock.busy
                        clock.acquire()
                        continue
                else:
                    # Only time the loop was free counts: a busy loop may not have read
                    # a PONG that is already here.
                    waited = now - ping_sent - (clock.busy - busy_at_ping)
                    wait = self._timeout - waited
                    if wait <= 0:
                        raise RedisTimeoutError(f"no answer to PING within {self._timeout:g} s")
                reply = await conn.read_response(timeout=wait, disconnect_on_error=False)
                if reply is None:  # the read timed out: PING, or give up, above
                    continue
                last_reply = loop.time()
                if ping_sent is not None:
                    ping_sent = None
                    clock.release()
                self._handle(reply)
        finally:
            if ping_sent is not None:
                clock.release()

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # PONG
        kind = reply[0]
        if kind == b"message":
            self._deliver(reply[1], reply[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            self._confirmed(kind, reply[1])

    def _deliver(self, channel: bytes, raw: bytes) -> None:
        group = self.keyspace.group_of_channel(channel)
        if group is None or group not in self._groups or self._receiver is None:
            return  # foreign, or unsubscribed while the message was in flight
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
        back = self._was_up
        self._was_up = True
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
        if back:
            self._tell_link(True)

    def _link_down(self, exc: BaseException) -> None:
        was_connected = self._connected
        self._connected = False
        self._up.clear()
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
        if was_connected:
            self._tell_link(False)

    def _tell_link(self, up: bool) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(up)
        except Exception:
            logger.exception("The channel layer's on_link callback failed")

    # -- presence ------------------------------------------------------------------------

    def _presence_keys(self, entries: Iterable[tuple[str, str, bytes]]) -> Iterator[str]:
        for group, _, _ in entries:
            yield from self.keyspace.presence(group)

    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        check_group_name(group)
        self._check_open()
        members, infos = self.keyspace.presence(group)
        with self._errors(f"add {channel_id!r} to the presence of {group!r}"):
            await self._queue.script(
                _PRESENCE_ADD,
                [members, infos, self.keyspace.presence_index],
                [channel_id, info, _ttl_ms(ttl), group],
            )

    async def presence_remove(self, group: str, channel_id: str) -> bool:
        if not is_group_name(group):
            return False  # such a member was never added
        self._check_open()
        members, infos = self.keyspace.presence(group)
        with self._errors(f"remove {channel_id!r} from the presence of {group!r}"):
            removed = await self._queue.script(
                _PRESENCE_REMOVE,
                [members, infos, self.keyspace.presence_index],
                [channel_id, group],
            )
        return bool(removed)

    async def presence_list(self, group: str) -> list[PresenceRecord]:
        check_group_name(group)
        self._check_open()
        with self._errors(f"read the presence of {group!r}"):
            flat = await self._queue.script(
                _PRESENCE_LIST, self.keyspace.presence(group), [], ordered=False
            )
        return [
            PresenceRecord(group, text_of(flat[i]), _as_bytes(flat[i + 1]))
            for i in range(0, len(flat), 2)
        ]

    async def presence_refresh(self, members: Iterable[tuple[str, str]], ttl: float) -> None:
        self._check_open()
        ttl_ms = _ttl_ms(ttl)
        entries = [(group, channel_id) for group, channel_id in members if is_group_name(group)]
        with self._errors("refresh presence"):
            # queued together, so a remove called after this runs after it
            await asyncio.gather(
                *(
                    self._queue.submit_script(
                        _PRESENCE_REFRESH,
                        [
                            self.keyspace.presence_index,
                            *(self.keyspace.presence(group)[0] for group, _ in chunk),
                        ],
                        [ttl_ms, *(value for entry in chunk for value in entry)],
                    )
                    for chunk in _chunks(entries, _SCRIPT_CHUNK)
                )
            )

    async def presence_heartbeat(
        self, entries: Sequence[tuple[str, str, bytes]], ttl: float
    ) -> list[PresenceRecord]:
        self._check_open()
        ttl_ms = _ttl_ms(ttl)
        valid = [entry for entry in entries if is_group_name(entry[0])]
        chunks = list(_chunks(valid, _SCRIPT_CHUNK))
        with self._errors("refresh presence"):
            replies = await asyncio.gather(
                *(
                    self._queue.submit_script(
                        _PRESENCE_HEARTBEAT,
                        [self.keyspace.presence_index, *self._presence_keys(chunk)],
                        [ttl_ms, *(value for entry in chunk for value in entry)],
                    )
                    for chunk in chunks
                )
            )
        return [
            PresenceRecord(*chunk[int(position) - 1])
            for chunk, added in zip(chunks, replies, strict=True)
            for position in added
        ]

    async def presence_reap(self) -> list[PresenceRecord]:
        self._check_open()
        reaped: list[PresenceRecord] = []
        with self._errors("reap expired presence"):
            for _ in range(_REAP_ROUNDS):
                read, flat = await self._queue.script(
                    _PRESENCE_REAP,
                    [self.keyspace.presence_index],
                    [_REAP_LIMIT, self.keyspace.group_head, "}"],
                    ordered=False,
                )
                reaped.extend(
                    PresenceRecord(text_of(flat[i]), text_of(flat[i + 1]), _as_bytes(flat[i + 2]))
                    for i in range(0, len(flat), 3)
                )
                if int(read) < _REAP_LIMIT:
                    break
        return reaped

    # -- the rest ------------------------------------------------------------------------

    def default_history(self) -> HistoryStore:
        return RedisHistoryStore(
            self.url, limits=self._history_limits, key_prefix=self.key_prefix, timeout=self._timeout
        )

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


def _runs(batch: list[_Pending]) -> Iterator[list[_Pending]]:
    """Consecutive commands of one kind, at most ``_SUBSCRIBE_CHUNK`` channels each."""
    run: list[_Pending] = []
    for item in batch:
        if run and (item[0] != run[0][0] or len(run) >= _SUBSCRIBE_CHUNK):
            yield run
            run = []
        run.append(item)
    if run:
        yield run
