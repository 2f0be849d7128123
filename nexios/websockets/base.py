"""The WebSocket connection (``nexios.websockets.base``, the tutorial's import path).

Defined in :mod:`nexios.connection`, which sits below the channels runtime in the
package's layers; this module re-exports it.
"""

from nexios.connection import CLOSE_TIMEOUT, OutgoingQueue, WebSocket, WebSocketState
from nexios.exceptions import WebSocketDisconnect

__all__ = ["CLOSE_TIMEOUT", "OutgoingQueue", "WebSocket", "WebSocketDisconnect", "WebSocketState"]
