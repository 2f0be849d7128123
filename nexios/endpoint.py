"""The client protocol's server side: one line mounts it (``docs/protocol.md``).

>>> app = NexiosApp()
>>> app.channels_endpoint("/connect")          # browsers: /_nexios/nexios.js

A client opens one WebSocket to the endpoint and subscribes to any number of groups over
it; ``ChannelBox.group_send`` from any handler, task or process reaches it like any other
member, and it works the same on the memory and Redis layers. Each protocol connection
is one :class:`~nexios.runtime.Channel` whose :class:`ProtocolFramer` turns a group's
messages into the protocol's ``message`` push — built once per message for every
protocol subscriber in the process.

Hooks (all optional; ``channel.websocket.user`` is the handshake's user):

- **Handshake**: the route's ``auth=`` / the app's ``ws_auth`` and ``allowed_origins``
  run before anything else (:mod:`nexios.security`).
- ``authenticate(ws, token) -> Identity | user | None``: checks the ``connect`` frame's
  token (and ``refresh``'s). None refuses (401); raise :class:`ProtocolError` (or
  :class:`~nexios.security.AuthError`) for another code (419: expired, 403: banned).
  An :class:`Identity` also carries the presence ``info`` and when the token
  ``expires_at``. Without it, the handshake's user is the identity.
- ``groups(name) -> bool``: which group names this endpoint serves (others: 404).
- ``can_subscribe``, ``can_publish``, ``can_see_presence``: ``async (channel, group) ->
  bool`` per group (refused: 403). The app's group policy also applies to every
  subscribe. ``can_publish`` defaults to ``can_subscribe``; ``can_publish=False``
  forbids client publishing. ``can_see_presence`` defaults to ``can_subscribe``.
- ``on_publish(channel, group, data) -> data``: validates or transforms what a client
  publishes; raise ``ProtocolError(code, message)`` to refuse it (400, 403, 413, 429...).
  Every hook may raise ``ProtocolError`` to refuse with its own code and message (the
  chat example's room check answers 404 with the naming rule).
- ``history``: whether client publishes to a group are saved (``True``, ``False`` or
  ``(group) -> bool``): saved ones get a ``seq`` and can be recovered.

Presence: a subscriber with ``presence: true`` gets the member list, then ``join`` /
``leave`` pushes. ``channel.join`` / ``channel.leave`` fire once per change in the
process where it happened; this module publishes each as a diff on a hidden companion
group (unsaved), which every presence watcher in every process is a hidden member of.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from weakref import WeakKeyDictionary

import orjson

from nexios._utils import maybe_await
from nexios.connection import WebSocket
from nexios.events import EventEmitter
from nexios.exceptions import (
    ChannelError,
    ConfigurationError,
    GroupAccessDenied,
    ProtocolError,
    WebSocketDisconnect,
)
from nexios.framing import Frame, Framer, FrameSet
from nexios.http.request import Request
from nexios.http.responses import Response
from nexios.protocol import (
    PING_PUSH,
    SUBPROTOCOL,
    Command,
    ConnectCommand,
    DisconnectCode,
    ErrorCode,
    HistoryCommand,
    PingCommand,
    PongCommand,
    PresenceCommand,
    ProtocolLimits,
    PublishCommand,
    RefreshCommand,
    SubscribeCommand,
    SubscribeOptions,
    UnsubscribeCommand,
    disconnect_push,
    error_push,
    error_reply,
    history_result,
    join_push,
    leave_push,
    member,
    message_push,
    parse_command,
    reply,
    resync_push,
    subscribe_result,
    unsubscribed_push,
)
from nexios.runtime import Channel, ChannelsRuntime, GroupPolicy
from nexios.security import AuthError

__all__ = [
    "CLIENT_PATH",
    "PRESENCE_PREFIX",
    "ChannelsEndpoint",
    "Identity",
    "ProtocolFramer",
    "PublishHook",
    "TokenAuth",
    "json_data",
    "presence_group",
]

logger = logging.getLogger("nexios.endpoint")

CLIENT_PATH = "/_nexios/nexios.js"
"""Where the app serves the browser client (``clients/js/nexios.js``) once an endpoint
is mounted: ``import { NexiosClient } from "/_nexios/nexios.js"``."""

PRESENCE_PREFIX = "\x1fpresence:"
"""Prefix of the hidden companion groups carrying presence diffs. The unit separator
(a control character) can never start a client's group name (those are printable)."""

_CLIENT_FILE = Path(__file__).parent / "static" / "nexios.js"
_LEAVE_REASONS = {"left", "disconnected", "expired", "evicted", "shutdown"}
# Leaves the connection itself caused or that end it anyway: no "unsubscribed" push.
_QUIET_LEAVES = {"disconnected", "expired", "evicted", "shutdown", "closed"}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a protocol connection is: what ``authenticate`` returns.

    ``user`` is yours (the handshake's ``ws.user`` by default); ``info`` is what other
    members see in presence (a JSON object); ``expires_at`` (Unix time) is when the
    token stops being valid: the client refreshes before, or is disconnected with 4001.
    """

    user: Any = None
    info: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None


TokenAuth = Callable[[WebSocket, str | None], Awaitable[Any]]
"""``async def authenticate(ws, token) -> Identity | user | None``."""

PublishHook = Callable[[Channel, str, Any], Awaitable[Any]]
"""``async def on_publish(channel, group, data) -> data`` (raise ProtocolError to refuse)."""

GroupFilter: TypeAlias = Callable[[str], object]


def presence_group(group: str) -> str:
    """The hidden group that carries ``group``'s presence diffs."""
    return PRESENCE_PREFIX + group


def json_data(kind: str, data: bytes) -> bytes:
    """An encoded payload as the JSON the protocol carries in ``data``.

    JSON stays as it is; text becomes a JSON string; bytes a base64 JSON string.
    """
    if kind == "json":
        return data
    if kind == "text":
        return orjson.dumps(data.decode())
    return orjson.dumps(base64.b64encode(data).decode())


class ProtocolFramer(Framer):
    """Frames a group's messages for protocol members: ``message`` and ``resync`` pushes.

    Called once per message for all protocol members of a process (they share the key).
    """

    key = "nexios.v1"

    def __call__(self, frames: FrameSet) -> Frame:
        group = frames.group
        if group.startswith(PRESENCE_PREFIX):
            return Frame(frames.data, is_text=True)  # a join/leave push, built by the relay
        if frames.notice == "resync":
            notice = orjson.loads(frames.data)
            reason = "epoch" if notice.get("reason") == "epoch_changed" else "gap"
            return Frame(
                resync_push(group, notice.get("epoch", ""), notice.get("last_seq", 0), reason),
                is_text=True,
            )
        data = json_data(frames.kind, frames.data)
        if frames.seq:
            return Frame(message_push(group, data, frames.seq, frames.epoch), is_text=True)
        return Frame(message_push(group, data), is_text=True)


FRAMER = ProtocolFramer()
_PING_SLICES = 10
"""Ticks one round of pings (a ping interval) is spread over."""

_PING = Frame(PING_PUSH, is_text=True)


class ChannelsEndpoint:
    """The protocol's WebSocket handler and its hooks (see the module docstring).

    Made by :meth:`NexiosApp.channels_endpoint <nexios.application.NexiosApp.channels_endpoint>`.
    """

    def __init__(
        self,
        runtime: ChannelsRuntime,
        *,
        authenticate: TokenAuth | None = None,
        groups: GroupFilter | None = None,
        can_subscribe: GroupPolicy | None = None,
        can_publish: GroupPolicy | bool | None = None,
        can_see_presence: GroupPolicy | None = None,
        on_publish: PublishHook | None = None,
        history: bool | Callable[[str], bool] = True,
        ping_interval: float = 25.0,
        connect_timeout: float = 10.0,
        max_subscriptions: int = 128,
        limits: ProtocolLimits | None = None,
    ) -> None:
        for name, hook in (
            ("authenticate", authenticate),
            ("can_subscribe", can_subscribe),
            ("can_see_presence", can_see_presence),
            ("on_publish", on_publish),
        ):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"channels_endpoint({name}=...) takes a callable.")
        if (
            not isinstance(can_publish, bool)
            and can_publish is not None
            and not callable(can_publish)
        ):
            raise ConfigurationError(
                "channels_endpoint(can_publish=...) takes an async (channel, group) -> bool, "
                "or False to forbid client publishing."
            )
        for name, value in (("ping_interval", ping_interval), ("connect_timeout", connect_timeout)):
            if not isinstance(value, int | float) or value < 0 or isinstance(value, bool):
                raise ConfigurationError(f"channels_endpoint({name}=...) takes seconds >= 0.")
        if not isinstance(max_subscriptions, int) or max_subscriptions < 1:
            raise ConfigurationError("channels_endpoint(max_subscriptions=...) takes an int >= 1.")
        self.runtime = runtime
        self.authenticate = authenticate
        self.groups = groups
        self.can_subscribe = can_subscribe
        self.can_publish: GroupPolicy | bool | None = (
            can_subscribe if can_publish is None else can_publish
        )
        self.can_see_presence = can_see_presence if can_see_presence else can_subscribe
        self.on_publish = on_publish
        self.history = history
        self.ping_interval = float(ping_interval)
        self.connect_timeout = float(connect_timeout)
        self.max_subscriptions = max_subscriptions
        self.limits = limits or ProtocolLimits()
        self.connections: dict[str, ProtocolConnection] = {}
        """This process's connected clients, by client id (their channel id)."""
        self._pinger: asyncio.Task[None] | None = None

    async def __call__(self, ws: WebSocket) -> None:
        """Serve one protocol connection (the route handler)."""
        await ProtocolConnection(self, ws).run()

    def saves(self, group: str) -> bool:
        history = self.history
        return history(group) if callable(history) else bool(history)

    # ------------------------------------------------------------------ pings

    def _joined(self, connection: ProtocolConnection) -> None:
        self.connections[connection.client_id] = connection
        if self.ping_interval > 0:
            pinger = self._pinger
            loop = asyncio.get_running_loop()
            if pinger is None or pinger.done() or pinger.get_loop() is not loop:
                self._pinger = loop.create_task(self._ping_all(), name="nexios-protocol-pings")

    def _left(self, connection: ProtocolConnection) -> None:
        if self.connections.get(connection.client_id) is connection:
            del self.connections[connection.client_id]

    async def _ping_all(self) -> None:
        """One task per endpoint pings every connection once per ``ping_interval``, a
        slice at a time (one sweep of all of them held the event loop for a time that
        grows with the connections); it ends with the last one."""
        round_: list[ProtocolConnection] = []
        index = 0
        while self.connections:
            await asyncio.sleep(self.ping_interval / _PING_SLICES)
            if index >= len(round_):
                round_, index = list(self.connections.values()), 0
            size = -(-len(round_) // _PING_SLICES)
            for connection in round_[index : index + size]:
                if self.connections.get(connection.client_id) is connection:
                    connection.push(_PING)
            index += size

    # ------------------------------------------------------------------ relays

    def member_left(self, channel_id: str, group: str, reason: str) -> None:
        """The app removed a member from a group: tell the client (``unsubscribed``)."""
        connection = self.connections.get(channel_id)
        if connection is not None and reason not in _QUIET_LEAVES:
            connection.removed(group)


class _Relay:
    """Per app: publishes presence diffs and reports removals to protocol clients."""

    def __init__(self, runtime: ChannelsRuntime, events: EventEmitter) -> None:
        self.runtime = runtime
        self.endpoints: list[ChannelsEndpoint] = []
        events.on("channel.join", self.joined)
        events.on("channel.leave", self.left)

    async def joined(self, event: Mapping[str, Any]) -> None:
        group = event["group"]
        diff = join_push(group, event["channel_id"], event.get("metadata"))
        await self._publish(group, diff)

    async def left(self, event: Mapping[str, Any]) -> None:
        group, channel_id, reason = event["group"], event["channel_id"], event["reason"]
        for endpoint in self.endpoints:
            endpoint.member_left(channel_id, group, reason)
        shown = reason if reason in _LEAVE_REASONS else "left"
        diff = leave_push(group, channel_id, event.get("metadata"), shown)
        await self._publish(group, diff)

    async def _publish(self, group: str, diff: bytes) -> None:
        if group.startswith(PRESENCE_PREFIX):
            return
        try:
            await self.runtime.group_send(presence_group(group), diff)
        except ChannelError as error:
            logger.debug("Presence diff for %r not published: %s", group, error)


_relays: WeakKeyDictionary[EventEmitter, _Relay] = WeakKeyDictionary()


def mount(
    app: Any,
    path: str,
    endpoint: ChannelsEndpoint,
    *,
    allowed_origins: Any = None,
    auth: Any = None,
) -> None:
    """Register ``endpoint`` at ``path`` on ``app``, the presence relay, and the JS client."""
    app.add_ws_route(path, endpoint, allowed_origins=allowed_origins, auth=auth)
    relay = _relays.get(app.events)
    if relay is None:
        relay = _relays[app.events] = _Relay(app.channels, app.events)
        app.http.route(CLIENT_PATH, ["GET", "HEAD"])(_serve_client)
    relay.endpoints.append(endpoint)


@functools.cache
def _client_script() -> tuple[bytes, str]:
    body = _CLIENT_FILE.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def _serve_client(request: Request) -> Response:
    """The browser client; revalidated on each load (ETag), so an upgrade shows at once."""
    body, etag = _client_script()
    headers = {"etag": etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", 304, headers)
    return Response(body, 200, headers, media_type="text/javascript")


# ---------------------------------------------------------------------- one connection


class ProtocolConnection:
    """One client's socket: its commands, subscriptions and outgoing frames."""

    def __init__(self, endpoint: ChannelsEndpoint, ws: WebSocket) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.runtime = endpoint.runtime
        self.channel: Channel | None = None
        self.identity = Identity()
        self.subscriptions: dict[str, bool] = {}
        """Group -> whether the client watches its presence."""
        self.deadline: float | None = None
        """Loop time by which the client must connect, or refresh its token."""
        self._expires_at: float | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def client_id(self) -> str:
        return self.channel.uuid if self.channel is not None else ""

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        ws = self.ws
        if SUBPROTOCOL not in ws.subprotocols:
            await ws.accept()
            await self._disconnect(
                DisconnectCode.UNSUPPORTED_PROTOCOL,
                f"offer the WebSocket subprotocol {SUBPROTOCOL!r}",
            )
            return
        await ws.accept(SUBPROTOCOL)
        loop = asyncio.get_running_loop()
        if self.endpoint.connect_timeout:
            self.deadline = loop.time() + self.endpoint.connect_timeout
        try:
            while True:
                message = await self._receive()
                if message is None:
                    await self._deadline_passed()
                    return
                text = message.get("text")
                if text is None:
                    await self.send(
                        error_push(ErrorCode.BAD_REQUEST, "send JSON text frames, not binary")
                    )
                    continue
                if not await self._handle(text):
                    return
        except WebSocketDisconnect:
            return
        finally:
            self.endpoint._left(self)

    async def _receive(self) -> dict[str, Any] | None:
        deadline = self.deadline
        if deadline is None:
            return await self.ws.receive()
        try:
            async with asyncio.timeout_at(deadline):
                return await self.ws.receive()
        except TimeoutError:
            return None

    async def _deadline_passed(self) -> None:
        if self.channel is None:
            await self._disconnect(
                DisconnectCode.CONNECT_TIMEOUT,
                f"no connect frame within {self.endpoint.connect_timeout:g} s",
            )
        else:
            await self._disconnect(DisconnectCode.TOKEN_EXPIRED, "token expired")

    async def _handle(self, text: str) -> bool:
        """Run one command; False when the connection must end."""
        try:
            command = parse_command(text, self.endpoint.limits)
        except ProtocolError as error:
            return await self._malformed(text, error)
        if isinstance(command, PongCommand):
            return True
        if self.channel is None and not isinstance(command, ConnectCommand):
            await self.send(
                error_reply(
                    command.id,
                    ErrorCode.BAD_REQUEST,
                    f'send "connect" first; got {command.type!r} before it',
                )
            )
            return True
        if isinstance(command, ConnectCommand):
            if self.channel is None:
                return await self._connect(command)
            await self.send(
                error_reply(command.id, ErrorCode.BAD_REQUEST, '"connect" is accepted once')
            )
            return True
        if self._expired():
            await self.send(
                error_reply(command.id, ErrorCode.TOKEN_EXPIRED, "the token expired: refresh it")
            )
            return True
        try:
            result = await self._run(command)
        except ProtocolError as error:
            await self.send(error_reply(command.id, _code(error.code), error.message))
            if isinstance(command, RefreshCommand) and error.code == ErrorCode.UNAUTHORIZED:
                await self._disconnect(DisconnectCode.UNAUTHORIZED, error.message)
                return False
            return True
        await self.send(reply(command.id, result))
        return True

    async def _malformed(self, text: str, error: ProtocolError) -> bool:
        if error.command_id is None:
            await self.send(error_push(_code(error.code), error.message))
            return True
        await self.send(error_reply(error.command_id, _code(error.code), error.message))
        if self.channel is None and _looks_like_connect(text):
            await self._disconnect(DisconnectCode.BAD_REQUEST, error.message)
            return False
        return True

    def _expired(self) -> bool:
        expires_at = self._expires_at
        return expires_at is not None and time.time() >= expires_at

    # ------------------------------------------------------------------ commands

    async def _run(self, command: Command) -> dict[str, Any]:
        if isinstance(command, SubscribeCommand):
            work = self._subscribe(command.group, command.options)
        elif isinstance(command, UnsubscribeCommand):
            work = self._unsubscribe(command.group)
        elif isinstance(command, PublishCommand):
            work = self._publish(command)
        elif isinstance(command, HistoryCommand):
            work = self._history(command)
        elif isinstance(command, PresenceCommand):
            work = self._presence(command.group)
        elif isinstance(command, RefreshCommand):
            work = self._refresh(command.token)
        elif isinstance(command, PingCommand):
            return {}
        else:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unexpected command {command.type!r}")
        return await self._guarded(command.type, work)

    @staticmethod
    async def _guarded(what: str, work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        """Run a command; what fails becomes the protocol error a client can act on."""
        try:
            return await work
        except ProtocolError:
            raise
        except GroupAccessDenied as error:
            raise ProtocolError(ErrorCode.FORBIDDEN, str(error)) from None
        except ChannelError as error:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"try again later: {error}") from None
        except ConfigurationError as error:
            raise ProtocolError(ErrorCode.BAD_REQUEST, str(error)) from None
        except Exception:
            logger.exception("Protocol command %r failed", what)
            raise ProtocolError(ErrorCode.INTERNAL, "the server failed; try again") from None

    async def _connect(self, command: ConnectCommand) -> bool:
        try:
            identity = await self._identify(command.token)
            channel = Channel(
                self.ws, payload_type="json", metadata=dict(identity.info), framer=FRAMER
            )
        except ProtocolError as error:
            await self.send(error_reply(command.id, _code(error.code), error.message))
            await self._disconnect(_refused_connect(error.code), error.message)
            return False
        except Exception:
            logger.exception("Protocol connect failed (the authenticate hook, or its info)")
            await self.send(
                error_reply(command.id, ErrorCode.INTERNAL, "the server failed; try again")
            )
            await self._disconnect(DisconnectCode.RECONNECT, "the server failed")
            return False
        self._adopt(identity)
        self.channel = channel
        self.endpoint._joined(self)
        groups: dict[str, Any] = {}
        for name, options in command.groups.items():
            try:
                groups[name] = await self._guarded("subscribe", self._subscribe(name, options))
            except ProtocolError as error:
                groups[name] = {"error": {"code": int(error.code), "message": error.message}}
        await self.send(
            reply(
                command.id,
                {
                    "client": self.client_id,
                    "ping": self.endpoint.ping_interval,
                    "expires": self._expires_in(),
                    "groups": groups,
                },
            )
        )
        return True

    async def _identify(self, token: str | None) -> Identity:
        hook = self.endpoint.authenticate
        if hook is None:
            user = self.ws.user
            return Identity(user, user if isinstance(user, Mapping) else {})
        try:
            result = await maybe_await(hook(self.ws, token))
        except AuthError as error:  # the handshake hooks' way of refusing, accepted here too
            raise ProtocolError(error.status, error.reason) from None
        if result is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "the token was refused")
        if isinstance(result, Identity):
            return result
        return Identity(result, result if isinstance(result, Mapping) else {})

    def _adopt(self, identity: Identity) -> None:
        self.identity = identity
        expires_at = identity.expires_at
        self._expires_at = expires_at
        if expires_at is None:
            self.deadline = None
            return
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + max(0.0, expires_at - time.time())

    def _expires_in(self) -> float | None:
        if self._expires_at is None:
            return None
        return max(0.0, round(self._expires_at - time.time(), 3))

    async def _refresh(self, token: str) -> dict[str, Any]:
        identity = await self._identify(token)
        self._adopt(identity)
        return {"expires": self._expires_in()}

    def _check_group(self, group: str) -> None:
        served = self.endpoint.groups
        if served is not None and not served(group):
            raise ProtocolError(ErrorCode.UNKNOWN_GROUP, f"this endpoint serves no group {group!r}")

    async def _allowed(self, policy: GroupPolicy | bool | None, group: str, what: str) -> None:
        channel = self.channel
        assert channel is not None
        if policy is None or policy is True:
            return
        if policy is False or not await policy(channel, group):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to {what} {group!r}")

    async def _subscribe(self, group: str, options: SubscribeOptions) -> dict[str, Any]:
        channel = self.channel
        assert channel is not None
        self._check_group(group)
        if group in self.subscriptions:
            raise ProtocolError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {group!r}")
        if len(self.subscriptions) >= self.endpoint.max_subscriptions:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"at most {self.endpoint.max_subscriptions} subscriptions per connection",
            )
        await self._allowed(self.endpoint.can_subscribe, group, "subscribe to")
        if options.presence:
            await self._allowed(self.endpoint.can_see_presence, group, "see the presence of")
            await self.runtime.join(channel, presence_group(group), hidden=True)
        self.subscriptions[group] = options.presence
        try:
            joined = await self.runtime.join(
                channel, group, since=options.since, epoch=options.epoch
            )
            members = await self._members(group) if options.presence else None
        except BaseException:
            await self._leave(group)
            raise
        return subscribe_result(
            joined.epoch,
            joined.last_seq,
            complete=joined.complete,
            recovered=joined.recovered,
            presence=members,
        )

    async def _members(self, group: str) -> list[dict[str, Any]]:
        return [member(m.channel_id, m.metadata) for m in await self.runtime.presence(group)]

    async def _unsubscribe(self, group: str) -> dict[str, Any]:
        self._check_group(group)
        await self._leave(group)
        return {}

    async def _leave(self, group: str) -> None:
        channel = self.channel
        assert channel is not None
        watched = self.subscriptions.pop(group, None)
        await self.runtime.leave(channel, group)
        if watched:
            await self.runtime.leave(channel, presence_group(group))

    def removed(self, group: str) -> None:
        """The app removed this client from ``group`` (``unsubscribed`` 410)."""
        if group not in self.subscriptions:
            return
        watched = self.subscriptions.pop(group)
        self.push_bytes(unsubscribed_push(group, ErrorCode.REMOVED, "removed by the server", False))
        if watched and self.channel is not None:
            self._spawn(self.runtime.leave(self.channel, presence_group(group)))

    async def _publish(self, command: PublishCommand) -> dict[str, Any]:
        channel = self.channel
        assert channel is not None
        group = command.group
        self._check_group(group)
        endpoint = self.endpoint
        if endpoint.can_publish is False:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this server does not take client publishes")
        await self._allowed(endpoint.can_publish, group, "publish to")
        data = command.data
        if endpoint.on_publish is not None:
            data = await endpoint.on_publish(channel, group, data)
            if data is None:
                raise ProtocolError(ErrorCode.FORBIDDEN, "the server refused this publish")
        saved = endpoint.saves(group)
        sent = await self.runtime.group_send(
            group, data, save_history=saved, idempotency_key=command.idempotency_key
        )
        return {"seq": sent.seq, "epoch": sent.epoch} if saved else {}

    async def _history(self, command: HistoryCommand) -> dict[str, Any]:
        group = command.group
        self._check_group(group)
        await self._allowed(self.endpoint.can_subscribe, group, "read the history of")
        page = await self.runtime.read_history(
            group, since=command.since, limit=command.limit, epoch=command.epoch
        )
        if command.epoch is not None and page.epoch and command.epoch != page.epoch:
            raise ProtocolError(
                ErrorCode.UNRECOVERABLE,
                f"epoch {command.epoch!r} is over (now {page.epoch!r}): reload the group",
            )
        messages = [(entry.seq, json_data(entry.kind, entry.data)) for entry in page]
        return history_result(messages, page.epoch, page.last_seq, complete=page.complete)

    async def _presence(self, group: str) -> dict[str, Any]:
        self._check_group(group)
        await self._allowed(self.endpoint.can_see_presence, group, "see the presence of")
        return {"members": await self._members(group)}

    # ------------------------------------------------------------------ sending

    def push(self, frame: Frame) -> None:
        """Queue a frame after everything queued for this client before it."""
        channel = self.channel
        sender = channel.sender if channel is not None else None
        if sender is not None:
            sender.put(frame)
            return
        self._spawn(self._send_direct(frame.payload))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in a task this connection waits for before it closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def push_bytes(self, data: bytes) -> None:
        self.push(Frame(data, is_text=True))

    async def send(self, data: bytes) -> None:
        """Send a reply or push from the connection's own loop, in order with the rest."""
        channel = self.channel
        sender = channel.sender if channel is not None else None
        if sender is not None:
            sender.put(Frame(data, is_text=True))
        else:
            await self._send_direct(data)

    async def _send_direct(self, data: bytes) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.send_text(data.decode())

    async def _disconnect(self, code: DisconnectCode, reason: str) -> None:
        """Send the ``disconnect`` push, then close with the same code."""
        await self.send(disconnect_push(code, reason))
        if self._pending:
            await asyncio.wait(set(self._pending))
        with contextlib.suppress(WebSocketDisconnect):
            await self.ws.close(int(code), reason[:120])


def _code(code: int) -> ErrorCode:
    try:
        return ErrorCode(int(code))
    except ValueError:
        return ErrorCode.INTERNAL


def _refused_connect(code: int) -> DisconnectCode:
    if code == ErrorCode.TOKEN_EXPIRED:
        return DisconnectCode.TOKEN_EXPIRED
    if code == ErrorCode.FORBIDDEN:
        return DisconnectCode.FORBIDDEN
    if code == ErrorCode.UNAUTHORIZED:
        return DisconnectCode.UNAUTHORIZED
    if _code(code).temporary:
        return DisconnectCode.RECONNECT
    return DisconnectCode.BAD_REQUEST


def _looks_like_connect(text: str) -> bool:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "connect"
