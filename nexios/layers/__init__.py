"""Channel layers: the URL scheme picks one, imported only when it is used.

``memory://`` (default) keeps everything in this process; ``redis://host:port/db``
shares groups, broadcasts, history and presence across processes and machines through
one Redis server, ``redis+cluster://host:port[,host:port...]`` through a Redis Cluster
(Redis 7+, sharded pub/sub).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from nexios.exceptions import ConfigurationError
from nexios.history.base import HistoryLimits
from nexios.layers.base import ChannelLayer, LayerHealth, PresenceRecord, WireMessage

__all__ = [
    "ChannelLayer",
    "LayerHealth",
    "PresenceRecord",
    "WireMessage",
    "check_layer_url",
    "layer_from_url",
]

_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def check_layer_url(url: str) -> str:
    """``url`` if its scheme names a layer; a ConfigurationError saying which do otherwise."""
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Unknown channels URL {url!r}: use 'memory://' (one process), "
            "'redis://host:6379/0' (many processes, one Redis) or "
            "'redis+cluster://host:7000,host2:7000' (a Redis Cluster), e.g. "
            "NEXIOS_CHANNELS_URL=redis://127.0.0.1:6379/0"
        )
    return url


def layer_from_url(url: str, *, history_limits: HistoryLimits | None = None) -> ChannelLayer:
    """Build the layer for ``url``: ``memory://``, ``redis://`` / ``rediss://`` /
    ``unix://``, or ``redis+cluster://`` / ``rediss+cluster://``."""
    scheme = urlsplit(check_layer_url(url)).scheme
    if scheme == "memory":
        from nexios.layers.memory import MemoryLayer

        return MemoryLayer(url, history_limits=history_limits)
    if scheme.endswith("+cluster"):
        from nexios.layers.redis_cluster import RedisClusterLayer

        return RedisClusterLayer(url, history_limits=history_limits)
    from nexios.layers.redis import RedisLayer

    return RedisLayer(url, history_limits=history_limits)
