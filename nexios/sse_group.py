"""A group as Server-Sent Events, in one line: ``app.sse_group(path, group=...)``.

>>> app.sse_group("/events/{room}", group="room:{room}")

.. code-block:: javascript

    const events = new EventSource("/events/lobby");
    events.onmessage = (event) => show(JSON.parse(event.data));
    events.addEventListener("resync", () => reloadTheRoom());

Each page is a member of the group, like a WebSocket member: it receives what
``ChannelBox.group_send`` sends to the group from any handler, task or process; it is
in presence while connected; it has the same bounded sender. This is the transport for
networks and proxies that block WebSockets. The page only receives: it sends with
``fetch`` to an HTTP route.

**Recovery.** Saved messages (``save_history=True``) carry ``id: <seq>:<epoch>``. When
the connection drops, the browser reconnects by itself after its retry delay and sends
the last id as ``Last-Event-ID``; the member joins with it as ``since`` and ``epoch``
and receives exactly the saved messages it missed, then live ones — in seq order, each
once (:meth:`~nexios.websockets.channels.ChannelBox.add_channel_to_group`). Every stream
starts with the page's position (an ``id`` without data, which sets ``Last-Event-ID``
without an event), so a page that has not had a message yet resumes at the right place
too. A first connection may pass ``?since=<seq>&epoch=<epoch>`` instead (a page that
rendered the history up to ``seq`` from your own API); ``Last-Event-ID`` wins.

When recovery is impossible — the page missed more than history keeps (or than
:data:`~nexios.runtime.MAX_REPLAY`), or its epoch is not the group's (history was lost)
— the stream starts with ``event: resync``, ``data`` ``{"type": "nexios.resync",
"group", "reason": "gap" | "epoch_changed", "epoch", "last_seq"}``, and goes on live
from the group's position: reload the state. The same event arrives live when a
connected member's sequence cannot go on without a gap (:mod:`nexios.runtime.feeds`).

**Admission**, in order: the Origin (``allowed_origins``, default the app's), then
``auth`` (default the app's ``ws_auth``; ``False``: public) — both as for a WebSocket
handshake, given the :class:`~nexios.eventstream.EventStream`, which offers the same
request data — then the group name, then the app's group policy at the join. A refusal
is an HTTP error (403, 401; 400 for a bad ``since``), which ends an ``EventSource``
for good. An unreachable channel layer answers an empty stream with a ``retry`` instead,
so the browser tries again.

**Bounds.** A page that does not read is evicted like a WebSocket member (the app's
``outbox``: see :mod:`nexios.runtime.senders`): its stream ends, its ``EventSource``
reconnects and recovers from history. The ``DROP_*`` policies drop events instead, and
the page never gets those (the next id moves past them): keep ``EVICT`` for saved
messages. A keep-alive comment goes out after ``ping_interval`` seconds of silence.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from nexios._utils import maybe_await
from nexios.encoding import dumps
from nexios.eventstream import (
    EVENT_FRAMER,
    EventStream,
    check_stream_options,
    encode_event,
    event_id,
    parse_event_id,
)
from nexios.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    GroupAccessDenied,
    HTTPException,
)
from nexios.framing import FrameSet
from nexios.http.request import Request
from nexios.http.responses import Response
from nexios.http.routing import Route
from nexios.http.sse import DEFAULT_PING_INTERVAL, last_event_id, stream_headers
from nexios.runtime import Channel, JoinResult, check_group_name, current_runtime
from nexios.runtime.feeds import Resync
from nexios.security import AuthError, OriginPolicy, check_auth_hook

__all__ = ["GroupSource", "MetadataHook", "SSEGroup", "StreamAuth"]

logger = logging.getLogger("nexios.channels")

GroupSource = str | Callable[[EventStream], str | Awaitable[str]]
"""A template of path parameters (``"room:{room}"``), or ``(stream) -> group name``."""

StreamAuth = Callable[[EventStream], Awaitable[Any]]
"""``async def auth(stream) -> user | None``: None refuses (401); raise ``AuthError``
for another status. The user is ``stream.user`` (``channel.websocket.user``)."""

MetadataHook = Callable[[EventStream], dict[str, Any] | Awaitable[dict[str, Any]]]
"""``(stream) -> dict``: the member's presence metadata."""

UNAVAILABLE_RETRY = 2000
"""Milliseconds the browser waits before retrying when the channel layer is down."""


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where a reconnecting page stands: ``since`` of ``epoch``; since None: unknown."""

    since: int | None
    epoch: str | None


class SSEGroup(Route):
    """A GET route serving ``group`` as Server-Sent Events (see the module docstring).

    ``app.add_route(SSEGroup("/events/{room}", group="room:{room}"))``, or
    ``app.sse_group(...)``. ``group``: a template of the path's parameters, or a
    function of the :class:`~nexios.eventstream.EventStream`. ``auth``: ``None`` uses the
    app's ``ws_auth``; ``False`` makes the route public. ``metadata``: the member's
    presence metadata. ``allowed_origins``: ``None`` uses the app's. ``ping_interval``
    (seconds) and ``retry`` (the browser's reconnection delay, milliseconds).
    """

    def __init__(
        self,
        path: str,
        group: GroupSource,
        *,
        auth: StreamAuth | Literal[False] | None = None,
        metadata: MetadataHook | None = None,
        allowed_origins: str | Sequence[str] | None = None,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        retry: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, self.serve, ("GET",), name or "sse_group")
        self.group = _check_group_source(self.path, group, self.template.param_names)
        self.auth = check_auth_hook(auth, f"SSEGroup({path!r}, auth=...)")
        if metadata is not None and not callable(metadata):
            raise ConfigurationError(
                f"SSEGroup({path!r}, metadata=...) takes (stream) -> dict, got {metadata!r}."
            )
        self.metadata = metadata
        self.origin_policy = None if allowed_origins is None else OriginPolicy(allowed_origins)
        check_stream_options(ping_interval, retry)
        self.ping_interval = ping_interval
        self.retry = retry

    async def serve(self, request: Request) -> Response:
        """Admit the page, join it to the group (recovering what it missed), stream."""
        if request.method == "HEAD":
            return Response(b"", 200, stream_headers(), media_type="text/event-stream")
        stream = EventStream(request, ping_interval=self.ping_interval, retry=self.retry)
        try:
            group, resume, joined = await self._join(stream)
        except GroupAccessDenied:
            await stream.discard()
            raise HTTPException(403, "The group policy refused this page.") from None
        except BackendUnavailableError as error:
            await stream.discard()
            logger.warning("Event stream %s: channels unavailable (%s)", request.url.path, error)
            return _try_again_later()
        except BaseException:
            await stream.discard()
            raise
        stream.write_first(_first_event(group, resume, joined))
        return stream.response

    async def _join(self, stream: EventStream) -> tuple[str, _Resume | None, JoinResult]:
        await self._admit(stream)
        group = await self._group_name(stream)
        resume = _resume_of(stream.request)
        metadata = await maybe_await(self.metadata(stream)) if self.metadata else None
        channel = Channel(stream, metadata=metadata, framer=EVENT_FRAMER)
        since, epoch = (resume.since, resume.epoch) if resume is not None else (None, None)
        joined = await current_runtime().join(channel, group, since=since, epoch=epoch)
        return group, resume, joined

    async def _admit(self, stream: EventStream) -> None:
        """The Origin, then the auth hook, as for a WebSocket handshake."""
        app = stream.request.app
        policy = self.origin_policy or getattr(app, "origin_policy", None)
        if policy is not None:
            refused = policy.refusal(cast(dict[str, Any], stream.scope))
            if refused is not None:
                logger.info(
                    "Event stream %s: origin %r not allowed (403)", stream.url.path, refused
                )
                raise HTTPException(403, "Origin not allowed.")
        # The app's ws_auth gets the stream: it offers the request data a WebSocket does.
        auth: Any = getattr(app, "ws_auth", None) if self.auth is None else self.auth
        if not auth:
            return
        try:
            user = await auth(stream)
        except AuthError as error:
            status, reason = error.status, error.reason
        else:
            if user is not None:
                stream.scope["user"] = user
                return
            status, reason = 401, "authentication required"
        logger.info(
            "Event stream %s: authentication failed (%d): %s", stream.url.path, status, reason
        )
        raise HTTPException(status, reason)

    async def _group_name(self, stream: EventStream) -> str:
        source = self.group
        if isinstance(source, str):
            name = source.format_map(stream.path_params)
        else:
            name = await maybe_await(source(stream))
        try:
            return check_group_name(name)
        except ConfigurationError as error:
            raise HTTPException(400, str(error)) from None

    def __repr__(self) -> str:
        return f"SSEGroup({self.path!r}, group={self.group!r})"


def _check_group_source(path: str, group: Any, params: Sequence[str]) -> GroupSource:
    if callable(group):
        return cast(GroupSource, group)
    if not isinstance(group, str) or not group:
        raise ConfigurationError(
            f"SSEGroup({path!r}, group=...) takes a group name, a template of the path's "
            f"parameters such as 'room:{{room}}', or (stream) -> name; got {group!r}."
        )
    try:
        fields = [
            (field, spec, conversion)
            for _, field, spec, conversion in string.Formatter().parse(group)
            if field is not None
        ]
    except ValueError as error:
        raise ConfigurationError(f"SSEGroup({path!r}, group={group!r}): {error}.") from None
    for field, spec, conversion in fields:
        if field not in params or spec or conversion:
            raise ConfigurationError(
                f"SSEGroup({path!r}, group={group!r}): {{{field}}} is not a path parameter "
                f"(path parameters: {', '.join(params) or 'none'}); write them as {{name}}, "
                "or pass a function of the stream."
            )
    if not fields:
        check_group_name(group)
    return group


def _resume_of(request: Request) -> _Resume | None:
    """Where the page stands: ``Last-Event-ID``, else ``?since=&epoch=``, else None."""
    last = last_event_id(request)
    if last is not None:
        parsed = parse_event_id(last)
        return _Resume(None, None) if parsed is None else _Resume(*parsed)
    query = request.query_params
    since_text, epoch = query.get("since"), query.get("epoch")
    if since_text is None:
        if epoch is not None:
            raise HTTPException(400, "epoch= needs since=: the last seq the page has.")
        return None
    if not since_text.isascii() or not since_text.isdigit() or len(since_text) > 20:
        raise HTTPException(
            400, f"since= is the last seq the page has (an int >= 0), got {since_text!r}."
        )
    return _Resume(int(since_text), epoch or None)


def _first_event(group: str, resume: _Resume | None, joined: JoinResult) -> bytes:
    """The page's position before anything queued for it: where it was (replay follows),
    where the group is (a fresh page), or a resync when it cannot go on from where it was."""
    if resume is None:
        return _position(joined.last_seq, joined.epoch)
    if resume.since is not None and joined.complete:
        return _position(resume.since, joined.epoch)
    changed = resume.epoch is not None and resume.epoch != joined.epoch
    notice = Resync("epoch_changed" if changed else "gap", joined.epoch, joined.last_seq)
    return encode_event(
        FrameSet("json", dumps(notice.to_dict(group)), group=group, notice="resync")
    )


def _position(seq: int, epoch: str) -> bytes:
    """An event with an ``id`` and no data: it sets the page's ``Last-Event-ID`` only."""
    return f"id: {event_id(seq, epoch)}\n\n".encode()


def _try_again_later() -> Response:
    body = f"retry: {UNAVAILABLE_RETRY}\n\n: channels unavailable, try again\n\n".encode()
    return Response(body, 200, stream_headers(), media_type="text/event-stream")
