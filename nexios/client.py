"""The Python client of the client protocol (``docs/protocol.md``), on ``websockets``.

>>> async with connect("ws://127.0.0.1:8000/connect") as client:
...     room = await client.subscribe("room")
...     await room.publish({"text": "hi"})
...     async for message in room:
...         print(message.seq, message.data)

The same semantics as the browser client (``clients/js/nexios.js``), for services,
scripts and tests. By itself it:

- reconnects after any close it may reconnect from, with jittered exponential backoff
  (each delay between half and all of ``min(max_delay, min_delay * 2**attempt)``);
- resubscribes every group in the one ``connect`` frame, each from its position
  (``since``, ``epoch``);
- delivers each saved message once, in seq order: duplicates are dropped, a gap holds
  later messages while ``history`` fills it; when messages are lost for good (history
  pruned, epoch changed, unfillable gap) ``on_recovered(Recovery(complete=False))`` is
  called and delivery goes on after the gap;
- watches the server's pings (no frame for ``ping`` + ``ping_grace`` seconds: the socket
  is replaced), times out commands (``timeout``: :class:`ProtocolError` 408), refreshes
  the token with ``get_token`` before it expires, keeps presence as snapshot + diffs
  (``subscription.members``), and publishes with an idempotency key, retried after a
  timeout, a lost connection or a temporary error (counted once by the server).

Bounds: a subscription queues at most ``max_queue`` undelivered messages (default
10,000); past it the oldest are dropped and ``on_recovered`` reports the gap
(``reason="overflow"``). Errors are :class:`~nexios.exceptions.ProtocolError` with the
protocol's codes, plus 408 (no reply in time) and 499 (the client was closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from nexios._utils import maybe_await
from nexios.exceptions import ProtocolError
from nexios.protocol import SUBPROTOCOL, reconnects

__all__ = [
    "CLOSED",
    "TEMPORARY",
    "TIMEOUT",
    "Client",
    "Message",
    "Recovery",
    "Subscription",
    "connect",
]

logger = logging.getLogger("nexios.client")

TIMEOUT = 408
"""Local error code: no reply (or no connection) within the command timeout."""
CLOSED = 499
"""Local error code: the client was closed, or stopped reconnecting."""
TEMPORARY = frozenset({TIMEOUT, 419, 429, 500, 503})
"""Codes after which a command is retried: timeout, token expired, too many requests,
internal, unavailable (also a lost connection)."""
_LOST = 503
_MAX_HISTORY = 1000

TokenSource = Callable[[], "str | Awaitable[str | None] | None"]


@dataclass(frozen=True, slots=True)
class Message:
    """A group's message. Saved messages have ``seq`` and ``epoch``; others None."""

    group: str
    data: Any
    seq: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a (re)subscription from a position came to, or why a position was lost.

    ``complete=False``: messages were missed for good; reload the group's state.
    ``reason``: ``"subscribe"``, ``"epoch"``, ``"gap"`` or ``"overflow"``.
    """

    complete: bool
    recovered: int
    reason: str


def _error(code: int, message: str) -> ProtocolError:
    return ProtocolError(code, message)


def _is_temporary(error: BaseException) -> bool:
    return isinstance(error, ProtocolError) and int(error.code) in TEMPORARY


def connect(
    url: str,
    *,
    token: str | None = None,
    get_token: TokenSource | None = None,
    timeout: float = 10.0,
    min_delay: float = 0.25,
    max_delay: float = 10.0,
    ping_grace: float = 10.0,
    retries: int = 3,
    headers: Mapping[str, str] | None = None,
    on_state: Callable[[str, int | None], Any] | None = None,
) -> Client:
    """A :class:`Client` for ``url``; ``async with connect(url) as client:`` connects.

    ``token`` (or ``get_token()``, sync or async, called before connecting and to
    refresh) goes in the ``connect`` frame. ``timeout`` bounds each command and the
    first connection; ``retries`` is how often a command is retried after a temporary
    failure; ``on_state(state, close_code)`` hears ``connecting``, ``connected``,
    ``disconnected`` and ``closed``.
    """
    return Client(
        url,
        token=token,
        get_token=get_token,
        timeout=timeout,
        min_delay=min_delay,
        max_delay=max_delay,
        ping_grace=ping_grace,
        retries=retries,
        headers=headers,
        on_state=on_state,
    )


class Client:
    """One protocol connection that keeps itself connected (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenSource | None = None,
        timeout: float = 10.0,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        ping_grace: float = 10.0,
        retries: int = 3,
        headers: Mapping[str, str] | None = None,
        on_state: Callable[[str, int | None], Any] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.ping_grace = ping_grace
        self.retries = retries
        self.headers = dict(headers or {})
        self.on_state = on_state
        self.state = "disconnected"
        """``disconnected``, ``connecting``, ``connected`` or ``closed``."""
        self.client_id: str | None = None
        """This connection's id (its presence id), once connected."""
        self.subscriptions: dict[str, Subscription] = {}
        self.reconnects = 0
        """Connections made after the first (for tests and monitoring)."""
        self._token = token
        self._get_token = get_token
        self._ws: ClientConnection | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._connected = asyncio.Event()
        self._stopped: ProtocolError | None = None
        self._stop_event = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._ping = 0.0
        self._attempt = 0
        self._connects = 0
        self._disconnect: dict[str, Any] | None = None
        self._watch: asyncio.Timeout | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect; returns once connected (ProtocolError 408 after ``timeout``)."""
        if self._runner is None or self._runner.done():
            self._stopped = None
            self._stop_event.clear()
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"nexios-client {self.url}"
            )
        await self._wait_connected()

    async def close(self) -> None:
        """Close for good: pending commands and subscriptions end with 499."""
        self._stop(_error(CLOSED, "the client was closed"), "closed")
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def drop(self) -> None:
        """Close the socket as if the network dropped it; the client reconnects."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(4000, "dropped by the client")

    def _stop(self, error: ProtocolError, state: str) -> None:
        self._stopped = error
        self._stop_event.set()
        self._connected.clear()
        self._set_state(state)
        self._fail_pending(error)
        for sub in list(self.subscriptions.values()):
            sub._end(error)
        self.subscriptions.clear()
        if self._refresher is not None:
            self._refresher.cancel()

    def _set_state(self, state: str, code: int | None = None) -> None:
        if self.state == state:
            return
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state, code)
            except Exception:
                logger.exception("on_state callback failed")

    async def _wait_connected(self) -> None:
        if self._stopped is not None:
            raise self._stopped
        if self._connected.is_set():
            return
        stopped = asyncio.ensure_future(self._stop_event.wait())
        connected = asyncio.ensure_future(self._connected.wait())
        try:
            done, _ = await asyncio.wait(
                {stopped, connected}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            connected.cancel()
        if self._stopped is not None:
            raise self._stopped
        if not done:
            raise _error(TIMEOUT, f"not connected to {self.url} within {self.timeout:g} s")

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        while self._stopped is None:
            self._set_state("connecting")
            code = await self._session()
            if self._stopped is not None:
                return
            stop = self._disconnect
            self._disconnect = None
            again = stop.get("reconnect", True) if stop else reconnects(code)
            if not again:
                code = int(stop.get("code", code)) if stop else code
                reason = stop.get("reason", "") if stop else f"closed with {code}"
                self._stop(_error(code, f"disconnected by the server: {reason}"), "disconnected")
                return
            await asyncio.sleep(self._delay(self._attempt))
            self._attempt += 1

    def _delay(self, attempt: int) -> float:
        ceiling = min(float(self.max_delay), self.min_delay * 2.0**attempt)
        return ceiling / 2 + random.random() * ceiling / 2

    async def _session(self) -> int:
        """One socket from open to close; returns its close code."""
        try:
            if self._token is None and self._get_token is not None:
                self._token = await maybe_await(self._get_token())
            ws = await ws_connect(
                self.url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                additional_headers=self.headers or None,
                open_timeout=self.timeout,
                compression=None,
                max_size=None,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                self._stop(
                    _error(status, f"the server refused the handshake ({status})"), "disconnected"
                )
                return 1006
            logger.debug("Connecting to %s failed: %s", self.url, error)
            return 1006
        except (OSError, InvalidHandshake, TimeoutError) as error:
            logger.debug("Connecting to %s failed: %s", self.url, error)
            return 1006
        except InvalidURI as error:
            self._stop(_error(400, str(error)), "disconnected")
            return 1006
        self._ws = ws
        self._ping = 0.0
        try:
            opened = asyncio.get_running_loop().create_task(self._open(ws))
            code = await self._read(ws)
            opened.cancel()
            return code
        finally:
            self._ws = None
            self._connected.clear()
            self._fail_pending(_error(_LOST, "connection lost"))
            for sub in self.subscriptions.values():
                sub._lost()
            if self._refresher is not None:
                self._refresher.cancel()
            with contextlib.suppress(Exception):
                await ws.close()

    async def _read(self, ws: ClientConnection) -> int:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(None) as watch:
                    self._watch = watch
                    self._rewatch(loop)
                    text = await ws.recv()
            except TimeoutError:
                logger.info("No frame from %s within ping + grace: reconnecting", self.url)
                return 4000
            except ConnectionClosed as closed:
                received = closed.rcvd
                return received.code if received is not None else 1006
            self._on_frame(text)

    def _rewatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """No frame for the server's ping interval + grace: the socket is dead."""
        watch = self._watch
        if watch is not None and self._ping > 0:
            watch.reschedule(loop.time() + self._ping + self.ping_grace)

    async def _open(self, ws: ClientConnection) -> None:
        groups = {name: sub._begin() for name, sub in self.subscriptions.items()}
        frame: dict[str, Any] = {"type": "connect", "groups": groups}
        if self._token is not None:
            frame["token"] = self._token
        try:
            result = await self._request(frame)
        except ProtocolError as error:
            if ws is not self._ws:
                return
            code = int(error.code)
            if code == 419:
                self._token = None
            elif code not in TEMPORARY:
                self._disconnect = {"reconnect": False, "reason": error.message}
            await ws.close(4000 if code in TEMPORARY else 4500)
            return
        if ws is not self._ws:
            return
        self.client_id = result.get("client")
        if self._connects:
            self.reconnects += 1
        self._connects += 1
        self._attempt = 0
        self._ping = float(result.get("ping") or 0)
        self._rewatch(asyncio.get_running_loop())
        self._schedule_refresh(result.get("expires"))
        self._connected.set()
        self._set_state("connected")
        results = result.get("groups") or {}
        for name, sub in list(self.subscriptions.items()):
            if name in results:
                sub._result(results[name])
            else:
                sub._send()

    def _on_frame(self, text: str | bytes) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            logger.warning("The server sent a frame that is not JSON: %r", text[:80])
            return
        if not isinstance(frame, dict):
            return
        command_id = frame.get("id")
        if command_id is not None:
            future = self._pending.pop(command_id, None)
            if future is None or future.done():
                return
            error = frame.get("error")
            if error is not None:
                future.set_exception(_error(error.get("code", 500), error.get("message", "")))
            else:
                future.set_result(frame.get("result") or {})
            return
        kind = frame.get("type")
        if kind == "ping":
            ws = self._ws
            if ws is not None:
                asyncio.get_running_loop().create_task(self._pong(ws))
        elif kind == "disconnect":
            self._disconnect = frame
            if frame.get("code") == 4001:
                self._token = None
        elif kind == "error":
            logger.warning(
                "The server refused a frame: %s %s", frame.get("code"), frame.get("message")
            )
        else:
            sub = self.subscriptions.get(frame.get("group", ""))
            if sub is not None:
                sub._push(frame)

    @staticmethod
    async def _pong(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send('{"type":"pong"}')

    def _fail_pending(self, error: ProtocolError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # ------------------------------------------------------------------ tokens

    def _schedule_refresh(self, expires: float | None) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if expires is None or self._get_token is None:
            return
        delay = max(0.0, expires - min(expires / 2, 30.0))
        self._refresher = asyncio.get_running_loop().create_task(self._refresh(delay))

    async def _refresh(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while self.state == "connected":
            try:
                assert self._get_token is not None
                self._token = await maybe_await(self._get_token())
                result = await self._request({"type": "refresh", "token": self._token})
            except ProtocolError as error:
                if int(error.code) == 401:
                    return  # the server closes with 4500
                await asyncio.sleep(self._delay(2))
                continue
            except Exception:
                logger.exception("get_token failed; retrying")
                await asyncio.sleep(self._delay(2))
                continue
            self._refresher = None
            self._schedule_refresh(result.get("expires"))
            return

    # ------------------------------------------------------------------ commands

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send one command on the open socket; its result (ProtocolError otherwise)."""
        ws = self._ws
        if ws is None:
            raise _error(_LOST, "not connected")
        self._next_id += 1
        command_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            await ws.send(orjson.dumps({"id": command_id, **frame}).decode())
            async with asyncio.timeout(self.timeout):
                return await future
        except ConnectionClosed:
            raise _error(_LOST, "connection lost") from None
        except TimeoutError:
            raise _error(
                TIMEOUT, f"no reply to {frame['type']} within {self.timeout:g} s"
            ) from None
        finally:
            self._pending.pop(command_id, None)

    async def _call(self, frame: dict[str, Any], retries: int | None = None) -> dict[str, Any]:
        """A command for the app: waits for the connection, retries temporary failures
        with the same frame (so a publish keeps its idempotency key)."""
        left = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                await self._wait_connected()
                return await self._request(frame)
            except ProtocolError as error:
                if left <= 0 or not _is_temporary(error) or self._stopped is not None:
                    raise
            left -= 1
            await asyncio.sleep(self._delay(attempt))
            attempt += 1

    async def subscribe(
        self,
        group: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        presence: bool = False,
        on_recovered: Callable[[Recovery], Any] | None = None,
        on_presence: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
        max_queue: int = 10_000,
    ) -> Subscription:
        """Subscribe to ``group`` (from ``since`` in ``epoch``); returns once subscribed.

        The subscription resubscribes by itself after reconnects. Raises ProtocolError
        when refused (403 forbidden, 404 unknown group...).
        """
        if self._stopped is not None:
            raise self._stopped
        if group in self.subscriptions:
            raise ValueError(
                f"already subscribed to {group!r}: use client.subscriptions[{group!r}]"
            )
        sub = Subscription(
            self, group, since, epoch, presence, on_recovered, on_presence, max_queue
        )
        self.subscriptions[group] = sub
        if self.state == "connected":
            sub._send()
        elif self._runner is None:
            await self.start()
        try:
            await sub.ready()
        except BaseException:
            if self.subscriptions.get(group) is sub:
                del self.subscriptions[group]
            raise
        return sub

    async def publish(self, group: str, data: Any, *, key: str | None = None) -> dict[str, Any]:
        """Publish ``data`` to ``group`` (subscribed or not): ``{"seq", "epoch"}`` when saved.

        Retried after temporary failures with one idempotency key (``key`` or a random
        one), so the server counts it once.
        """
        frame = {
            "type": "publish",
            "group": group,
            "data": data,
            "idempotency_key": key or secrets.token_hex(12),
        }
        return await self._call(frame)

    async def history(
        self,
        group: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        epoch: str | None = None,
    ) -> dict[str, Any]:
        """Saved messages: ``{"messages": [{"seq", "data"}], "epoch", "seq", "complete"}``."""
        frame: dict[str, Any] = {"type": "history", "group": group}
        for name, value in (("since", since), ("limit", limit), ("epoch", epoch or None)):
            if value is not None:
                frame[name] = value
        return await self._call(frame)

    async def presence(self, group: str) -> list[dict[str, Any]]:
        """The group's members now: ``[{"id", "info"}]``."""
        members: list[dict[str, Any]] = (await self._call({"type": "presence", "group": group}))[
            "members"
        ]
        return members

    async def ping(self) -> None:
        """A round trip to the server."""
        await self._call({"type": "ping"}, retries=0)


class Subscription:
    """One group on the connection: an async iterator of its :class:`Message` s."""

    def __init__(
        self,
        client: Client,
        group: str,
        since: int | None,
        epoch: str | None,
        presence: bool,
        on_recovered: Callable[[Recovery], Any] | None,
        on_presence: Callable[[dict[str, Any], dict[str, Any]], Any] | None,
        max_queue: int,
    ) -> None:
        self.client = client
        self.group = group
        self.seq: int | None = since
        """The last seq delivered (None before the first subscribe result)."""
        self.epoch: str | None = epoch
        self.presence_wanted = presence
        self.members: dict[str, Any] = {}
        """Member id -> info, when subscribed with ``presence=True``."""
        self.state = "subscribing"
        self.on_recovered = on_recovered
        self.on_presence = on_presence
        self.max_queue = max_queue
        self._queue: deque[Message] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[Subscription] = asyncio.get_running_loop().create_future()
        self._ended: ProtocolError | None = None
        self._early: list[dict[str, Any]] = []
        self._held: dict[int, dict[str, Any]] = {}
        self._recovering: asyncio.Task[None] | None = None
        self._gen = 0
        self._tries = 0

    # ------------------------------------------------------------------ for the app

    async def ready(self) -> Subscription:
        """Wait until subscribed (raises if refused)."""
        return await asyncio.shield(self._ready)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get()
        except ProtocolError as error:
            if int(error.code) == CLOSED:  # unsubscribed, or the client was closed
                raise StopAsyncIteration from None
            raise

    async def get(self, timeout: float | None = None) -> Message:  # noqa: ASYNC109
        """The next message (ProtocolError 408 after ``timeout`` seconds)."""
        while not self._queue:
            if self._ended is not None:
                raise self._ended
            wakeup = self._wakeup = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await wakeup
            except TimeoutError:
                raise _error(TIMEOUT, f"no message in {self.group!r} within {timeout} s") from None
        return self._queue.popleft()

    def pending(self) -> int:
        """Messages received and not read yet."""
        return len(self._queue)

    async def publish(self, data: Any, *, key: str | None = None) -> dict[str, Any]:
        """Publish to this group (see :meth:`Client.publish`)."""
        return await self.client.publish(self.group, data, key=key)

    async def history(
        self, *, since: int | None = None, limit: int | None = None, epoch: str | None = None
    ) -> dict[str, Any]:
        return await self.client.history(self.group, since=since, limit=limit, epoch=epoch)

    async def presence(self) -> list[dict[str, Any]]:
        return await self.client.presence(self.group)

    async def unsubscribe(self) -> None:
        """Leave the group; iteration ends."""
        client = self.client
        if client.subscriptions.get(self.group) is self:
            del client.subscriptions[self.group]
            if client.state == "connected":
                with contextlib.suppress(ProtocolError):
                    await client._request({"type": "unsubscribe", "group": self.group})
        self._end(_error(CLOSED, "unsubscribed"))

    # ------------------------------------------------------------------ driven by the client

    def _begin(self) -> dict[str, Any]:
        self._tries += 1
        self.state = "subscribing"
        self._early = []
        options: dict[str, Any] = {}
        if self.seq is not None:
            options["since"] = self.seq
        if self.epoch:
            options["epoch"] = self.epoch
        if self.presence_wanted:
            options["presence"] = True
        return options

    def _send(self) -> None:
        frame = {"type": "subscribe", "group": self.group, **self._begin()}
        tries = self._tries
        task = asyncio.get_running_loop().create_task(self.client._request(frame))

        def done(task: asyncio.Task[dict[str, Any]]) -> None:
            if tries != self._tries or task.cancelled():
                return
            error = task.exception()
            if error is None:
                self._result(task.result())
            elif isinstance(error, ProtocolError):
                self._result({"error": {"code": int(error.code), "message": error.message}})

        task.add_done_callback(done)

    def _resend(self) -> None:
        tries = self._tries

        def again() -> None:
            if tries == self._tries and self.client.state == "connected":
                self._send()

        asyncio.get_running_loop().call_later(0.5 + random.random(), again)

    def _result(self, result: dict[str, Any]) -> None:
        if self.state != "subscribing" or self.client.subscriptions.get(self.group) is not self:
            return
        error = result.get("error")
        if error is not None:
            code = int(error.get("code", 500))
            if self.client.state != "connected":
                return  # the reconnect resubscribes
            if code == TIMEOUT:
                asyncio.get_running_loop().create_task(self.client.drop())
                return
            if code in TEMPORARY:
                self._resend()
                return
            self._unsubscribed(code, error.get("message", "refused"))
            return
        since = self.seq
        self.epoch = result.get("epoch") or None
        complete = bool(result.get("complete", True))
        self.seq = since if since is not None and complete else int(result.get("seq", 0))
        self._reset()
        self.state = "subscribed"
        if "presence" in result:
            self.members = {m["id"]: m.get("info") for m in result["presence"]}
            self._presence_changed({"type": "sync"})
        if since is not None:
            self._recovered(Recovery(complete, int(result.get("recovered", 0)), "subscribe"))
        if not self._ready.done():
            self._ready.set_result(self)
        early, self._early = self._early, []
        for push in early:
            self._push(push)

    def _push(self, push: dict[str, Any]) -> None:
        kind = push.get("type")
        if kind == "message" and push.get("seq") is None:
            self._deliver(push)  # not saved: as it comes
            return
        if self.state != "subscribed":
            if self.state == "subscribing":
                self._early.append(push)
            return
        if kind == "message":
            self._take(push)
        elif kind == "join":
            entry = push.get("member") or {}
            self.members[str(entry.get("id"))] = entry.get("info")
            self._presence_changed(push)
        elif kind == "leave":
            entry = push.get("member") or {}
            self.members.pop(str(entry.get("id")), None)
            self._presence_changed(push)
        elif kind == "resync":
            self._resync(
                push.get("epoch") or None, int(push.get("seq", 0)), push.get("reason", "gap")
            )
        elif kind == "unsubscribed":
            if push.get("resubscribe"):
                self.state = "subscribing"
                self._resend()
            else:
                self._unsubscribed(int(push.get("code", 410)), push.get("reason", "removed"))

    def _lost(self) -> None:
        if self.state == "subscribed":
            self.state = "subscribing"
        self._reset()

    def _unsubscribed(self, code: int, reason: str) -> None:
        if self.client.subscriptions.get(self.group) is self:
            del self.client.subscriptions[self.group]
        self._end(_error(code, reason))

    def _end(self, error: ProtocolError) -> None:
        self.state = "unsubscribed"
        self._reset()
        self._ended = error
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: subscribe() re-raises it
        self._wake()

    # ------------------------------------------------------------------ ordering

    def _take(self, message: dict[str, Any]) -> None:
        epoch, seq = message.get("epoch"), int(message["seq"])
        if epoch and epoch != self.epoch:
            if self.epoch:
                self._resync(epoch, seq - 1, "epoch")
            else:
                self.epoch = epoch  # the group's first numbering: nothing was lost
        position = self.seq or 0
        if seq <= position or seq in self._held:
            return  # a duplicate
        self._held[seq] = message
        if len(self._held) > _MAX_HISTORY:
            self._resync(self.epoch, min(self._held) - 1, "gap")
            return
        self._drain()

    def _drain(self, recover: bool = True) -> None:
        held = self._held
        while True:
            following = held.pop((self.seq or 0) + 1, None)
            if following is None:
                break
            self.seq = int(following["seq"])
            self._deliver(following)
        if recover and held and (self._recovering is None or self._recovering.done()):
            self._recovering = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        gen = self._gen
        position = self.seq or 0
        first = min(self._held)
        limit = min(first - position - 1, _MAX_HISTORY)
        page: dict[str, Any] | None = None
        with contextlib.suppress(ProtocolError):
            page = await self.client.history(
                self.group, since=position, limit=limit, epoch=self.epoch
            )
        if gen != self._gen:
            return
        filled = bool(page and page.get("complete") and page.get("epoch") == self.epoch)
        if page is not None and filled:
            current = self.seq or 0  # messages may have arrived meanwhile
            for entry in page["messages"]:
                if entry["seq"] > current:
                    self._held[entry["seq"]] = {
                        "type": "message",
                        "group": self.group,
                        "epoch": page["epoch"],
                        **entry,
                    }
        before = self.seq
        self._drain(recover=False)
        if page is not None and filled and len(page["messages"]) >= limit and self.seq != before:
            self._drain()
        elif self._held:
            self._resync(self.epoch, min(self._held) - 1, "gap")

    def _resync(self, epoch: str | None, seq: int, reason: str) -> None:
        self._gen += 1
        if epoch != self.epoch:
            self._held.clear()
        self.epoch = epoch
        self.seq = seq
        for key in [key for key in self._held if key <= seq]:
            del self._held[key]
        self._recovered(Recovery(False, 0, reason))
        self._drain()

    def _reset(self) -> None:
        self._gen += 1
        self._held.clear()
        self._recovering = None

    def _deliver(self, push: dict[str, Any]) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            queue.popleft()
            self._recovered(Recovery(False, 0, "overflow"))
        queue.append(Message(self.group, push.get("data"), push.get("seq"), push.get("epoch")))
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def _recovered(self, recovery: Recovery) -> None:
        if self.on_recovered is not None:
            try:
                self.on_recovered(recovery)
            except Exception:
                logger.exception("on_recovered callback failed")

    def _presence_changed(self, change: dict[str, Any]) -> None:
        if self.on_presence is not None:
            try:
                self.on_presence(self.members, change)
            except Exception:
                logger.exception("on_presence callback failed")
