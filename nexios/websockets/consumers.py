"""Class-based WebSocket endpoints.

>>> class Chat(WebSocketConsumer):
...     encoding = "json"
...
...     async def on_connect(self, ws):
...         await ws.accept()
...         await self.join_group(ws.path_params["room"])
...
...     async def on_receive(self, ws, data):
...         await self.broadcast(data, ws.path_params["room"], save_history=True)
...
>>> app.add_ws_route(Chat.as_route("/chat/{room}"))

``encoding`` decides what ``on_receive`` gets: ``"json"`` (parsed; invalid JSON closes
with **1007**), ``"text"`` (a binary frame closes with **1003**), ``"bytes"`` (a text
frame closes with **1003**), or ``None`` (text or bytes, as sent). ``on_disconnect``
receives the real close code: the client's, the one the consumer closed with, or 1011
when a hook raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

from nexios import encoding as json_encoding
from nexios.connection import WebSocket, WebSocketState
from nexios.exceptions import ConfigurationError, WebSocketDisconnect
from nexios.history.base import HistoryPage
from nexios.routing import WebSocketEndpoint, WebsocketRoutes, WSMiddleware
from nexios.websockets.channels import (
    Channel,
    ChannelBox,
    ChannelRemoveStatusEnum,
    JoinOutcome,
    PresenceMember,
    SendOutcome,
)

__all__ = ["GroupHandle", "WebSocketConsumer"]

_ENCODINGS = (None, "text", "bytes", "json")


class _BadFrame(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class GroupHandle:
    """One group seen from a consumer: ``await self.group("room").send(...)``."""

    __slots__ = ("_consumer", "name")

    def __init__(self, consumer: WebSocketConsumer, name: str) -> None:
        self._consumer = consumer
        self.name = name

    async def send(self, payload: Any, save_history: bool = False) -> SendOutcome:
        return await ChannelBox.group_send(self.name, payload, save_history)

    async def join(self) -> JoinOutcome:
        return await self._consumer.join_group(self.name)

    async def leave(self) -> ChannelRemoveStatusEnum:
        return await self._consumer.leave_group(self.name)

    async def presence(self) -> list[PresenceMember]:
        return await ChannelBox.presence(self.name)

    async def history(self, since: int | None = None, limit: int | None = None) -> HistoryPage:
        page = await ChannelBox.show_history(self.name, since=since, limit=limit)
        assert isinstance(page, HistoryPage)
        return page


class WebSocketConsumer(WebSocketEndpoint):
    """Subclass and override ``on_connect`` / ``on_receive`` / ``on_disconnect``."""

    encoding: ClassVar[str | None] = None
    channel_expires: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.encoding not in _ENCODINGS:
            raise ConfigurationError(
                f"{cls.__name__}.encoding must be one of None, 'text', 'bytes', 'json'; "
                f"got {cls.encoding!r}."
            )

    def __init__(self) -> None:
        self.websocket: WebSocket | None = None
        self.channel: Channel | None = None

    @classmethod
    def as_route(
        cls,
        path: str,
        middleware: Sequence[WSMiddleware] | None = None,
        **route_options: Any,
    ) -> WebsocketRoutes:
        """A route serving this consumer at ``path`` (path parameters allowed).

        ``route_options`` go to :class:`WebsocketRoutes` (``allowed_origins=``, ``auth=``).
        """
        return WebsocketRoutes(path, cls, middleware, **route_options)

    # ------------------------------------------------------------------ hooks

    async def on_connect(self, ws: WebSocket) -> None:
        """Called first. The default accepts the connection."""
        await ws.accept()

    async def on_receive(self, ws: WebSocket, data: Any) -> None:
        """Called for each message, decoded per ``encoding``."""

    async def on_disconnect(self, ws: WebSocket, close_code: int) -> None:
        """Called last, with the close code, after the channel left its groups."""

    # ------------------------------------------------------------------ groups

    def _channel(self) -> Channel:
        if self.channel is None:
            raise ConfigurationError(
                "This consumer has no channel yet: group methods work from on_connect on."
            )
        return self.channel

    async def join_group(self, group_name: str) -> JoinOutcome:
        return await ChannelBox.add_channel_to_group(self._channel(), group_name)

    async def leave_group(self, group_name: str) -> ChannelRemoveStatusEnum:
        return await ChannelBox.remove_channel_from_group(self._channel(), group_name)

    async def broadcast(
        self, payload: Any, group_name: str = "default", save_history: bool = False
    ) -> SendOutcome:
        return await ChannelBox.group_send(group_name, payload, save_history)

    async def send_to(self, channel_id: str, payload: Any) -> bool:
        return await ChannelBox.send_to(channel_id, payload)

    def group(self, name: str) -> GroupHandle:
        return GroupHandle(self, name)

    # ------------------------------------------------------------------ lifecycle

    async def dispatch(self, ws: WebSocket) -> None:
        """Run the consumer on ``ws`` (the router calls this)."""
        self.websocket = ws
        payload_type = self.encoding if self.encoding in ("text", "bytes") else "json"
        self.channel = Channel(ws, payload_type=payload_type, expires=self.channel_expires)
        close_code = 1000
        try:
            await self.on_connect(ws)
            while ws.connection_state is WebSocketState.CONNECTED:
                message = await ws.receive()
                await self.on_receive(ws, self._decode(message))
            close_code = ws.close_code or 1000
        except WebSocketDisconnect as disconnect:
            close_code = disconnect.code
        except _BadFrame as bad:
            close_code = bad.code
            with contextlib.suppress(WebSocketDisconnect):
                await ws.close(bad.code, bad.reason)
        except BaseException:
            close_code = 1011
            raise
        finally:
            if self.channel is not None:
                await self.channel.leave_groups("disconnected")
            await self.on_disconnect(ws, close_code)

    def _decode(self, message: dict[str, Any]) -> Any:
        text, data = message.get("text"), message.get("bytes")
        wanted = self.encoding
        if wanted == "text":
            if text is None:
                raise _BadFrame(1003, "expected text frames")
            return text
        if wanted == "bytes":
            if data is None:
                raise _BadFrame(1003, "expected binary frames")
            return data
        if wanted == "json":
            try:
                return json_encoding.loads(text if text is not None else data or b"")
            except json_encoding.JSONDecodeError:
                raise _BadFrame(1007, "invalid JSON") from None
        return text if text is not None else data
