"""History stores: where messages sent with ``save_history=True`` are kept.

The URL scheme picks the store (``NEXIOS_HISTORY_URL``); the Redis store is imported
only when asked for. Bounds come from :class:`HistoryLimits` or :func:`limits_from_env`.
"""

from __future__ import annotations

import math
import os

from nexios.exceptions import ConfigurationError
from nexios.history.base import (
    HistoryEntry,
    HistoryLimits,
    HistoryPage,
    HistoryStore,
    PayloadKind,
)
from nexios.history.memory import MemoryHistoryStore
from nexios.history.sqlite import SqliteHistoryStore

__all__ = [
    "HistoryEntry",
    "HistoryLimits",
    "HistoryPage",
    "HistoryStore",
    "MemoryHistoryStore",
    "PayloadKind",
    "SqliteHistoryStore",
    "history_from_url",
    "limits_from_env",
]

_SCHEMES = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, redis://, rediss://, "
    "redis+cluster://host:port[,host:port...], rediss+cluster://"
)


def history_from_url(url: str, *, limits: HistoryLimits | None = None) -> HistoryStore:
    """The store for ``url``: ``memory://``, ``sqlite:///path.db``, ``redis://...`` or
    ``redis+cluster://host:port[,host:port...]`` (a Redis Cluster).

    As in SQLAlchemy, ``sqlite:///data/h.db`` is the relative path ``data/h.db`` and
    ``sqlite:////var/lib/h.db`` the absolute path ``/var/lib/h.db``.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"history URL must be a str, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "memory":
        return MemoryHistoryStore(limits)
    elif scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path:
            raise ConfigurationError(
                f"history URL {url!r} has no file path: write sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db (an empty host, then the path)"
            )
        return SqliteHistoryStore(path, limits)
    elif scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from nexios.history.redis import RedisHistoryStore

        return RedisHistoryStore(url, limits=limits)
    raise ConfigurationError(
        f"unsupported history URL {url!r}; NEXIOS_HISTORY_URL must start with one of: {_SCHEMES}"
    )


def limits_from_env() -> HistoryLimits:
    """Bounds from ``NEXIOS_HISTORY_MAX_ENTRIES`` and ``NEXIOS_HISTORY_MAX_AGE``.

    ``NEXIOS_HISTORY_MAX_AGE`` is seconds, or ``none`` for no age bound. Unset (or empty)
    variables keep the :class:`HistoryLimits` defaults.
    """
    defaults = HistoryLimits()
    max_entries = defaults.max_entries
    max_age = defaults.max_age
    raw_entries = os.environ.get("NEXIOS_HISTORY_MAX_ENTRIES", "").strip()
    if raw_entries:
        try:
            max_entries = int(raw_entries)
        except ValueError:
            max_entries = 0
        if max_entries < 1:
            raise ConfigurationError(
                f"NEXIOS_HISTORY_MAX_ENTRIES must be a whole number of at least 1 "
                f"(entries kept per group), got {raw_entries!r}"
            )
    raw_age = os.environ.get("NEXIOS_HISTORY_MAX_AGE", "").strip()
    if raw_age.lower() == "none":
        max_age = None
    elif raw_age:
        try:
            max_age = float(raw_age)
        except ValueError:
            max_age = math.nan
        if not (math.isfinite(max_age) and max_age > 0):
            raise ConfigurationError(
                f"NEXIOS_HISTORY_MAX_AGE must be a positive number of seconds, or 'none' "
                f"for no age bound, got {raw_age!r}"
            )
    return HistoryLimits(max_entries=max_entries, max_age=max_age)
