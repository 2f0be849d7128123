"""Channel layers: the URL scheme picks one, imported only when it is used.

``memory://`` (default) keeps everything in this process; ``redis://host:port/db``
shares groups, broadcasts, history and presence across processes and machines.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from nexios.exceptions import ConfigurationError
from nexios.history.base import HistoryLimits
from nexios.layers.base import ChannelLayer, LayerHealth, PresenceRecord, WireMessage

__all__ = ["ChannelLayer", "LayerHealth", "PresenceRecord", "WireMessage", "layer_from_url"]


def layer_from_url(url: str, *, history_limits: HistoryLimits | None = None) -> ChannelLayer:
    """Build the layer for ``url``: ``memory://`` or ``redis://`` / ``rediss://``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from nexios.layers.memory import MemoryLayer

        return MemoryLayer(url, history_limits=history_limits)
    if scheme in ("redis", "rediss", "unix"):
        from nexios.layers.redis import RedisLayer

        return RedisLayer(url, history_limits=history_limits)
    raise ConfigurationError(
        f"Unknown channels URL {url!r}: use 'memory://' (one process) or "
        "'redis://host:6379/0' (many processes), e.g. NEXIOS_CHANNELS_URL=redis://127.0.0.1:6379/0"
    )
