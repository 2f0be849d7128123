"""``NexiosApp``: the ASGI 3 application — routing, lifespan and the WebSocket lifecycle.

What happens to a WebSocket connection:

1. The path is matched against the WebSocket routes; no match refuses the handshake
   (HTTP 403) and logs the path at info level.
2. Admission (:mod:`nexios.security`, :mod:`nexios.limits`): the Origin is checked
   against the route's or app's allowlist (refused: 403), the client address against
   ``max_connections_per_client`` (429), then the auth hook runs (401/403). Logs name
   the path, never the query string or headers.
3. App middleware, then route middleware, then the handler runs with the path
   parameters it names as keyword arguments. Received messages are checked against
   the size and rate limits; one task per app sweeps idle connections (1001).
4. When the handler ends: returned while connected → close 1000; raised → the
   traceback is logged once and the socket closes with 1011 (or, before ``accept()``,
   the handshake is refused with 403); the client disconnected → a debug line; raised
   ``WebSocketDisconnect(code)`` itself while still connected → close with ``code``.
5. Cleanup callbacks (group membership, presence) run on every one of those paths.

Channels: the app owns one channels runtime (``app.channels``, see
:mod:`nexios.runtime`) built from its settings; every connection, request and the
lifespan run with it as the current runtime, which is how ``ChannelBox`` finds it.

Lifespan: startup hooks run in order, then the ``lifespan=`` context is entered, then
the channels runtime starts (its settings are resolved and the channel layer connects:
a bad setting or an unreachable broker fails the startup). At shutdown, group members
are closed (1001) and leave their groups and presence, the channel layer disconnects,
every other open socket is closed (1001) and their handlers get up to
``shutdown_timeout`` seconds to finish; then the context is exited and the shutdown
hooks run. A failure is reported to the server (``lifespan.startup.failed`` /
``lifespan.shutdown.failed``) and logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from nexios._utils import maybe_await
from nexios.connection import WebSocket, WebSocketState
from nexios.endpoint import ChannelsEndpoint, GroupFilter, PublishHook, TokenAuth, mount
from nexios.events import EventEmitter
from nexios.exceptions import ConfigurationError, WebSocketDisconnect
from nexios.history.base import HistoryLimits
from nexios.http.app import HTTPApp
from nexios.http.datastructures import route_path
from nexios.http.errors import ExceptionHandler, ExceptionHandlers, HandlerKey
from nexios.http.middleware import Middleware
from nexios.http.request import DEFAULT_MAX_BODY_SIZE
from nexios.http.sse import DEFAULT_PING_INTERVAL
from nexios.limits import (
    IDLE_CLOSE_CODE,
    TOO_MANY_CONNECTIONS_STATUS,
    Limits,
    MessageLimiter,
)
from nexios.metrics import Metrics
from nexios.ops.meter import ConnectionMeter
from nexios.ops.operations import Operations, dashboard_token_option, metrics_option
from nexios.protocol import ProtocolLimits
from nexios.routing import (
    WebsocketRoutes,
    WSMiddleware,
    WSRouter,
    WSRouteRegistry,
    check_middleware,
    endpoint_class,
    find_route,
)
from nexios.runtime import ChannelsRuntime, GroupPolicy, OutboxLimits, SettingsOverrides
from nexios.security import AuthError, OriginPolicy, WSAuth, check_auth_hook
from nexios.sse_group import GroupSource, MetadataHook, SSEGroup, StreamAuth

__all__ = ["NexiosApp"]

logger = logging.getLogger("nexios.websockets")
_F = TypeVar("_F", bound=Callable[..., Any])

Lifespan = Callable[["NexiosApp"], contextlib.AbstractAsyncContextManager[Any]]

_SWEEP_INTERVAL = 1.0


class NexiosApp(WSRouteRegistry, HTTPApp):
    """An ASGI application serving ``http``, ``websocket`` and ``lifespan`` scopes.

    ``channels_url`` (or ``NEXIOS_CHANNELS_URL``) picks where groups, broadcasts and
    presence live: ``memory://`` (default) or ``redis://host:port/db``;
    ``history_url`` (or ``NEXIOS_HISTORY_URL``) where history lives; ``history_limits``,
    ``outbox`` and ``presence_ttl`` bound them (see :mod:`nexios.runtime.settings`);
    ``group_policy`` decides who may join which group.

    ``allowed_origins`` (default: same origin only; ``"*"`` any) and ``ws_auth``
    (``async def auth(ws) -> user | None``) admit WebSocket handshakes, see
    :mod:`nexios.security`; routes may override both. ``limits`` (default:
    :meth:`Limits.from_env <nexios.limits.Limits.from_env>`) bounds message size and
    rate, connections per client address and idle time, see :mod:`nexios.limits`.
    ``shutdown_timeout`` bounds how long shutdown waits for WebSocket handlers.

    HTTP (see :class:`~nexios.http.app.HTTPApp`): ``middleware`` (``Middleware(cls,
    **options)`` items, the first outermost), ``exception_handlers`` (``{class or
    status: handler}``) and ``max_body_size`` (bytes, default 1 MiB, ``None``: no limit).

    Operations (see :mod:`nexios.ops`): ``metrics=True`` (or ``NEXIOS_METRICS=1``) serves
    Prometheus metrics at ``/metrics``; ``/healthz`` and ``/readyz`` are on unless
    ``health=False``; ``dashboard="<token>"`` (or ``NEXIOS_DASHBOARD_TOKEN``) serves the
    live dashboard at ``/_nexios/dashboard``.
    """

    def __init__(
        self,
        *,
        channels_url: str | None = None,
        history_url: str | None = None,
        lifespan: Lifespan | None = None,
        on_startup: Sequence[Callable[[], Any]] | None = None,
        on_shutdown: Sequence[Callable[[], Any]] | None = None,
        ws_middleware: Sequence[WSMiddleware] | None = None,
        title: str = "Nexios",
        allowed_origins: str | Sequence[str] | None = None,
        ws_auth: WSAuth | None = None,
        limits: Limits | None = None,
        shutdown_timeout: float = 5.0,
        history_limits: HistoryLimits | None = None,
        outbox: OutboxLimits | None = None,
        presence_ttl: float | None = None,
        group_policy: GroupPolicy | None = None,
        middleware: Sequence[Middleware] | None = None,
        exception_handlers: Mapping[HandlerKey, ExceptionHandler] | None = None,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        metrics: bool | Metrics | None = None,
        dashboard: str | None = None,
        health: bool = True,
    ) -> None:
        self.title = title
        self._init_http(
            middleware=middleware,
            exception_handlers=exception_handlers,
            max_body_size=max_body_size,
        )
        self.events = EventEmitter()
        self.ws_routes: list[WebsocketRoutes] = []
        self._ws_middleware = check_middleware(ws_middleware)
        self._lifespan = lifespan
        self._startup: list[Callable[[], Any]] = list(on_startup or ())
        self._shutdown: list[Callable[[], Any]] = list(on_shutdown or ())
        self.channels = ChannelsRuntime(
            SettingsOverrides(
                channels_url=channels_url,
                history_url=history_url,
                history_limits=history_limits,
                outbox=outbox,
                presence_ttl=presence_ttl,
            ),
            events=self.events,
            group_policy=group_policy,
        )
        """This app's channels runtime: groups, members, presence, history."""
        self.origin_policy = OriginPolicy(allowed_origins)
        self.ws_auth = check_auth_hook(ws_auth, "NexiosApp(ws_auth=...)") or None
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(
                f"NexiosApp(limits=...) takes a nexios.limits.Limits, got {limits!r}."
            )
        self.limits = limits if limits is not None else Limits.from_env()
        self.shutdown_timeout = shutdown_timeout
        self._sockets: set[WebSocket] = set()
        self._per_client: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.ops = Operations(
            self.channels,
            metrics=metrics_option(metrics),
            dashboard_token=dashboard_token_option(dashboard),
            health=health,
        )
        """Metrics, health probes and the dashboard (see :mod:`nexios.ops`)."""
        for prefix, endpoint in self.ops.mounts():
            self.mount(prefix, endpoint)

    # ------------------------------------------------------------------ routing

    def _register_ws_route(self, route: WebsocketRoutes) -> None:
        self.ws_routes.append(route)

    def mount_ws_router(self, router: WSRouter, prefix: str | None = None) -> None:
        """Add every route of ``router`` under ``prefix`` (default: the router's own)."""
        if not isinstance(router, WSRouter):
            raise ConfigurationError(
                f"mount_ws_router() takes a WSRouter, got {router!r}; for a single route "
                "use add_ws_route()."
            )
        for route in router.mounted_routes(prefix):
            self._register_ws_route(route)
        router._attach(self._register_ws_route, prefix)

    def channels_endpoint(
        self,
        path: str = "/connect",
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
        allowed_origins: str | Sequence[str] | None = None,
        auth: WSAuth | Literal[False] | None = None,
    ) -> ChannelsEndpoint:
        """Serve the client protocol (``docs/protocol.md``) at ``path``: one line.

        Browsers load the client from ``/_nexios/nexios.js``; Python uses
        :mod:`nexios.client`. The hooks are described in :mod:`nexios.endpoint`;
        ``allowed_origins`` and ``auth`` apply to the handshake as for any route.
        """
        endpoint = ChannelsEndpoint(
            self.channels,
            authenticate=authenticate,
            groups=groups,
            can_subscribe=can_subscribe,
            can_publish=can_publish,
            can_see_presence=can_see_presence,
            on_publish=on_publish,
            history=history,
            ping_interval=ping_interval,
            connect_timeout=connect_timeout,
            max_subscriptions=max_subscriptions,
            limits=limits,
        )
        mount(self, path, endpoint, allowed_origins=allowed_origins, auth=auth)
        return endpoint

    def sse_group(
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
    ) -> SSEGroup:
        """Serve ``group`` as Server-Sent Events at ``path``, for a browser's ``EventSource``.

        ``app.sse_group("/events/{room}", group="room:{room}")``: each page is a member of
        the group; saved messages carry ``id: <seq>:<epoch>`` and a reconnecting page
        recovers what it missed. See :mod:`nexios.sse_group`.
        """
        route = SSEGroup(
            path,
            group,
            auth=auth,
            metadata=metadata,
            allowed_origins=allowed_origins,
            ping_interval=ping_interval,
            retry=retry,
            name=name,
        )
        self.add_route(route)
        return route

    def add_ws_middleware(self, middleware: WSMiddleware) -> None:
        """Run ``async def middleware(ws, call_next)`` around every WebSocket handler."""
        self._ws_middleware.extend(check_middleware([middleware]))

    # ------------------------------------------------------------------ lifespan hooks

    def on_startup(self, func: _F) -> _F:
        """Run ``func`` (sync or async) when the server starts."""
        self._startup.append(func)
        return func

    def on_shutdown(self, func: _F) -> _F:
        """Run ``func`` (sync or async) when the server stops."""
        self._shutdown.append(func)
        return func

    # ------------------------------------------------------------------ ASGI

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        kind = scope["type"]
        # --- HTTP side (nexios.http.app): a scope from the server enters the middleware
        # stack, whose innermost layer calls back here with scope["app"] set. ---
        stack = self._entry(scope) if scope.get("app") is not self else None
        # --- end HTTP side ---
        scope["app"] = self
        # ChannelBox finds this app's channels runtime through this context variable;
        # each connection runs in its own task, so its context is its own.
        token = self.channels.activate()
        try:
            if stack is not None:
                await stack(scope, receive, send)
            elif kind == "websocket":
                # Admission, handler and conclusion run one after the other from this
                # frame, so a live connection holds this frame and the handler's only.
                admitted = await self._admit(scope, receive, send)
                if admitted is None:
                    return
                route, ws, params, host, meter = admitted
                outcome: BaseException | None = None
                try:
                    await self._handler_call(route, ws, params)
                except BaseException as error:
                    outcome = error
                await self._conclude(route, ws, host, outcome, meter)
            elif kind == "http":
                await self.http(scope, receive, send)
            elif kind == "lifespan":
                await self._handle_lifespan(receive, send)
            else:
                raise ConfigurationError(f"Unsupported ASGI scope type {kind!r}")
        finally:
            self.channels.deactivate(token)

    async def _admit(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> (
        tuple[WebsocketRoutes, WebSocket, dict[str, Any], str | None, ConnectionMeter | None] | None
    ):
        """Match the route and run the handshake checks; None when the client was refused.

        Separate from the handler's run so that its frame is gone while the connection
        lives: an idle connection holds as few suspended frames as possible.
        """
        found = find_route(self.ws_routes, route_path(scope))
        metrics = self.ops.metrics
        if found is None:
            logger.info(
                "No WebSocket route for %r: handshake refused (403)",
                scope["path"],
                extra=_log_fields(scope, status=403, reason="unknown_path"),
            )
            if metrics is not None:
                metrics.handshake_refused("unknown_path")
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return None
        route, params = found
        scope["path_params"] = params
        meter = self.ops.meter(send)
        if meter is None:
            ws = WebSocket(scope, receive, send)
        else:  # direct sends are counted; broadcasts are counted once, by the runtime
            ws = WebSocket(scope, receive, meter.send, transmit=send)
        ws._task = asyncio.current_task()
        policy = route.origin_policy or self.origin_policy
        refused_origin = policy.refusal(scope)
        if refused_origin is not None:
            logger.info(
                "WebSocket %s: origin %r not allowed; handshake refused (403)",
                scope["path"],
                refused_origin,
                extra=_log_fields(scope, status=403, reason="origin"),
            )
            if metrics is not None:
                metrics.handshake_refused("origin")
            await _refuse(ws, 403, "origin not allowed")
            return None
        limits = self.limits
        max_connections = limits.max_connections_per_client
        host = _client_host(scope) if max_connections is not None else None
        if host is not None and max_connections is not None:
            count = self._per_client.get(host, 0)
            if count >= max_connections:
                logger.warning(
                    "WebSocket %s from %s: %d open connections reach "
                    "max_connections_per_client=%d; handshake refused (%d)",
                    scope["path"],
                    host,
                    count,
                    max_connections,
                    TOO_MANY_CONNECTIONS_STATUS,
                    extra=_log_fields(scope, status=TOO_MANY_CONNECTIONS_STATUS, reason="limit"),
                )
                if metrics is not None:
                    metrics.handshake_refused("limit")
                await _refuse(ws, TOO_MANY_CONNECTIONS_STATUS, "too many connections")
                return None
            self._per_client[host] = count + 1
        self._sockets.add(ws)
        try:
            auth = self.ws_auth if route.auth is None else route.auth
            if auth and not await _authenticate(auth, ws):
                if metrics is not None:
                    metrics.handshake_refused("auth")
                await self._release(ws, host)
                return None
        except BaseException:
            await self._release(ws, host)
            raise
        if meter is not None:
            ws._limits = meter.limiter(limits)  # counts each message, applies the limits
        elif limits.per_message:
            ws._limits = MessageLimiter(limits)
        if limits.needs_sweep:
            self._ensure_sweeper()
        return route, ws, params, host, meter

    def _handler_call(
        self, route: WebsocketRoutes, ws: WebSocket, params: dict[str, Any]
    ) -> Awaitable[None]:
        """The handler's awaitable, behind the app's and the route's middleware."""
        middleware = (
            self._ws_middleware + route.middleware if self._ws_middleware else route.middleware
        )
        if middleware:
            return _chain(middleware, ws, lambda: _endpoint(route, ws, params))
        return _endpoint(route, ws, params)

    async def _conclude(
        self,
        route: WebsocketRoutes,
        ws: WebSocket,
        host: str | None,
        outcome: BaseException | None,
        meter: ConnectionMeter | None = None,
    ) -> None:
        """End the connection by the rules for how the handler ended, then clean up."""
        try:
            if outcome is None:
                await _close_after_return(route, ws)
            elif isinstance(outcome, WebSocketDisconnect):
                if ws.connection_state is WebSocketState.CONNECTED:
                    # The handler raised WebSocketDisconnect itself: the peer is still there.
                    await _close_after_return(route, ws, _sendable_close_code(outcome.code))
                else:
                    logger.debug(
                        "WebSocket %s disconnected (%s)",
                        ws.scope["path"],
                        outcome.code,
                        extra=_log_fields(ws.scope, close_code=outcome.code),
                    )
            elif isinstance(outcome, asyncio.CancelledError) and ws.kicked:
                logger.debug(
                    "WebSocket %s ended by %s",
                    ws.scope["path"],
                    ws.close_code,
                    extra=_log_fields(ws.scope, close_code=ws.close_code),
                )
            elif isinstance(outcome, Exception):
                await _close_after_crash(route, ws, outcome, self.exception_handlers)
        finally:
            await self._release(ws, host)
            if meter is not None:
                self._count_end(ws, meter)
        kicked = isinstance(outcome, asyncio.CancelledError) and ws.kicked
        if outcome is not None and not isinstance(outcome, Exception) and not kicked:
            raise outcome  # cancellation, KeyboardInterrupt...: not ours to swallow

    async def _release(self, ws: WebSocket, host: str | None) -> None:
        """Forget the socket: per-address count, pending close frame, cleanup callbacks."""
        self._sockets.discard(ws)
        if host is not None:
            left = self._per_client[host] - 1
            if left:
                self._per_client[host] = left
            else:
                del self._per_client[host]
        await ws.wait_ended()
        await _run_cleanup(ws)

    def _count_end(self, ws: WebSocket, meter: ConnectionMeter) -> None:
        """Count the close of an accepted connection, or the handler's refusal."""
        if meter.accepted:
            meter.closed(ws.close_code)
        elif ws.connection_state is WebSocketState.CLOSED and self.ops.metrics is not None:
            self.ops.metrics.handshake_refused("handler")

    # ------------------------------------------------------------------ open connections

    def websocket_stats(self) -> dict[str, int]:
        """Counts for monitoring and tests: open sockets, client addresses, pending closes."""
        return {
            "open": len(self._sockets),
            "clients": len(self._per_client),
            "closing": sum(1 for ws in self._sockets if ws.closing),
        }

    def _ensure_sweeper(self) -> None:
        sweeper = self._sweeper
        loop = asyncio.get_running_loop()
        if sweeper is not None and not sweeper.done() and sweeper.get_loop() is loop:
            return
        self._sweeper = loop.create_task(self._sweep(), name="nexios-limits-sweep")

    async def _sweep(self) -> None:
        """Refill token buckets and close idle sockets: one task per app, not a timer each."""
        timeout = self.limits.idle_timeout
        interval = _SWEEP_INTERVAL if timeout is None else min(_SWEEP_INTERVAL, timeout / 4)
        interval = max(interval, 0.05)
        connected = WebSocketState.CONNECTED
        while True:
            await asyncio.sleep(interval)
            if not self._sockets:
                continue
            now = time.monotonic()
            for ws in list(self._sockets):
                limiter = ws._limits
                if limiter is None or ws.connection_state is not connected:
                    continue
                idle = limiter.tick(now)
                if timeout is not None and idle > timeout:
                    client = ws.scope.get("client")
                    logger.warning(
                        "WebSocket %s from %s: no message for %.1f s (idle_timeout=%g); "
                        "closing with %d",
                        ws.scope["path"],
                        f"{client[0]}:{client[1]}" if client else "unknown client",
                        idle,
                        timeout,
                        IDLE_CLOSE_CODE,
                        extra=_log_fields(ws.scope, close_code=IDLE_CLOSE_CODE, reason="idle"),
                    )
                    ws.end(IDLE_CLOSE_CODE, "idle timeout")

    async def _close_open_sockets(self, code: int = 1001, reason: str = "server shutdown") -> None:
        """Close every socket still open with ``code``; wait (bounded) for their handlers."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            if sweeper.get_loop() is asyncio.get_running_loop():
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            else:  # started by an earlier loop (another test client): cancel it there
                with contextlib.suppress(RuntimeError):
                    sweeper.get_loop().call_soon_threadsafe(sweeper.cancel)
        if not self._sockets:
            return
        current = asyncio.current_task()
        for ws in list(self._sockets):
            ws.end(code, reason)
        handlers = {
            ws._task
            for ws in self._sockets
            if ws._task is not None and ws._task is not current and not ws._task.done()
        }
        if not handlers:
            return
        _, pending = await asyncio.wait(handlers, timeout=self.shutdown_timeout)
        if pending:
            logger.warning(
                "%d WebSocket handler(s) still running %ss after shutdown closed their "
                "sockets; leaving them to the server",
                len(pending),
                self.shutdown_timeout,
            )

    async def _handle_lifespan(
        self,
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        stack = contextlib.AsyncExitStack()
        message = await receive()
        if message["type"] != "lifespan.startup":
            raise ConfigurationError(
                f"Expected the ASGI 'lifespan.startup' message first, got {message['type']!r}."
            )
        try:
            await self.startup(stack)
        except BaseException as error:
            logger.exception("Application startup failed")
            with contextlib.suppress(Exception):
                await stack.aclose()
            await send({"type": "lifespan.startup.failed", "message": repr(error)})
            raise
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.shutdown(stack)
        except BaseException as error:
            logger.exception("Application shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": repr(error)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def startup(self, stack: contextlib.AsyncExitStack | None = None) -> None:
        """Run startup hooks, enter the ``lifespan`` context on ``stack``, start channels.

        Servers call this through the ASGI lifespan scope; call it yourself (with a
        stack you later pass to :meth:`shutdown`) only when driving the app by hand.
        """
        for hook in self._startup:
            await maybe_await(hook())
        if self._lifespan is not None and stack is not None:
            state = await stack.enter_async_context(self._lifespan(self))
            self._publish_lifespan_state(state)  # HTTP side: -> request.state
        await self.channels.start()
        await self.ops.start()

    async def shutdown(self, stack: contextlib.AsyncExitStack | None = None) -> None:
        """Undo :meth:`startup` in reverse order.

        Close group members (1001) so they leave groups and presence, disconnect the
        channel layer, close every other open socket (1001) and wait up to
        ``shutdown_timeout`` for their handlers, exit the ``lifespan`` context
        (``stack``), then run the shutdown hooks — each step even if the one before
        failed; the first error is raised at the end.
        """
        steps: list[Callable[[], Any]] = [
            self.ops.withdraw,
            self.channels.stop,
            self._close_open_sockets,
        ]
        if stack is not None:
            steps.append(stack.aclose)
        steps.extend(self._shutdown)
        steps.append(self.ops.stop)
        first_error: BaseException | None = None
        for step in steps:
            try:
                await maybe_await(step())
            except Exception as error:
                if first_error is None:
                    first_error = error
                else:
                    logger.exception("Shutdown step %r failed", step)
        if first_error is not None:
            raise first_error


def _log_fields(scope: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Structured log fields about a connection (see nexios.logs.LOG_FIELDS): its path
    and client, and ``fields`` (status, close_code, reason...)."""
    client = scope.get("client")
    found: dict[str, Any] = {"path": scope.get("path"), **fields}
    if client:
        found["client"] = f"{client[0]}:{client[1]}"
    return found


def _client_host(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def _refuse(ws: WebSocket, status: int, body: str | bytes) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError):
        await ws.deny(status, body)


async def _authenticate(auth: WSAuth, ws: WebSocket) -> bool:
    """Run the auth hook; True when admitted (``scope["user"]`` set), else refuse."""
    path = ws.scope["path"]
    try:
        user = await auth(ws)
    except AuthError as error:
        status, reason = error.status, error.reason
    except WebSocketDisconnect:
        return False
    except Exception:
        logger.exception(
            "WebSocket %s: auth hook %s raised; handshake refused (500)",
            path,
            getattr(auth, "__qualname__", type(auth).__name__),
            extra=_log_fields(ws.scope, status=500, reason="auth"),
        )
        await _refuse(ws, 500, "authentication unavailable")
        return False
    else:
        if user is not None:
            ws.scope["user"] = user
            return True
        status, reason = 401, "authentication required"
    logger.info(
        "WebSocket %s: authentication failed (%d): %s",
        path,
        status,
        reason,
        extra=_log_fields(ws.scope, status=status, reason="auth"),
    )
    await _refuse(ws, status, reason)
    return False


def _endpoint(route: WebsocketRoutes, ws: WebSocket, params: dict[str, Any]) -> Awaitable[None]:
    # Returns the handler's coroutine instead of awaiting it: no frame of its own.
    endpoint = endpoint_class(route.handler)
    if endpoint is not None:
        return endpoint().dispatch(ws)
    return route.handler(ws, **route.handler_kwargs(params))


async def _chain(
    middleware: list[WSMiddleware], ws: WebSocket, endpoint: Callable[[], Awaitable[None]]
) -> None:
    async def call(index: int) -> None:
        if index == len(middleware):
            await endpoint()
        else:
            await middleware[index](ws, lambda: call(index + 1))

    await call(0)


def _handler_name(route: WebsocketRoutes) -> str:
    return getattr(route.handler, "__qualname__", repr(route.handler))


async def _close_after_crash(
    route: WebsocketRoutes, ws: WebSocket, error: Exception, handlers: ExceptionHandlers
) -> None:
    state = ws.connection_state
    if state is WebSocketState.CONNECTING:
        # --- HTTP side: an exception handler (or HTTPException) may answer the handshake.
        response = await handlers.handshake_response(ws, error)
        if response is not None:
            logger.info(
                "WebSocket %s: %r before accept(); handshake refused (%d)",
                ws.scope["path"],
                error,
                response.status_code,
            )
            await _refuse(ws, response.status_code, response.body)
            return
        if ws.connection_state is not WebSocketState.CONNECTING:
            return  # the handler refused or closed the socket itself
        # --- end HTTP side ---
        logger.error(
            "WebSocket handler %s for %s raised before accept(): handshake refused (403)",
            _handler_name(route),
            ws.scope["path"],
            exc_info=error,
            extra=_log_fields(ws.scope, status=403, reason="handler"),
        )
        with contextlib.suppress(Exception):
            await ws.close(1011)
        return
    logger.error(
        "WebSocket handler %s for %s raised; closing with 1011",
        _handler_name(route),
        ws.scope["path"],
        exc_info=error,
        extra=_log_fields(ws.scope, close_code=1011),
    )
    if state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(1011)


def _sendable_close_code(code: int) -> int:
    """``code`` if a close frame may carry it (RFC 6455 7.4), else 1000."""
    if (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999:
        return code
    return 1000


async def _close_after_return(route: WebsocketRoutes, ws: WebSocket, code: int = 1000) -> None:
    state = ws.connection_state
    if state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect):
            await ws.close(code)
    elif state is WebSocketState.CONNECTING:
        logger.warning(
            "WebSocket handler %s for %s returned without calling accept(): handshake "
            "refused (403). Call `await ws.accept()` to accept the connection.",
            _handler_name(route),
            ws.scope["path"],
        )
        with contextlib.suppress(Exception):
            await ws.close(1000)


async def _run_cleanup(ws: WebSocket) -> None:
    callbacks = ws._cleanup
    if not callbacks:
        return
    ws._cleanup = None
    for callback in callbacks:
        try:
            await maybe_await(callback())
        except Exception:
            logger.exception("WebSocket cleanup callback %r failed", callback)
