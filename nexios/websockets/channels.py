"""Channels and groups: ``Channel`` wraps a WebSocket; ``ChannelBox`` manages groups.

>>> channel = Channel(websocket=ws, payload_type="json", expires=1800, metadata={"name": "ada"})
>>> await ChannelBox.add_channel_to_group(channel, "room:1")
>>> await ChannelBox.group_send("room:1", {"text": "hi"}, save_history=True)
>>> history = await ChannelBox.show_history("room:1")      # entries oldest first
>>> await ChannelBox.presence("room:1")                    # members in every process

``ChannelBox``'s methods act on the channels runtime of the app serving the current
connection, request or lifespan (:func:`nexios.runtime.current_runtime`): each app has
its own groups, members, events and group policy. Where groups live is one setting —
``memory://`` (default, one process) or ``redis://host:port/db`` (every process and
machine on that Redis) — given to ``NexiosApp(channels_url=...)``, read from
``NEXIOS_CHANNELS_URL``, or set with :meth:`ChannelBox.configure`. Application code does
not change.

``group_send`` never waits for members to read: the payload is encoded once and queued
in each member's bounded sender (see :mod:`nexios.runtime.senders` for the overflow
policy: a member too slow for its bounds is closed with 1013 and removed). A channel
whose socket ends, that expires, or that is evicted leaves all its groups by itself.
"""

from __future__ import annotations

import enum
from typing import Any

from nexios.exceptions import ConfigurationError
from nexios.history.base import HistoryEntry, HistoryLimits, HistoryPage
from nexios.layers.base import LayerHealth
from nexios.runtime import (
    Channel,
    ChannelsRuntime,
    GroupPolicy,
    JoinResult,
    OutboxLimits,
    OverflowPolicy,
    PayloadTypeEnum,
    PresenceMember,
    RuntimeStats,
    SendResult,
    SettingsOverrides,
    check_group_name,
    current_runtime,
    peek_runtime,
)

__all__ = [
    "Channel",
    "ChannelAddStatusEnum",
    "ChannelBox",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "HistoryEntry",
    "HistoryPage",
    "JoinOutcome",
    "OutboxLimits",
    "OverflowPolicy",
    "PayloadTypeEnum",
    "PresenceMember",
    "SendOutcome",
]


class ChannelAddStatusEnum(enum.Enum):
    CHANNEL_ADDED = "CHANNEL_ADDED"
    CHANNEL_EXIST = "CHANNEL_EXIST"


class ChannelRemoveStatusEnum(enum.Enum):
    CHANNEL_REMOVED = "CHANNEL_REMOVED"
    CHANNEL_DOES_NOT_EXIST = "CHANNEL_DOES_NOT_EXIST"
    GROUP_REMOVED = "GROUP_REMOVED"
    GROUP_DOES_NOT_EXIST = "GROUP_DOES_NOT_EXIST"


class GroupSendStatusEnum(enum.Enum):
    GROUP_SEND = "GROUP_SEND"
    NO_SUCH_GROUP = "NO_SUCH_GROUP"


_EXISTS = ChannelAddStatusEnum.CHANNEL_EXIST
_NO_SUCH_GROUP = GroupSendStatusEnum.NO_SUCH_GROUP


class _StatusOutcome:
    """A result that also compares equal to its status enum member (and has its
    ``name`` and ``value``), so code written for the plain enum keeps working."""

    __slots__ = ("status",)

    status: enum.Enum

    def __eq__(self, other: object) -> bool:
        if isinstance(other, enum.Enum):
            return self.status is other
        if isinstance(other, type(self)):
            return all(getattr(self, name) == getattr(other, name) for name in self._fields())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.status)

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def value(self) -> Any:
        return self.status.value

    def _fields(self) -> tuple[str, ...]:
        return ("status",)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields())
        return f"{type(self).__name__}({shown})"


class JoinOutcome(_StatusOutcome):
    """What :meth:`ChannelBox.add_channel_to_group` did.

    Equal to ``ChannelAddStatusEnum.CHANNEL_ADDED`` or ``CHANNEL_EXIST``. With ``since``:
    ``recovered`` saved messages were replayed; ``complete`` is False when the member
    missed more than history keeps or than its outbox holds (or its epoch is not the
    group's) — nothing was replayed, reload from your database. ``epoch`` and
    ``last_seq``: where the member now stands (the next saved message it gets is
    ``last_seq + 1``).
    """

    __slots__ = ("complete", "epoch", "last_seq", "recovered")

    def __init__(self, result: JoinResult) -> None:
        self.status = (
            ChannelAddStatusEnum.CHANNEL_ADDED
            if result.added
            else ChannelAddStatusEnum.CHANNEL_EXIST
        )
        self.recovered = result.recovered
        self.complete = result.complete
        self.epoch = result.epoch
        self.last_seq = result.last_seq

    def _fields(self) -> tuple[str, ...]:
        return ("status", "recovered", "complete", "epoch", "last_seq")


class SendOutcome(_StatusOutcome):
    """What :meth:`ChannelBox.group_send` did.

    Equal to ``GroupSendStatusEnum.GROUP_SEND`` (the group has members somewhere) or
    ``NO_SUCH_GROUP``. A saved message's ``seq`` and ``epoch``; ``duplicate`` when the
    idempotency key was used within its window (nothing was saved or sent again; ``seq``
    and ``epoch`` are then the first send's).
    """

    __slots__ = ("duplicate", "epoch", "seq")

    def __init__(self, result: SendResult) -> None:
        self.status = (
            GroupSendStatusEnum.GROUP_SEND
            if result.delivered
            else GroupSendStatusEnum.NO_SUCH_GROUP
        )
        self.seq = result.seq
        self.epoch = result.epoch
        self.duplicate = result.duplicate

    def _fields(self) -> tuple[str, ...]:
        return ("status", "seq", "epoch", "duplicate")


class ChannelBox:
    """Groups of channels, across processes when the layer is shared.

    Every method is a class method acting on the current app's channels runtime.
    """

    # ------------------------------------------------------------------ configuration

    @classmethod
    def configure(
        cls,
        url: str | None = None,
        *,
        history_url: str | None = None,
        history_limits: HistoryLimits | None = None,
        outbox: OutboxLimits | None = None,
        presence_ttl: float | None = None,
    ) -> None:
        """Choose the channel layer (``memory://``, ``redis://...``), history and bounds.

        Inside an app (a startup hook, say) it configures that app's channels, which
        must not have started yet. Outside any app (at import time) it sets defaults for
        every app whose channels start later in this process; an app's own arguments
        (``NexiosApp(channels_url=...)``) still win. :meth:`reset_configuration` undoes it.
        """
        overrides = SettingsOverrides(
            channels_url=url,
            history_url=history_url,
            history_limits=history_limits,
            outbox=outbox,
            presence_ttl=presence_ttl,
        )
        runtime = peek_runtime()
        if runtime is not None:
            runtime.configure(overrides)
        else:
            ChannelsRuntime.set_process_defaults(overrides.over(ChannelsRuntime.process_defaults()))

    @classmethod
    def reset_configuration(cls) -> None:
        """Forget the process-wide defaults set by :meth:`configure` outside an app."""
        ChannelsRuntime.set_process_defaults(SettingsOverrides())

    @classmethod
    def set_group_policy(cls, policy: GroupPolicy | None) -> None:
        """``async def policy(channel, group) -> bool``: may this channel join this group?

        Sets the current app's policy (call it in a startup hook, or pass
        ``NexiosApp(group_policy=...)``).
        """
        current_runtime().group_policy = policy

    @classmethod
    async def shutdown(cls) -> None:
        """Close every local member (1001), leave presence, disconnect the layer."""
        await current_runtime().stop(close_code=1001)

    # ------------------------------------------------------------------ groups

    @classmethod
    async def add_channel_to_group(
        cls,
        channel: Channel,
        group_name: str = "default",
        since: int | None = None,
        epoch: str | None = None,
    ) -> JoinOutcome:
        """Add ``channel`` to ``group_name`` (created on first member).

        With ``since`` (the last seq the client saw) and the ``epoch`` it belongs to, the
        member first receives exactly the saved messages after ``since``, then live
        ones: in seq order, each once, no gap. See :class:`JoinOutcome` for what it
        returns (compare it with ``ChannelAddStatusEnum`` as before).
        """
        _check_channel(channel)
        return JoinOutcome(
            await current_runtime().join(channel, group_name, since=since, epoch=epoch)
        )

    @classmethod
    async def remove_channel_from_group(
        cls, channel: Channel, group_name: str
    ) -> ChannelRemoveStatusEnum:
        """Remove ``channel`` from ``group_name``; never raises for a non-member."""
        _check_channel(channel)
        runtime = current_runtime()
        if group_name not in runtime.groups:
            return ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        if not await runtime.leave(channel, group_name):
            return ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        if group_name not in runtime.groups:
            return ChannelRemoveStatusEnum.GROUP_REMOVED
        return ChannelRemoveStatusEnum.CHANNEL_REMOVED

    @classmethod
    async def group_send(
        cls,
        group_name: str = "default",
        payload: Any = None,
        save_history: bool = False,
        *,
        seq_field: str | None = None,
        idempotency_key: str | None = None,
    ) -> SendOutcome:
        """Send ``payload`` to every member of the group, in every process.

        Returns once the message is queued for local members and published to the
        others. ``save_history=True`` keeps it (with a ``seq``) and delivers it in seq
        order everywhere; ``seq_field="seq"`` also adds that number to the dict members
        receive, so clients can recover. ``idempotency_key``: a retry with the same key
        within the window (2 minutes) saves and delivers nothing twice — retry freely
        after a ``BackendUnavailableError``. See :class:`SendOutcome`.
        """
        if payload is None:
            raise ConfigurationError("group_send needs a payload: group_send(group, payload).")
        return SendOutcome(
            await current_runtime().group_send(
                group_name,
                payload,
                save_history=save_history,
                seq_field=seq_field,
                idempotency_key=idempotency_key,
            )
        )

    @classmethod
    async def send_to(cls, channel_id: str, payload: Any) -> bool:
        """Queue ``payload`` for one channel of this process; False when it is unknown."""
        return await current_runtime().send_to(str(channel_id), payload)

    @classmethod
    async def show_groups(cls) -> dict[str, dict[str, Channel]]:
        """This process's groups and their local members (a copy)."""
        runtime = current_runtime()
        return {group: dict(members) for group, members in runtime.groups.items()}

    @classmethod
    async def flush_groups(cls) -> None:
        """Remove every local channel from every group (sockets stay open)."""
        runtime = current_runtime()
        for channel in list(runtime.channels.values()):
            await runtime.forget(channel, reason="flushed")

    @classmethod
    async def close_all_connections(cls, code: int = 1001, reason: str = "") -> None:
        """Close every local member's socket and empty the groups."""
        runtime = current_runtime()
        for channel in list(runtime.channels.values()):
            await runtime.forget(channel, reason="closed", close_code=code, close_reason=reason)

    # ------------------------------------------------------------------ history

    @classmethod
    async def show_history(
        cls, group_name: str = "", since: int | None = None, limit: int | None = None
    ) -> HistoryPage | dict[str, HistoryPage]:
        """The group's saved entries, oldest first (``since``: only newer than that seq).

        Without a group name: every group's history, as a dict.
        """
        runtime = current_runtime()
        if not group_name:
            await runtime.ensure_started()
            return {
                group: await runtime.read_history(group, since=since, limit=limit)
                for group in await runtime.history.groups()
            }
        return await runtime.read_history(group_name, since=since, limit=limit)

    @classmethod
    async def recover(
        cls, group_name: str, since: int, limit: int | None = None, epoch: str | None = None
    ) -> HistoryPage:
        """What a client that last saw ``since`` (of ``epoch``) missed. Check
        ``page.complete``: False means more was missed than history keeps, or the epoch
        changed (history was lost) — reload from your database.
        """
        check_group_name(group_name)
        return await current_runtime().read_history(
            group_name, since=since, limit=limit, epoch=epoch
        )

    @classmethod
    async def flush_history(cls, group_name: str | None = None) -> None:
        """Drop saved entries of one group or all (sequence numbers are not reused)."""
        runtime = current_runtime()
        await runtime.ensure_started()
        await runtime.history.clear(group_name)

    # ------------------------------------------------------------------ presence & health

    @classmethod
    async def presence(cls, group_name: str) -> list[PresenceMember]:
        """Members of ``group_name`` in every process, with channel id and metadata."""
        return await current_runtime().presence(group_name)

    @classmethod
    def health(cls) -> LayerHealth | None:
        """The channel layer's health, or None before the app's channels started."""
        runtime = peek_runtime()
        return runtime.health() if runtime is not None else None

    @classmethod
    def stats(cls) -> RuntimeStats:
        """Counts of this process's groups, members, senders and evictions."""
        return current_runtime().stats()


def _check_channel(channel: Any) -> None:
    if not isinstance(channel, Channel):
        raise ConfigurationError(
            f"Expected a Channel, got {type(channel).__name__}: wrap the socket first, "
            "Channel(websocket=ws, payload_type='json')."
        )
