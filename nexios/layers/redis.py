"""The Redis channel layer (``redis://``): groups, broadcasts and presence across processes.

Commands (publishes, presence, the scripts) go through a
:class:`~nexios._redis.CommandQueue`: concurrent calls are coalesced into pipelines on a
few connections, and writes run in the order they were made. A join storm is therefore
a few pipelines, not thousands of connections fighting over a pool, and waiting in the
queue is never reported as an outage.

Receiving uses ONE pub/sub connection per layer (a :class:`~nexios.layers._pubsub.Link`),
read by one task that calls the receiver synchronously, in the order Redis delivers (a
group's messages arrive in publish order). A group is the channel
``{prefix}:{g:<group>}``. Concurrent ``subscribe`` calls are coalesced into
multi-channel ``SUBSCRIBE`` commands, and calls for a group already being subscribed
wait for that one confirmation. Delivery is at most once: what other processes publish
while the link is down is lost; ``on_link`` tells the runtime when the link went down and
when it is back with every group subscribed again, so that it can fill the gap from
history.

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

A Redis Cluster (``redis+cluster://``) is :mod:`nexios.layers.redis_cluster`, a subclass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from redis.asyncio.connection import AbstractConnection

from nexios._redis import (
    DEFAULT_TIMEOUT,
    Backend,
    ServerBackend,
    driver_errors,
    is_cluster_url,
    load_script,
    redact_url,
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
)
from nexios.history.redis import RedisHistoryStore, append_args, append_keys, entry_from_append
from nexios.layers import base
from nexios.layers._pubsub import Link
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

__all__ = ["SCRIPTS", "RedisLayer", "chunks", "records_of", "ttl_ms"]

logger = logging.getLogger("nexios.layers.redis")

DEFAULT_PING_INTERVAL = 1.0
SCRIPT_CHUNK = 500
"""Entries per presence script (heartbeat, refresh)."""
REAP_LIMIT = 500
"""Expired members one reap script removes, so one script never blocks Redis for long."""
REAP_ROUNDS = 20
"""Reap scripts per ``presence_reap`` call; what is left waits for the next call."""

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
"""The scripts every connection of a Redis layer loads."""

_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def ttl_ms(ttl: float) -> int:
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
        self._backend = self._new_backend(url, timeout, key_prefix)
        self._queue = self._backend.queue
        self._address = self._backend.address
        self.keyspace = self._backend.keyspace
        """Where this layer's keys live (see :class:`nexios._redis.KeySpace`)."""

        self._state = _State.NEW
        self._receiver: Receiver | None = None
        self._on_link: LinkListener | None = None
        self._groups: set[str] = set()
        self._undecodable = 0

    def _new_backend(self, url: str, timeout: float, key_prefix: str) -> Backend:
        if is_cluster_url(url):
            raise ConfigurationError(
                f"{redact_url(url)!r} names a Redis Cluster: use RedisClusterLayer "
                "(nexios.layers.redis_cluster), or layer_from_url, which picks it."
            )
        backend = ServerBackend(url, timeout=timeout, scripts=SCRIPTS, key_prefix=key_prefix)
        self._link = self._new_link(backend.address, backend.pubsub_connection, sharded=False)
        return backend

    def _new_link(
        self, name: str, connect: Callable[[], AbstractConnection], *, sharded: bool
    ) -> Link:
        return Link(
            name,
            connect,
            sharded=sharded,
            timeout=self._timeout,
            ping_interval=self._ping_interval,
            on_message=self._deliver,
            on_up=self._link_up,
            on_down=self._link_down,
            on_moved=self._moved,
        )

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
        try:
            error = await self._connect_links()
        except BaseException:
            await self.stop()
            raise
        if error is not None:
            await self.stop()
            raise BackendUnavailableError(
                f"Redis at {self._address} is unreachable ({error}): could not start the "
                f"channel layer for {redact_url(self.url)}. Start redis-server or fix "
                "NEXIOS_CHANNELS_URL."
            )

    async def _connect_links(self) -> str | None:
        """Start the pub/sub link(s) and wait until up: None, or what went wrong.

        Raises ConfigurationError when the server is a Redis Cluster node: one-server
        commands would meet ``MOVED`` for most groups.
        """
        self._link.start()
        if not await self._link.wait_up():
            return self._link.last_error or "no answer"
        with self._errors("start the channel layer"):
            info = await self._queue.call("INFO", "cluster")  # redis-py parses it: a dict
        if int(info.get("cluster_enabled", 0)):
            raise ConfigurationError(
                f"Redis at {self._address} is a node of a Redis Cluster: write "
                f"redis+cluster://{self._address} (any nodes, comma-separated) in "
                "NEXIOS_CHANNELS_URL instead of redis://."
            )
        return None

    async def stop(self) -> None:
        if self._state is _State.STOPPED:
            return
        self._state = _State.STOPPED
        # Closing the pub/sub connection unsubscribes everything on the server.
        self._groups.clear()
        await self._close_links()
        await self._backend.close()

    async def _close_links(self) -> None:
        await self._link.stop()

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
        Concurrent calls are sent together; calls for a group already being subscribed
        wait for the same confirmation.
        """
        check_group_name(group)
        self._check_open()
        self._groups.add(group)
        link = self._link_for(group)
        if link is None:
            return False
        return await link.subscribe(self.keyspace.channel(group))

    async def unsubscribe(self, group: str) -> None:
        """Stop delivering the group at once; tell Redis if the link is up."""
        if group not in self._groups:
            return  # never subscribed (or not a valid name): nothing to undo
        self._groups.discard(group)
        link = self._link_leaving(group)
        if link is not None:
            link.unsubscribe(self.keyspace.channel(group))

    def _link_for(self, group: str) -> Link | None:
        """The link that carries ``group`` (None: not known yet)."""
        return self._link

    def _link_leaving(self, group: str) -> Link | None:
        """The link that carried ``group``, which is leaving."""
        return self._link

    # -- publish -------------------------------------------------------------------------

    async def publish(self, group: str, message: WireMessage) -> int:
        check_group_name(group)
        self._check_open()
        raw = encode_wire(dataclasses.replace(message, origin=self.origin))
        with self._errors(f"publish to group {group!r}: nothing was sent"):
            receivers = await self._queue.call(
                self._backend.publish_command,
                self.keyspace.channel(group),
                raw,
                **self._backend.at(group),
            )
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
        backend = self._backend
        args = append_args(backend, history.limits, kind, data, idempotency_key, seq_field)
        args += [
            backend.publish_command,
            self.keyspace.channel(group),
            wire_header(kind, self.origin, None),
        ]
        with self._errors(f"save and publish to group {group!r}", HistoryStoreError):
            reply = await self._queue.script(
                _PUBLISH_SAVED,
                append_keys(self.keyspace, group, idempotency_key),
                args,
                **backend.at(group),
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
                [window, self.keyspace.channel(group), raw, self._backend.publish_command],
                **self._backend.at(group),
            )
        return PublishResult(int(receivers), duplicate=bool(int(duplicate)))

    # -- what the links report -------------------------------------------------------------

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

    def _link_up(self, link: Link, back: bool) -> None:
        if back:
            self._tell_link(True)

    def _link_down(self, link: Link) -> None:
        self._tell_link(False)

    def _moved(self, link: Link, channel: bytes) -> None:
        """A server stopped serving a channel (only sharded links say so)."""

    def _tell_link(self, up: bool) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(up)
        except Exception:
            logger.exception("The channel layer's on_link callback failed")

    # -- presence ------------------------------------------------------------------------

    async def presence_add(self, group: str, channel_id: str, info: bytes, ttl: float) -> None:
        check_group_name(group)
        self._check_open()
        members, infos = self.keyspace.presence(group)
        with self._errors(f"add {channel_id!r} to the presence of {group!r}"):
            await self._queue.script(
                _PRESENCE_ADD,
                [members, infos, self.keyspace.presence_index(group)],
                [channel_id, info, ttl_ms(ttl), group],
                **self._backend.at(group),
            )

    async def presence_remove(self, group: str, channel_id: str) -> bool:
        if not is_group_name(group):
            return False  # such a member was never added
        self._check_open()
        members, infos = self.keyspace.presence(group)
        with self._errors(f"remove {channel_id!r} from the presence of {group!r}"):
            removed = await self._queue.script(
                _PRESENCE_REMOVE,
                [members, infos, self.keyspace.presence_index(group)],
                [channel_id, group],
                **self._backend.at(group),
            )
        return bool(removed)

    async def presence_list(self, group: str) -> list[PresenceRecord]:
        check_group_name(group)
        self._check_open()
        with self._errors(f"read the presence of {group!r}"):
            flat = await self._queue.script(
                _PRESENCE_LIST,
                self.keyspace.presence(group),
                [],
                ordered=False,
                **self._backend.at(group),
            )
        return [
            PresenceRecord(group, text_of(flat[i]), _as_bytes(flat[i + 1]))
            for i in range(0, len(flat), 2)
        ]

    async def presence_refresh(self, members: Iterable[tuple[str, str]], ttl: float) -> None:
        self._check_open()
        entries = [(group, channel_id) for group, channel_id in members if is_group_name(group)]
        with self._errors("refresh presence"):
            # queued together, so a remove called after this runs after it
            await asyncio.gather(
                *(
                    self._queue.submit_script(
                        _PRESENCE_REFRESH,
                        [
                            self.keyspace.presence_index(chunk[0][0]),
                            *(self.keyspace.presence(group)[0] for group, _ in chunk),
                        ],
                        [ttl_ms(ttl), *(value for entry in chunk for value in entry)],
                        **self._backend.at(chunk[0][0]),
                    )
                    for chunk in self._refresh_chunks(entries)
                )
            )

    def _refresh_chunks(
        self, entries: Sequence[tuple[str, str]]
    ) -> Iterable[Sequence[tuple[str, str]]]:
        """Entries one refresh script takes (here: any, up to :data:`SCRIPT_CHUNK`)."""
        return chunks(entries, SCRIPT_CHUNK)

    async def presence_heartbeat(
        self, entries: Sequence[tuple[str, str, bytes]], ttl: float
    ) -> list[PresenceRecord]:
        self._check_open()
        valid = [entry for entry in entries if is_group_name(entry[0])]
        parts = list(chunks(valid, SCRIPT_CHUNK))
        with self._errors("refresh presence"):
            replies = await asyncio.gather(
                *(
                    self._queue.submit_script(
                        _PRESENCE_HEARTBEAT,
                        [
                            self.keyspace.server_presence_index,
                            *(key for group, _, _ in part for key in self.keyspace.presence(group)),
                        ],
                        [ttl_ms(ttl), *(value for entry in part for value in entry)],
                    )
                    for part in parts
                )
            )
        return [
            PresenceRecord(*part[int(position) - 1])
            for part, added in zip(parts, replies, strict=True)
            for position in added
        ]

    async def presence_reap(self) -> list[PresenceRecord]:
        self._check_open()
        reaped: list[PresenceRecord] = []
        with self._errors("reap expired presence"):
            for _ in range(REAP_ROUNDS):
                read, flat = await self._queue.script(
                    _PRESENCE_REAP,
                    [self.keyspace.server_presence_index],
                    [REAP_LIMIT, self.keyspace.group_head, "}"],
                    ordered=False,
                )
                reaped.extend(records_of(flat))
                if int(read) < REAP_LIMIT:
                    break
        return reaped

    # -- the rest ------------------------------------------------------------------------

    def default_history(self) -> HistoryStore:
        return RedisHistoryStore(
            self.url, limits=self._history_limits, key_prefix=self.key_prefix, timeout=self._timeout
        )

    def health(self) -> LayerHealth:
        link = self._link
        return LayerHealth(
            url=redact_url(self.url),
            connected=link.connected,
            subscribed_groups=len(self._groups),
            reconnects=link.reconnects,
            last_error=link.last_error,
            details={
                "address": self._address,
                "down_since": link.down_since,
                "undecodable": self._undecodable,
            },
        )


def records_of(flat: Sequence[Any]) -> list[PresenceRecord]:
    """Presence records from a reap script's ``{group, channel id, info, ...}``."""
    return [
        PresenceRecord(text_of(flat[i]), text_of(flat[i + 1]), _as_bytes(flat[i + 2]))
        for i in range(0, len(flat), 3)
    ]
