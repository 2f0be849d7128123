"""The channels runtime: one per app — groups, fan-out, presence, history and upkeep.

``NexiosApp`` builds one :class:`ChannelsRuntime`, starts it in its lifespan and stops it
at shutdown. ``ChannelBox`` finds the runtime of the app serving the current
connection or request through a context variable (:func:`current_runtime`), so two
apps in one process never share groups, events, policies or members.

The runtime keeps the local members of each group (``dict`` keyed by channel id: O(1)
join and leave), the channel layer that links processes, the history store, and one
maintenance task that:

- evicts members whose sender made no progress for ``send_timeout`` (every 0.25 s),
- closes channels idle longer than their ``expires`` (every second),
- refreshes this process's presence entries and reaps those of dead processes
  (every ``presence_ttl / 3`` seconds).

Stopping is explicit and bounded: a stop event the maintenance loop checks, bounded
waits for every step, so shutdown never hangs on a broker that stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nexios import encoding
from nexios.events import EventEmitter
from nexios.exceptions import ChannelError, ConfigurationError, GroupAccessDenied
from nexios.framing import Frame, FrameSet, encode_payload
from nexios.history.base import HistoryEntry, HistoryPage, HistoryStore
from nexios.layers.base import ChannelLayer, LayerHealth, PublishResult, WireMessage
from nexios.metrics import Metrics
from nexios.runtime.channel import Channel, encode_metadata
from nexios.runtime.collector import COLLECTOR
from nexios.runtime.feeds import GroupFeed, Resync
from nexios.runtime.presence import (
    HeartbeatRotation,
    PresenceMember,
    member_from_record,
    presence_info,
)
from nexios.runtime.senders import (
    DEADLINE_MISSED,
    EVICTION_CLOSE_CODE,
    FlushScheduler,
    OutboxLimits,
    sender_for,
)
from nexios.runtime.settings import ChannelSettings, SettingsOverrides

__all__ = [
    "MAX_GROUP_NAME_BYTES",
    "MAX_REPLAY",
    "PROCESS_DIRECTORY",
    "ChannelsRuntime",
    "GroupPolicy",
    "JoinResult",
    "Readiness",
    "RuntimeStats",
    "SendResult",
    "check_group_name",
    "current_runtime",
    "peek_runtime",
]

logger = logging.getLogger("nexios.channels")

MAX_GROUP_NAME_BYTES = 1024
"""Longest group name, in UTF-8 bytes."""

GroupPolicy = Callable[[Channel, str], Awaitable[bool]]
"""``async def policy(channel, group) -> bool``: may this channel join this group?"""

MAX_SEQ = 2**63 - 1
"""Largest seq a store holds; a client's ``since`` above it is simply ahead of history."""

MAX_REPLAY = 1000
"""Most saved messages a join with ``since`` replays; more missed is ``complete=False``."""

_CATCH_UP_BOUND = 5.0
"""Seconds a joining member waits for this process to catch up with its ``since``."""

_CATCH_UP_RETRY = (0.1, 2.0)
"""Seconds between two tries of reading a group's position after the link came back
(doubling from the first to the second): right after a failover a store may still
address the node that died."""

_DEADLINE_CHECK = 0.25
_EXPIRY_CHECK = 1.0
_STOP_BOUND = 3.0
"""Seconds each shutdown step may take before it is abandoned."""

PROCESS_DIRECTORY = "\x00nexios:processes"
"""The reserved group whose presence entries are the server processes themselves
(:meth:`ChannelsRuntime.announce`); the NUL byte keeps it apart from any group an app names."""

_current: contextvars.ContextVar[ChannelsRuntime | None] = contextvars.ContextVar(
    "nexios_channels_runtime", default=None
)


def current_runtime() -> ChannelsRuntime:
    """The channels runtime of the app serving this connection, request or lifespan."""
    runtime = _current.get()
    if runtime is None:
        raise ConfigurationError(
            "ChannelBox is used outside a nexios app: call it from a handler, a lifespan or "
            "startup hook, or a task started from one. Outside an app (scripts, tests), "
            "run the code inside `async with app.channels.activated():`."
        )
    return runtime


def peek_runtime() -> ChannelsRuntime | None:
    """The current runtime, or None outside an app."""
    return _current.get()


def check_group_name(name: Any) -> str:
    """``name`` if it can be a group name; a ConfigurationError saying why otherwise."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"group_name must be a non-empty str, got {name!r}.")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"group_name {name[:40]!r}... is not valid Unicode text (it has a lone surrogate); "
            "group names are shared with other processes as UTF-8."
        ) from None
    if size > MAX_GROUP_NAME_BYTES:
        raise ConfigurationError(
            f"group_name is {size} bytes long; the limit is {MAX_GROUP_NAME_BYTES} bytes of "
            "UTF-8. Use an id or a hash for long names."
        )
    return name


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What a join did. With ``since``: what was replayed from history.

    ``complete`` is False when the member missed more than history keeps (or than
    :data:`MAX_REPLAY`, or than its outbox holds), or its epoch is not the group's:
    nothing was replayed, reload the group's state from your own database. ``epoch``
    and ``last_seq`` are where the member now stands: the next saved message it receives
    is ``last_seq + 1``.
    """

    added: bool
    recovered: int = 0
    complete: bool = True
    epoch: str = ""
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a group send did. ``seq``/``epoch`` number a saved message (0/"" if not).

    ``duplicate``: the idempotency key was used within its window; nothing was saved or
    delivered this time, and ``seq``/``epoch`` are the first send's.
    """

    delivered: bool
    seq: int = 0
    epoch: str = ""
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """Counts for monitoring and tests (this process only)."""

    started: bool
    groups: int
    channels: int
    memberships: int
    evictions: int
    senders: dict[str, int]
    """Members by sender kind: ``{"asgi": n, "frames": m}``."""
    queued_messages: int
    queued_bytes: int
    dropped: int


@dataclass(frozen=True, slots=True)
class Readiness:
    """What :meth:`ChannelsRuntime.check_ready` found: each dependency's problem, or None."""

    channel_layer: str | None
    history: str | None

    @property
    def ready(self) -> bool:
        """True when the channel layer and the history store both answered."""
        return self.channel_layer is None and self.history is None


class ChannelsRuntime:
    """Groups, fan-out, presence and history for one app (see the module docstring)."""

    _process_defaults = SettingsOverrides()

    def __init__(
        self,
        overrides: SettingsOverrides | None = None,
        *,
        events: EventEmitter | None = None,
        group_policy: GroupPolicy | None = None,
    ) -> None:
        self.overrides = overrides or SettingsOverrides()
        self.events = events
        self.group_policy = group_policy
        self._settings: ChannelSettings | None = None
        self._layer: ChannelLayer | None = None
        self._history: HistoryStore | None = None
        self.groups: dict[str, dict[str, Channel]] = {}
        self.channels: dict[str, Channel] = {}
        self.feeds: dict[str, GroupFeed] = {}
        self._opening: dict[str, asyncio.Future[GroupFeed]] = {}
        self._presence_info: dict[tuple[str, str], bytes] = {}
        self._beats = HeartbeatRotation()
        self._collector_attached = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._scheduler: FlushScheduler | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self._catching_up: asyncio.Task[None] | None = None
        self._stopping = False
        self._layer_failed_at_stop = False
        self._jitter = 0.0
        self.evictions = 0
        self.dropped = 0
        """Messages dropped by ``DROP_*`` outbox policies since this runtime was made."""
        self.metrics: Metrics | None = None
        """Counts what this runtime does, when set (the app sets it when metrics are on)."""
        self.process_id = uuid.uuid4().hex
        """This runtime's entry in the process directory (:meth:`announce`)."""

    # ------------------------------------------------------------------ settings

    @classmethod
    def set_process_defaults(cls, overrides: SettingsOverrides) -> None:
        """Defaults for every runtime that starts later in this process
        (``ChannelBox.configure`` outside an app)."""
        cls._process_defaults = overrides

    @classmethod
    def process_defaults(cls) -> SettingsOverrides:
        return cls._process_defaults

    def configure(self, overrides: SettingsOverrides | None = None, **settings: Any) -> None:
        """Change settings given in code (``SettingsOverrides`` fields as keywords);
        only while the runtime is not running."""
        overrides = (overrides or SettingsOverrides()).over(SettingsOverrides(**settings))
        if self.started:
            raise ConfigurationError(
                "The channels runtime has already started: configure channels before the "
                "app starts — NexiosApp(channels_url=..., outbox=..., ...) or "
                "ChannelBox.configure(...) at import time."
            )
        self.overrides = overrides.over(self.overrides)

    @property
    def settings(self) -> ChannelSettings:
        """The resolved settings (resolved at start; before that, resolved now)."""
        if self._settings is not None:
            return self._settings
        return ChannelSettings.resolve(self.overrides.over(self._process_defaults))

    @property
    def layer(self) -> ChannelLayer:
        if self._layer is None:
            raise ChannelError("The channels runtime has not started yet.")
        return self._layer

    @property
    def history(self) -> HistoryStore:
        if self._history is None:
            raise ChannelError("The channels runtime has not started yet.")
        return self._history

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        return self._layer is not None

    @contextlib.asynccontextmanager
    async def activated(self) -> Any:
        """Make this the current runtime (for ``ChannelBox``) inside the block; started."""
        token = _current.set(self)
        try:
            await self.ensure_started()
            yield self
        finally:
            _current.reset(token)

    def activate(self) -> contextvars.Token[ChannelsRuntime | None]:
        """Make this the current runtime in this context; the app does it per connection."""
        return _current.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[ChannelsRuntime | None]) -> None:
        _current.reset(token)

    async def ensure_started(self) -> None:
        """Start on first use if the lifespan did not (e.g. a server without lifespan)."""
        if self._layer is not None and self._loop is asyncio.get_running_loop():
            return
        await self.start()

    async def start(self) -> None:
        """Resolve settings, connect the layer, start upkeep. Idempotent per event loop.

        Raises ConfigurationError for bad settings and BackendUnavailableError when the
        broker cannot be reached: the app's startup fails with that message.
        """
        loop = asyncio.get_running_loop()
        self._bind_loop(loop)
        assert self._start_lock is not None
        async with self._start_lock:
            if self._layer is not None:
                return
            settings = ChannelSettings.resolve(self.overrides.over(self._process_defaults))
            layer = settings.build_layer()
            history = settings.build_history(layer)
            try:
                await layer.start(self._on_remote_message, on_link=self._on_link)
            except BaseException:
                with contextlib.suppress(Exception):
                    await history.close()
                raise
            self._settings, self._layer, self._history = settings, layer, history
            self._jitter = settings.test_delivery_jitter
            self._stopping = self._layer_failed_at_stop = False
            self._stop_requested = asyncio.Event()
            self._scheduler = FlushScheduler(loop)
            if settings.gc_freeze:
                COLLECTOR.attach()
                self._collector_attached = True
            self._maintenance = loop.create_task(self._maintain(), name="nexios-channels")

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = self._loop
        if previous is loop:
            return
        if previous is not None and previous.is_running() and not previous.is_closed():
            raise ChannelError(
                "This app's channels runtime is running on another event loop; an app serves "
                "one event loop at a time. Stop it there (app shutdown) before using it here."
            )
        if previous is not None:
            logger.debug("Channels runtime: the event loop it ran on is gone; starting afresh")
        self._forget_everything()
        self._loop = loop
        self._start_lock = asyncio.Lock()

    def _forget_everything(self) -> None:
        for feed in self.feeds.values():
            feed.close()
        self.feeds.clear()
        self._opening.clear()
        self.groups.clear()
        for _ in self.channels:
            COLLECTOR.left()
        self.channels.clear()
        self._presence_info.clear()
        self._beats.clear()
        if self._collector_attached:
            self._collector_attached = False
            COLLECTOR.detach()
        self._closing.clear()
        self._settings = self._layer = self._history = None
        self._maintenance = self._stop_requested = self._scheduler = None

    async def stop(self, close_code: int = 1001) -> None:
        """Close every local member (``close_code``), leave presence, disconnect.

        Every step is bounded (:data:`_STOP_BOUND` seconds), whatever the broker does.
        """
        if self._layer is None or self._loop is not asyncio.get_running_loop():
            return
        self._stopping = True
        self._stop_catching_up()
        await self._stop_maintenance()
        await _bounded(self._forget_all(close_code), "closing members")
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=_STOP_BOUND)
        layer, history = self._layer, self._history
        await _bounded(layer.stop(), "disconnecting the channel layer")
        if history is not None:
            await _bounded(history.close(), "closing the history store")
        self._forget_everything()
        self._loop = None

    async def _stop_maintenance(self) -> None:
        task = self._maintenance
        if task is None:
            return
        if self._stop_requested is not None:
            self._stop_requested.set()
        _, pending = await asyncio.wait({task}, timeout=_STOP_BOUND)
        if pending:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=_STOP_BOUND)
        if pending:
            logger.warning("Channel maintenance did not stop within its bound; abandoning it")
        elif not task.cancelled() and task.exception() is not None:
            logger.error("Channel maintenance failed", exc_info=task.exception())
        self._maintenance = None

    async def _forget_all(self, close_code: int) -> None:
        for channel in list(self.channels.values()):
            await self.forget(channel, reason="shutdown", close_code=close_code)

    # ------------------------------------------------------------------ membership

    async def join(
        self,
        channel: Channel,
        group: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        hidden: bool = False,
    ) -> JoinResult:
        """Add ``channel`` to ``group``; ``added`` is False when it already was a member.

        With ``since`` (and the ``epoch`` it belongs to), the member first receives the
        saved messages after ``since``, then live ones: in seq order, each once, no gap
        (live messages are held while history is read, then merged). Everything that can
        be refused is checked before any state changes, so a failed join leaves no trace.

        ``hidden=True`` makes a member that only receives: it is not in presence, its
        join and leave emit no event and the group policy is not asked (the caller
        decided). The client protocol's endpoint uses it for its internal groups.
        """
        check_group_name(group)
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise ConfigurationError(f"since must be a seq (an int >= 0), got {since!r}.")
        if since is not None and since < 0:
            raise ConfigurationError(f"since must be a seq (an int >= 0), got {since!r}.")
        if since is not None:
            since = min(since, MAX_SEQ)  # ahead of any history: complete=False
        if (
            not hidden
            and self.group_policy is not None
            and not await self.group_policy(channel, group)
        ):
            raise GroupAccessDenied(
                f"Channel {channel.uuid} may not join group {group!r} (group policy refused)."
            )
        await self.ensure_started()
        if channel.host is not None and channel.host is not self:
            raise ConfigurationError(
                f"Channel {channel.uuid} belongs to another app's channels runtime; a channel "
                "joins groups of the app whose connection it wraps."
            )
        members = self.groups.get(group)
        if members is not None and channel.uuid in members:
            feed = self.feeds[group]
            return JoinResult(False, epoch=feed.epoch, last_seq=feed.last)
        info = presence_info(channel.uuid, encode_metadata(channel.metadata), time.time())
        settings = self.settings
        if channel.sender is None:
            self._attach_sender(channel, settings)
        feed = await self._open_feed(group)
        result = JoinResult(True, epoch=feed.epoch, last_seq=feed.last)
        if since is not None:
            result = await self._replay(channel, feed, since, epoch)
        self._add_local(channel, group, None if hidden else info)
        if hidden:
            return result
        try:
            await self.layer.presence_add(group, channel.uuid, info, settings.presence_ttl)
        except BaseException:
            await self._drop(channel, group)
            raise
        await self._emit("channel.join", group, channel.uuid, channel.metadata, "joined")
        if since is not None and self.metrics is not None:
            self.metrics.recovered(result.complete)
        return result

    def _add_local(self, channel: Channel, group: str, info: bytes | None) -> None:
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = {}
        members[channel.uuid] = channel
        channel.groups.add(group)
        channel.host = self
        if channel.uuid not in self.channels:
            self.channels[channel.uuid] = channel
            COLLECTOR.joined()
        if info is not None:
            self._presence_info[(group, channel.uuid)] = info
            self._beats.add((group, channel.uuid))

    async def _open_feed(self, group: str) -> GroupFeed:
        """The group's feed, subscribed and positioned (the first local member opens it)."""
        while True:
            feed = self.feeds.get(group)
            if feed is not None and feed.ready:
                return feed
            opening = self._opening.get(group)
            if opening is None:
                return await self._start_feed(group)
            # Another join is opening it; by the time we resume, it may be gone again.
            await asyncio.shield(opening)

    async def _start_feed(self, group: str) -> GroupFeed:
        assert self._loop is not None
        opening = self._opening[group] = self._loop.create_future()
        feed = self.feeds[group] = GroupFeed(
            group, fan_out=self.fan_out, read=self._read_for_feed, resync=self._on_resync
        )
        try:
            await self.layer.subscribe(group)
            position = await self.history.read(group, limit=0)
        except BaseException as error:
            self._close_feed(group)
            opening.set_exception(error)
            opening.exception()  # retrieved here; waiters get it too
            raise
        finally:
            self._opening.pop(group, None)
        feed.start(position.epoch, position.last_seq)
        opening.set_result(feed)
        return feed

    def _close_feed(self, group: str) -> None:
        feed = self.feeds.pop(group, None)
        if feed is not None:
            feed.close()

    async def _replay(
        self, channel: Channel, feed: GroupFeed, since: int, epoch: str | None
    ) -> JoinResult:
        """Send ``channel`` what came after ``since``, merged with what arrives meanwhile.

        The member is a joiner until then: live messages are collected, not sent. If this
        process lags the client (it saw ``since`` on another process), the member waits
        (bounded) until this process caught up, so nothing reaches it twice.
        """
        buffered = feed.add_joiner(channel.uuid)
        try:
            page = await self.history.read(
                feed.group, since=since, limit=MAX_REPLAY + 1, epoch=epoch
            )
            complete = (
                page.complete
                and len(page) <= MAX_REPLAY
                and page.epoch == feed.epoch
                and _fits(page, self.settings.outbox)
            )
            position = max(since, page[-1].seq) if complete and page else since
            if complete and feed.last < position:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CATCH_UP_BOUND):
                        await feed.reached(position)
        finally:
            feed.remove_joiner(channel.uuid)
        sender = channel.sender
        assert sender is not None
        complete = complete and page.epoch == feed.epoch
        last = since if complete else feed.last
        recovered = 0
        for entry in page if complete else ():
            if entry.seq > last:
                sender.put(_frames_of(entry, feed.group).get(channel.frame_key, channel.framer))
                last = entry.seq
                recovered += 1
        for frames in buffered:
            if frames.seq == 0 or frames.seq > last:
                sender.put(frames.get(channel.frame_key, channel.framer))
                last = max(last, frames.seq)
        return JoinResult(
            True, recovered=recovered, complete=complete, epoch=feed.epoch, last_seq=feed.last
        )

    def _attach_sender(self, channel: Channel, settings: ChannelSettings) -> None:
        assert self._scheduler is not None
        sender = sender_for(
            channel.websocket,
            settings.outbox,
            lambda failed, code, reason: self._on_sender_failure(channel, code, reason),
            self._scheduler,
            self._count_drops,
        )
        channel.sender = sender
        channel.websocket.sender = sender

    def _count_drops(self, count: int) -> None:
        self.dropped += count

    async def leave(self, channel: Channel, group: str, reason: str = "left") -> bool:
        """Remove ``channel`` from ``group``. False when it was not a member."""
        listed = (group, channel.uuid) in self._presence_info
        if not await self._drop(channel, group):
            return False
        if not listed:  # a hidden member: no presence entry, no event
            return True
        if not self._layer_failed_at_stop:
            try:
                await self.layer.presence_remove(group, channel.uuid)
            except ChannelError as error:
                self._layer_failed(error)
        await self._emit("channel.leave", group, channel.uuid, channel.metadata, reason)
        return True

    async def _drop(self, channel: Channel, group: str) -> bool:
        """Drop the local membership; unsubscribe after the group's last local member."""
        if not self._drop_local(channel, group):
            return False
        feed = self.feeds.get(group)
        joining = feed is not None and feed.joiners
        if group not in self.groups and group not in self._opening and not joining:
            self._close_feed(group)
            if not self._layer_failed_at_stop:
                try:
                    await self.layer.unsubscribe(group)
                    if group in self.feeds:  # someone joined meanwhile: keep receiving
                        await self.layer.subscribe(group)
                except ChannelError as error:
                    self._layer_failed(error)
        return True

    def _layer_failed(self, error: ChannelError) -> None:
        if self._stopping:
            self._layer_failed_at_stop = True  # presence entries expire by TTL instead
        logger.debug("Leaving a group: the layer failed (%s)", error)

    def _drop_local(self, channel: Channel, group: str) -> bool:
        members = self.groups.get(group)
        if members is None or members.pop(channel.uuid, None) is None:
            return False
        channel.groups.discard(group)
        self._presence_info.pop((group, channel.uuid), None)
        if not members:
            del self.groups[group]
        if not channel.groups:
            self._channel_gone(channel)
        return True

    async def forget(
        self,
        channel: Channel,
        *,
        reason: str,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        """Take ``channel`` out of every group; with ``close_code``, end its connection.

        Without a close code the socket stays open and its sender keeps delivering what
        was queued before; it may join groups again.
        """
        if close_code is not None:
            sender = channel.sender
            if sender is not None:
                sender.end(close_code, close_reason or reason)
            else:
                channel.websocket.end(close_code, close_reason or reason)
        self._channel_gone(channel)
        for group in list(channel.groups):
            await self.leave(channel, group, reason)

    def _channel_gone(self, channel: Channel) -> None:
        if self.channels.pop(channel.uuid, None) is not None:
            COLLECTOR.left()

    async def release(self, channel: Channel, *, reason: str) -> None:
        """The channel's socket ended: leave every group and stop its sender."""
        await self.forget(channel, reason=reason)
        if channel.sender is not None:
            channel.sender.close()

    def _on_sender_failure(self, channel: Channel, code: int, reason: str) -> None:
        sender = channel.sender
        if sender is None or sender.closed:
            return
        sender.close()  # nothing more is queued for it, from now on
        close_code: int | None = None
        if code == EVICTION_CLOSE_CODE:
            channel.leave_reason = "evicted"
            close_code = code
            self.evictions += 1
            if self.metrics is not None:
                self.metrics.evicted("send_timeout" if reason == DEADLINE_MISSED else "outbox_full")
            logger.warning(
                "Evicting channel %s from %s (%s); closing with %d",
                channel.uuid,
                sorted(channel.groups),
                reason,
                code,
                extra={"connection_id": channel.uuid, "close_code": code, "reason": "evicted"},
            )
        # Membership never changes inside the fan-out loop that noticed the failure.
        self._spawn(
            self.forget(
                channel, reason=channel.leave_reason, close_code=close_code, close_reason=reason
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._loop is not None
        task: asyncio.Task[Any] = self._loop.create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def local_members(self, group: str) -> tuple[Channel, ...]:
        """This process's members of ``group``."""
        return tuple(self.groups.get(group, {}).values())

    # ------------------------------------------------------------------ sending

    async def group_send(
        self,
        group: str,
        payload: Any,
        *,
        save_history: bool = False,
        seq_field: str | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Encode once, save if asked, publish to other processes, deliver to local members.

        ``delivered`` is True when the group has members here or in another process.
        Saved messages reach members in seq order (see :mod:`nexios.runtime.feeds`).
        """
        check_group_name(group)
        kind, data = encode_payload(payload)
        if seq_field is not None:
            _check_seq_field(payload, kind, seq_field, save_history)
        await self.ensure_started()
        metrics = self.metrics
        try:
            if save_history:
                started = time.perf_counter() if metrics is not None else 0.0
                saved = await self.layer.publish_saved(
                    group,
                    kind,
                    data,
                    history=self.history,
                    seq_field=seq_field,
                    idempotency_key=idempotency_key,
                )
                if metrics is not None and not saved.duplicate:
                    metrics.history_appended(time.perf_counter() - started)
                    metrics.broadcast_published()
                return self._delivered_saved(group, saved)
            message = WireMessage(kind, data)
            if idempotency_key is not None:
                once = await self.layer.publish_once(
                    group, message, idempotency_key=idempotency_key
                )
                if once.duplicate:
                    return SendResult(True, duplicate=True)
                elsewhere = once.receivers
            else:
                elsewhere = await self.layer.publish(group, message)
        except ChannelError:
            if metrics is not None:
                metrics.publish_failed()
            raise
        if metrics is not None:
            metrics.broadcast_published()
        local = self._pass_on_unsaved(group, FrameSet(kind, data, group=group))
        return SendResult(local or elsewhere > 0)

    def _delivered_saved(self, group: str, saved: PublishResult) -> SendResult:
        entry = saved.entry
        assert entry is not None
        if saved.duplicate:
            return SendResult(True, entry.seq, entry.epoch, duplicate=True)
        feed = self.feeds.get(group)
        if feed is not None:
            self._offer(feed, _frames_of(entry, group))
        local = bool(self.groups.get(group)) or feed is not None
        return SendResult(local or saved.receivers > 0, entry.seq, entry.epoch)

    def _pass_on_unsaved(self, group: str, frames: FrameSet) -> bool:
        feed = self.feeds.get(group)
        if feed is None:
            return False
        feed.pass_on(frames)
        return True

    def fan_out(self, group: str, frames: FrameSet) -> int:
        """Queue a message for this process's members of ``group``; return how many."""
        members = self.groups.get(group)
        if not members:
            return 0
        queued = 0
        # Members of a group mostly share one framing: look its frame up once per run.
        key: str | None = None
        frame: Frame | None = None
        # Safe to iterate live: a member that fails here leaves later (a spawned task).
        for channel in members.values():
            sender = channel.sender
            if sender is None:
                continue
            if channel.frame_key is not key:
                key = channel.frame_key
                frame = frames.get(key, channel.framer)
            if sender.put(frame):  # type: ignore[arg-type]  # set with key, above
                queued += 1
        metrics = self.metrics
        if metrics is not None and queued:
            metrics.delivered(queued, len(frames.data))
            if metrics.sampled() and sender is not None and not sender.closed:
                metrics.time_until(sender.drain())
        return queued

    def _on_remote_message(self, group: str, message: WireMessage) -> None:
        feed = self.feeds.get(group)
        if feed is None:
            return
        frames = FrameSet(
            message.kind,
            message.delivered_data(),
            group=group,
            seq=message.seq,
            epoch=message.epoch,
        )
        if message.seq:
            self._offer(feed, frames)
        else:
            feed.pass_on(frames)

    def _offer(self, feed: GroupFeed, frames: FrameSet) -> None:
        jitter = self._jitter
        if jitter:
            assert self._loop is not None
            self._loop.call_later(random.uniform(0, jitter), feed.offer, frames)
        else:
            feed.offer(frames)

    def _on_link(self, up: bool) -> None:
        """The layer's link is back: fill what was missed while it was down (until it
        goes down again)."""
        self._stop_catching_up()
        if up and self.feeds and not self._stopping:
            assert self._loop is not None
            self._catching_up = self._loop.create_task(
                self._catch_up(list(self.feeds)), name="nexios-catch-up"
            )

    def _stop_catching_up(self) -> None:
        task, self._catching_up = self._catching_up, None
        if task is not None:
            task.cancel()

    async def _catch_up(self, groups: list[str]) -> None:
        """Each group's position in history, tried again (with backoff) until read."""
        delay, most = _CATCH_UP_RETRY
        while True:
            failed: list[tuple[str, ChannelError]] = []
            for group in groups:
                error = await self._catch_up_group(group)
                if error is not None:
                    failed.append((group, error))
            if not failed:
                return
            group, error = failed[0]
            logger.warning(
                "Catching up %d group(s) after the link came back failed, %r first: %s; "
                "trying again in %.1f s",
                len(failed),
                group,
                error,
                delay,
                extra={"group": group},
            )
            groups = [group for group, _ in failed]
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)

    async def _catch_up_group(self, group: str) -> ChannelError | None:
        """Compare ``group``'s position in history with its feed (the error, if unread)."""
        feed = self.feeds.get(group)
        if feed is None or not feed.ready:
            return None
        try:
            position = await self.history.read(group, limit=0)
        except ChannelError as error:
            return error
        if feed is not self.feeds.get(group):
            return None
        if position.epoch != feed.epoch:
            if position.epoch:
                feed.offer_epoch(position.epoch, position.last_seq)
            else:
                feed.lost()
        else:
            feed.catch_up(position.last_seq)
        return None

    async def _read_for_feed(self, group: str, since: int, limit: int, epoch: str) -> HistoryPage:
        return await self.history.read(group, since=since, limit=limit, epoch=epoch)

    def _on_resync(self, group: str, notice: Resync) -> None:
        feed = self.feeds.get(group)
        if feed is None:
            return
        notice_json = encoding.dumps(notice.to_dict(group))
        feed.pass_on(FrameSet("json", notice_json, group=group, notice="resync"))
        members = len(self.groups.get(group, ()))
        if self.events is not None:
            self._spawn(
                self.events.emit(
                    "channel.resync",
                    {
                        "group": group,
                        "reason": notice.reason,
                        "epoch": notice.epoch,
                        "last_seq": notice.last_seq,
                        "members": members,
                    },
                )
            )

    async def send_to(self, channel_id: str, payload: Any) -> bool:
        """Queue ``payload`` for one local channel. False when it is not here."""
        channel = self.channels.get(channel_id)
        if channel is None or channel.sender is None:
            return False
        kind, data = encode_payload(payload)
        return channel.sender.put(FrameSet(kind, data).get(channel.frame_key, channel.framer))

    # ------------------------------------------------------------------ history, presence

    async def read_history(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> HistoryPage:
        await self.ensure_started()
        if since is not None and since > MAX_SEQ:
            since = MAX_SEQ  # ahead of any history: complete=False
        return await self.history.read(group, since=since, limit=limit, epoch=epoch)

    async def presence(self, group: str) -> list[PresenceMember]:
        """Members of ``group`` in every process, oldest join first."""
        check_group_name(group)
        await self.ensure_started()
        records = await self.layer.presence_list(group)
        members = [member_from_record(record) for record in records]
        members.sort(key=lambda member: (member.joined, member.channel_id))
        return members

    def health(self) -> LayerHealth | None:
        """The channel layer's health, or None before the runtime started."""
        return self._layer.health() if self._layer is not None else None

    async def check_ready(self, within: float = 2.0) -> Readiness:
        """Ask the channel layer and the history store for an answer, each within
        ``within`` seconds (a read each, nothing written): a problem, in words, for each
        one that did not answer. Starts the runtime if it never started (a server
        without lifespan); a stopped one (shutdown) is not ready."""
        if not self.started and self._stopping:
            stopped = "the channels runtime has stopped (the app is shutting down)"
            return Readiness(stopped, stopped)
        try:
            async with asyncio.timeout(within):
                await self.ensure_started()
        except (TimeoutError, ChannelError, ConfigurationError) as error:
            reason = str(error) or f"no answer within {within:g} s"
            problem = f"the channels runtime could not start: {reason}"
            return Readiness(problem, problem)
        layer, history = await asyncio.gather(
            _problem_of(self._probe_layer(), within), _problem_of(self._probe_history(), within)
        )
        return Readiness(layer, history)

    async def _probe_layer(self) -> None:
        health = self.layer.health()
        if not health.connected:
            raise ChannelError(
                f"the link to {health.url} is down ({health.last_error or 'no reason'})"
            )
        await self.layer.presence_list(PROCESS_DIRECTORY)

    async def _probe_history(self) -> None:
        await self.history.read(PROCESS_DIRECTORY, limit=0)

    async def announce(self, info: bytes, ttl: float) -> None:
        """Put (or refresh) this process's entry in the process directory for ``ttl``
        seconds; :meth:`processes` reads every process's entry (the dashboard's view)."""
        await self.ensure_started()
        await self.layer.presence_add(PROCESS_DIRECTORY, self.process_id, info, ttl)

    async def withdraw(self) -> None:
        """Remove this process's directory entry (before the runtime stops)."""
        if self.started:
            await self.layer.presence_remove(PROCESS_DIRECTORY, self.process_id)

    async def processes(self) -> dict[str, bytes]:
        """Every live process's last :meth:`announce`, by :attr:`process_id`."""
        await self.ensure_started()
        records = await self.layer.presence_list(PROCESS_DIRECTORY)
        return {record.channel_id: record.info for record in records}

    def stats(self) -> RuntimeStats:
        kinds: dict[str, int] = {}
        depth = size = dropped = 0
        for channel in self.channels.values():
            sender = channel.sender
            if sender is None:
                continue
            kinds[sender.kind] = kinds.get(sender.kind, 0) + 1
            depth += sender.depth
            size += sender.queued_bytes
            dropped += sender.dropped
        return RuntimeStats(
            started=self.started,
            groups=len(self.groups),
            channels=len(self.channels),
            memberships=sum(len(members) for members in self.groups.values()),
            evictions=self.evictions,
            senders=kinds,
            queued_messages=depth,
            queued_bytes=size,
            dropped=dropped,
        )

    # ------------------------------------------------------------------ events

    async def _emit(
        self, name: str, group: str, channel_id: str, metadata: Any, reason: str
    ) -> None:
        if self.events is not None:
            await self.events.emit(
                name,
                {"group": group, "channel_id": channel_id, "metadata": metadata, "reason": reason},
            )

    # ------------------------------------------------------------------ maintenance

    async def _maintain(self) -> None:
        assert self._loop is not None and self._stop_requested is not None
        loop, stop = self._loop, self._stop_requested
        heartbeat = max(0.05, self.settings.presence_ttl / 3)
        next_expiry = next_reap = last_beat = loop.time()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DEADLINE_CHECK):
                    await stop.wait()
            if stop.is_set():
                return
            now = loop.time()
            try:
                self._check_senders(now)
                if now >= next_expiry:
                    next_expiry = now + _EXPIRY_CHECK
                    await self._close_expired()
                # A slice of the presence entries every tick, as much of them as the
                # time since the last tick is of a heartbeat: each once per heartbeat.
                share, last_beat = (now - last_beat) / heartbeat, now
                await self._heartbeat(share)
                if now >= next_reap and not stop.is_set():
                    next_reap = now + heartbeat
                    await self._reap()
            except Exception:
                logger.exception("Channel maintenance failed; retrying")

    def _check_senders(self, now: float) -> None:
        assert self._scheduler is not None
        busy = self._scheduler.busy
        for sender in list(busy):
            if sender.closed:
                busy.discard(sender)
            elif sender.overdue(now):
                sender.missed_deadline()
            elif sender.idle:
                busy.discard(sender)

    async def _close_expired(self) -> None:
        for channel in [c for c in self.channels.values() if c.expires is not None]:
            if channel.is_expired():
                logger.info(
                    "Channel %s expired after %ss idle",
                    channel.uuid,
                    channel.expires,
                    extra={"connection_id": channel.uuid, "close_code": 1000, "reason": "expired"},
                )
                await self.forget(
                    channel, reason="expired", close_code=1000, close_reason="channel expired"
                )

    async def _heartbeat(self, share: float) -> None:
        """Keep ``share`` of this process's presence entries alive (those refreshed
        longest ago), adding back any that vanished: the broker lost its data, or another
        process reaped them while this one stalled."""
        entries = self._beats.next_slice(self._presence_info, share)
        if not entries:
            return
        try:
            restored = await self.layer.presence_heartbeat(entries, self.settings.presence_ttl)
        except ChannelError as error:
            logger.warning("Presence heartbeat failed: %s", error)
            return
        for record in restored:
            member = member_from_record(record)
            logger.info("Presence of %s in %r restored", member.channel_id, member.group)
            await self._emit(
                "channel.join", member.group, member.channel_id, member.metadata, "restored"
            )

    async def _reap(self) -> None:
        """Remove the presence entries of processes that died (their time ran out)."""
        try:
            reaped = await self.layer.presence_reap()
        except ChannelError as error:
            logger.warning("Presence reap failed: %s", error)
            return
        for record in reaped:
            if record.group == PROCESS_DIRECTORY:
                continue  # a process that died: not a member leaving a group
            member = member_from_record(record)
            await self._emit(
                "channel.leave", member.group, member.channel_id, member.metadata, "expired"
            )


def _frames_of(entry: HistoryEntry, group: str) -> FrameSet:
    """A saved entry as members receive it (its data already carries any seq field)."""
    return FrameSet(entry.kind, entry.data, group=group, seq=entry.seq, epoch=entry.epoch)


def _fits(page: HistoryPage, outbox: OutboxLimits) -> bool:
    """Whether a replay fits the member's outbox: one that does not would overflow it at
    once (evicted at every rejoin, or messages dropped from a "complete" recovery)."""
    return len(page) < outbox.max_messages and sum(len(e.data) for e in page) < outbox.max_bytes


def _check_seq_field(payload: Any, kind: str, seq_field: str, save_history: bool) -> None:
    if not save_history:
        raise ConfigurationError(
            "seq_field needs save_history=True: the sequence number comes from history."
        )
    if not isinstance(seq_field, str) or not seq_field:
        raise ConfigurationError(f"seq_field must be a non-empty str, got {seq_field!r}.")
    if kind != "json" or not isinstance(payload, dict):
        raise ConfigurationError(
            f"seq_field={seq_field!r} works with dict payloads only, got {type(payload).__name__}."
        )
    if seq_field in payload:
        raise ConfigurationError(
            f"The payload already has a {seq_field!r} key; choose another seq_field."
        )


async def _problem_of(probe: Awaitable[None], within: float) -> str | None:
    """None when ``probe`` completes within ``within`` seconds, else what went wrong."""
    try:
        async with asyncio.timeout(within):
            await probe
    except TimeoutError:
        return f"no answer within {within:g} s"
    except ChannelError as error:
        return str(error)
    return None


async def _bounded(step: Awaitable[Any], what: str) -> None:
    """Run a shutdown step for at most :data:`_STOP_BOUND` seconds; log, never raise."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=_STOP_BOUND)
    if not done:
        task.cancel()
        logger.warning("Channels shutdown: %s took over %gs; abandoned", what, _STOP_BOUND)
        return
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Channels shutdown: %s failed: %s", what, task.exception())
