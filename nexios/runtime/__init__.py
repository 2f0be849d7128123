"""The channels runtime: one per app. Groups, fan-out, senders, presence and upkeep.

:class:`ChannelsRuntime` is what ``ChannelBox`` drives; ``NexiosApp`` owns one
(``app.channels``). See :mod:`nexios.runtime.runtime` for how it works,
:mod:`nexios.runtime.senders` for each member's bounded outgoing path and
:mod:`nexios.runtime.settings` for the settings and their environment variables.
"""

from nexios.runtime.channel import Channel, PayloadTypeEnum
from nexios.runtime.presence import PresenceMember
from nexios.runtime.runtime import (
    MAX_GROUP_NAME_BYTES,
    MAX_REPLAY,
    ChannelsRuntime,
    GroupPolicy,
    JoinResult,
    RuntimeStats,
    SendResult,
    check_group_name,
    current_runtime,
    peek_runtime,
)
from nexios.runtime.senders import EVICTION_CLOSE_CODE, OutboxLimits, OverflowPolicy, Sender
from nexios.runtime.settings import ChannelSettings, SettingsOverrides

__all__ = [
    "EVICTION_CLOSE_CODE",
    "MAX_GROUP_NAME_BYTES",
    "MAX_REPLAY",
    "Channel",
    "ChannelSettings",
    "ChannelsRuntime",
    "GroupPolicy",
    "JoinResult",
    "OutboxLimits",
    "OverflowPolicy",
    "PayloadTypeEnum",
    "PresenceMember",
    "RuntimeStats",
    "SendResult",
    "Sender",
    "SettingsOverrides",
    "check_group_name",
    "current_runtime",
    "peek_runtime",
]
