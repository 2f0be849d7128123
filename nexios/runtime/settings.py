"""Channel settings: where groups and history live, and the bounds that apply.

One :class:`ChannelSettings` per app, resolved once when its channels runtime starts,
from (first match wins):

1. arguments given in code — ``NexiosApp(channels_url=..., history_url=...,
   outbox=..., history_limits=..., presence_ttl=...)``, or
   ``ChannelBox.configure(...)`` (see :class:`SettingsOverrides`);
2. the environment:

   ===============================  ========================================  ==========
   variable                         meaning                                   default
   ===============================  ========================================  ==========
   ``NEXIOS_CHANNELS_URL``          ``memory://``, ``redis://host:port/db``   memory://
                                    or ``redis+cluster://h:p[,h:p...]``
   ``NEXIOS_HISTORY_URL``           ``memory://``, ``sqlite:///file.db``,     the layer's
                                    ``redis://...``, ``redis+cluster://...``
   ``NEXIOS_HISTORY_MAX_ENTRIES``   entries kept per group                    1000
   ``NEXIOS_HISTORY_MAX_AGE``       seconds kept, or ``none``                 7 days
   ``NEXIOS_OUTBOX_MAX_MESSAGES``   messages queued per member                1024
   ``NEXIOS_OUTBOX_MAX_BYTES``      bytes queued per member                   8 MiB
   ``NEXIOS_SEND_TIMEOUT``          seconds a member may make no progress     5
   ``NEXIOS_OUTBOX_POLICY``         ``evict``, ``drop_oldest``, ``drop_newest``  evict
   ``NEXIOS_PRESENCE_TTL``          seconds a presence entry lives unrefreshed  15
   ``NEXIOS_TEST_DELIVERY_JITTER``  tests only: delay each saved message by a  0
                                    random 0..N seconds before ordering it
   ===============================  ========================================  ==========

3. the defaults.

A bad value raises :class:`~nexios.exceptions.ConfigurationError` naming the variable,
at the app's startup (never at import, never at the first join).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from nexios._env import env_choice, env_number, env_text, is_off
from nexios.exceptions import ConfigurationError
from nexios.history import history_from_url
from nexios.history.base import HistoryLimits, HistoryStore
from nexios.layers import check_layer_url, layer_from_url
from nexios.layers.base import ChannelLayer
from nexios.runtime.senders import OutboxLimits, OverflowPolicy

__all__ = ["ChannelSettings", "SettingsOverrides"]

DEFAULT_PRESENCE_TTL = 15.0


@dataclass(frozen=True, slots=True)
class SettingsOverrides:
    """Settings given in code; ``None`` leaves a field to the environment or default."""

    channels_url: str | None = None
    history_url: str | None = None
    history_limits: HistoryLimits | None = None
    outbox: OutboxLimits | None = None
    presence_ttl: float | None = None

    def __post_init__(self) -> None:
        for name in ("channels_url", "history_url"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a URL string, got {value!r}.")
        if self.channels_url is not None:
            check_layer_url(self.channels_url)
        if self.history_limits is not None and not isinstance(self.history_limits, HistoryLimits):
            raise ConfigurationError(
                f"history_limits must be a HistoryLimits, got {self.history_limits!r}."
            )
        if self.outbox is not None and not isinstance(self.outbox, OutboxLimits):
            raise ConfigurationError(f"outbox must be an OutboxLimits, got {self.outbox!r}.")
        ttl = self.presence_ttl
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise ConfigurationError(f"presence_ttl must be positive seconds, got {ttl!r}.")

    def over(self, base: SettingsOverrides) -> SettingsOverrides:
        """These overrides, with ``base``'s where these leave a field unset."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{name: value for name, value in given.items() if value is not None})


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Resolved settings of one app's channels runtime (see the module docstring)."""

    channels_url: str = "memory://"
    history_url: str | None = None
    history_limits: HistoryLimits = field(default_factory=HistoryLimits)
    outbox: OutboxLimits = field(default_factory=OutboxLimits)
    presence_ttl: float = DEFAULT_PRESENCE_TTL
    gc_freeze: bool = False
    """Freeze what survives full garbage collections (``NEXIOS_GC_FREEZE=1``, opt-in):
    see :mod:`nexios.runtime.collector`."""
    test_delivery_jitter: float = 0.0
    """Tests only: saved messages reach their group's feed after a random delay of up to
    this many seconds, to prove that delivery order does not depend on arrival order."""

    @classmethod
    def resolve(
        cls, overrides: SettingsOverrides, environ: Mapping[str, str] | None = None
    ) -> ChannelSettings:
        """Code overrides first, then ``environ`` (``os.environ``), then defaults."""
        env = os.environ if environ is None else environ
        return cls(
            channels_url=overrides.channels_url
            or env_text(env, "NEXIOS_CHANNELS_URL")
            or "memory://",
            history_url=overrides.history_url or env_text(env, "NEXIOS_HISTORY_URL"),
            history_limits=overrides.history_limits or _history_limits(env),
            outbox=overrides.outbox or _outbox_limits(env),
            presence_ttl=overrides.presence_ttl
            or _number(env, "NEXIOS_PRESENCE_TTL", "seconds")
            or DEFAULT_PRESENCE_TTL,
            gc_freeze=_flag(env, "NEXIOS_GC_FREEZE"),
            test_delivery_jitter=env_number(
                env, "NEXIOS_TEST_DELIVERY_JITTER", minimum=0, exclusive=False, what="seconds"
            )
            or 0.0,
        )

    def build_layer(self) -> ChannelLayer:
        """The channel layer for :attr:`channels_url` (not connected yet)."""
        return layer_from_url(self.channels_url, history_limits=self.history_limits)

    def build_history(self, layer: ChannelLayer) -> HistoryStore:
        """The history store: :attr:`history_url`'s, or the layer's own."""
        if self.history_url:
            return history_from_url(self.history_url, limits=self.history_limits)
        return layer.default_history()


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env_text(env, name)
    if text is None or is_off(text):
        return False
    if text.lower() in {"1", "on", "yes", "true"}:
        return True
    raise ConfigurationError(f"{name} must be 1 or 0 (on or off); got {text!r}.")


def _number(env: Mapping[str, str], name: str, what: str, *, integer: bool = False) -> Any:
    return env_number(env, name, integer=integer, minimum=0, what=what)


def _history_limits(env: Mapping[str, str]) -> HistoryLimits:
    base = HistoryLimits()
    entries = _number(env, "NEXIOS_HISTORY_MAX_ENTRIES", "entries kept per group", integer=True)
    age_text = env_text(env, "NEXIOS_HISTORY_MAX_AGE")
    max_age = base.max_age
    if age_text is not None:
        max_age = (
            None
            if is_off(age_text)
            else _number(env, "NEXIOS_HISTORY_MAX_AGE", "seconds kept, or 'none'")
        )
    return replace(base, max_entries=entries or base.max_entries, max_age=max_age)


def _outbox_limits(env: Mapping[str, str]) -> OutboxLimits:
    base = OutboxLimits()
    return OutboxLimits(
        max_messages=_number(env, "NEXIOS_OUTBOX_MAX_MESSAGES", "messages", integer=True)
        or base.max_messages,
        max_bytes=_number(env, "NEXIOS_OUTBOX_MAX_BYTES", "bytes", integer=True) or base.max_bytes,
        send_timeout=_number(env, "NEXIOS_SEND_TIMEOUT", "seconds") or base.send_timeout,
        policy=env_choice(env, "NEXIOS_OUTBOX_POLICY", OverflowPolicy) or base.policy,
    )
