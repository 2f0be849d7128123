"""One pub/sub connection to one Redis server, and the channels it must carry.

The Redis layer has one :class:`Link` (``SUBSCRIBE``); the Redis Cluster layer has one per
primary, with sharded pub/sub (``SSUBSCRIBE``, one channel per command since a command's
channels must share a slot).

A link's reader task reads the connection and calls ``on_message`` synchronously, in the
order Redis delivers. Concurrent ``subscribe`` calls are coalesced (consecutive commands
go out in one write); a call for a channel already being subscribed waits for that
confirmation. The reader PINGs after ``ping_interval`` of silence, so a frozen server is
noticed as surely as a dead one, then reconnects with exponential backoff (0.05 s
doubling to 2 s, with jitter) and subscribes every wanted channel again; ``on_up`` says
when it is back with every channel confirmed.

Sharded links also learn when the server stops serving a channel: its slot moved to
another node (Redis drops the subscription with an unsolicited ``sunsubscribe``), or a
``SSUBSCRIBE`` was answered ``MOVED``. ``on_moved`` then names the channel, which the
link no longer carries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import AskError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexios._redis import LINK_ERRORS, LoopClock, bounded, describe_error

__all__ = ["Link"]

logger = logging.getLogger("nexios.layers.redis")

BACKOFF_BASE = 0.05
BACKOFF_MAX = 2.0
CHANNELS_PER_COMMAND = 500
"""Channels of one ``SUBSCRIBE`` (a sharded link sends one per command)."""
COMMANDS_PER_WRITE = 500

_READER_ERRORS: tuple[type[BaseException], ...] = (*LINK_ERRORS, RedisError)

# A pub/sub command the server has to confirm: (command, channel, future of the caller).
_Pending = tuple[bytes, bytes, "asyncio.Future[bool] | None"]


class Link:
    """A pub/sub connection that keeps ``channels`` subscribed (see the module docstring).

    ``on_up(link, back)``: connected with every channel confirmed (``back``: not the
    first time). ``on_down(link)``: the connection was lost; what is published meanwhile
    is not received. ``on_moved(link, channel)``: the server no longer serves the
    channel (sharded links only).
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], AbstractConnection],
        *,
        sharded: bool,
        timeout: float,
        ping_interval: float,
        on_message: Callable[[bytes, bytes], None],
        on_up: Callable[[Link, bool], None],
        on_down: Callable[[Link], None],
        on_moved: Callable[[Link, bytes], None] | None = None,
    ) -> None:
        self.name = name
        self._connect = connect
        self.sharded = sharded
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._on_message = on_message
        self._on_up = on_up
        self._on_down = on_down
        self._on_moved = on_moved
        prefix = b"S" if sharded else b""
        self._subscribe, self._unsubscribe = prefix + b"SUBSCRIBE", prefix + b"UNSUBSCRIBE"
        self._message = b"smessage" if sharded else b"message"
        self._per_command = 1 if sharded else CHANNELS_PER_COMMAND

        self.channels: set[bytes] = set()
        """The channels this link must carry, confirmed or not."""
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._down_since_monotonic: float | None = None
        self._was_up = False
        self._up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        # Serialises writes on the connection (reader PINGs, (un)subscribes).
        self._send_lock = asyncio.Lock()
        # Channels the server confirmed on the current connection.
        self._active: set[bytes] = set()
        # Per channel, the latest SUBSCRIBE not yet confirmed: later calls wait for it.
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        # Commands not yet sent, then sent and awaiting confirmation (Redis confirms
        # each channel, in order).
        self._outgoing: list[_Pending] = []
        self._expected: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        # Confirmations still due for the re-subscription after a (re)connect.
        self._resubscribing = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader task (connects, then keeps reconnecting)."""
        if self._reader is None:
            self._was_up = False
            self._reader = asyncio.get_running_loop().create_task(
                self._run(), name=f"nexios-redis-reader-{self.name}"
            )

    async def wait_up(self) -> bool:
        """Wait (bounded by the timeout) until connected; False if it did not happen."""
        try:
            async with bounded(self._timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop the reader (bounded) and close the connection, which unsubscribes all."""
        self.channels.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader}, timeout=self._timeout)
        self._release_waiters()
        self.connected = False
        self._up.clear()
        self.down_since = self._down_since_monotonic = None

    # -- channels ----------------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> bool:
        """Carry ``channel``; True once the server confirmed it.

        False when the link is down (the channel is subscribed when it is back) or the
        server refused it (``on_moved`` was told).
        """
        waiter = self.want(channel)
        if waiter is None:
            return self._conn is not None
        # shield: one caller giving up must not cancel the others' confirmation
        return await asyncio.shield(waiter)

    def want(self, channel: bytes) -> asyncio.Future[bool] | None:
        """Carry ``channel`` from now on; the confirmation to wait for, or None when there
        is none (confirmed already, or the link is down and subscribes it when back)."""
        wanted = channel in self.channels
        self.channels.add(channel)
        if self._conn is None:
            return None
        waiter = self._pending.get(channel)
        if waiter is None:
            if wanted and channel in self._active:
                return None
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
            self._send(self._subscribe, channel, waiter)
        return waiter

    def unsubscribe(self, channel: bytes) -> None:
        """Stop carrying ``channel`` at once; tell the server if connected."""
        self.channels.discard(channel)
        # A later subscribe must send its own SUBSCRIBE, after this UNSUBSCRIBE.
        self._pending.pop(channel, None)
        if self._conn is not None:
            self._send(self._unsubscribe, channel, None)

    def forget(self, channel: bytes) -> None:
        """Stop carrying a channel the server dropped already (its slot moved)."""
        self.channels.discard(channel)
        waiter = self._pending.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    def carries(self, channel: bytes) -> bool:
        """True when the server confirmed ``channel`` on the current connection."""
        return channel in self._active

    def _send(self, command: bytes, channel: bytes, waiter: asyncio.Future[bool] | None) -> None:
        self._outgoing.append((command, channel, waiter))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="nexios-redis-subscribe"
            )

    async def _flush(self) -> None:
        """Send the queued (un)subscribes, consecutive ones of a kind as one command."""
        try:
            async with self._send_lock:
                while self._outgoing:
                    batch, self._outgoing = self._outgoing, []
                    conn = self._conn
                    if conn is None:
                        return  # the link went down; the reconnect subscribes every channel
                    if not await self._write(conn, batch):
                        return  # went down meanwhile; the reconnect redoes every channel
        except LINK_ERRORS:
            pass  # the reader notices the broken link and re-subscribes every channel
        finally:
            self._flusher = None

    async def _write(self, conn: AbstractConnection, batch: list[_Pending]) -> bool:
        """Send ``batch`` on ``conn`` (False if ``conn`` is no longer the link's)."""
        commands = list(_commands(batch, self._per_command))
        for start in range(0, len(commands), COMMANDS_PER_WRITE):
            if self._conn is not conn:
                return False
            chunk = commands[start : start + COMMANDS_PER_WRITE]
            for command in chunk:
                self._expected.extend(command)
            packed = conn.pack_commands(
                [(command[0][0], *(channel for _, channel, _ in command)) for command in chunk]
            )
            async with bounded(self._timeout):
                await conn.send_packed_command(packed, check_health=False)
        return True

    def _confirmed(self, kind: bytes, channel: bytes) -> None:
        """A ``(s)subscribe``/``(s)unsubscribe`` reply: settle the call that sent it, or,
        for an ``sunsubscribe`` nobody asked for, learn that the server dropped it."""
        head = self._expected[0] if self._expected else None
        unsubscribed = kind.upper() == self._unsubscribe
        if head is None or (unsubscribed and (head[0], head[1]) != (self._unsubscribe, channel)):
            self._active.discard(channel)
            if unsubscribed and channel in self.channels:
                self._moved(channel)
            return
        # Redis confirms every channel of every command, in order: this is the oldest.
        self._expected.popleft()
        self._settle_resubscription()
        if unsubscribed:
            self._active.discard(channel)
            return
        self._active.add(channel)
        waiter = head[2]
        if waiter is not None:
            if self._pending.get(channel) is waiter:
                del self._pending[channel]
            if not waiter.done():
                waiter.set_result(True)

    def _refused(self, error: ResponseError) -> None:
        """The server answered a command with an error (``MOVED``: not served here)."""
        if not self._expected:
            return
        command, channel, waiter = self._expected[0]
        if isinstance(error, AskError) and key_slot(channel) != error.slot_id:
            return  # the answer to an unsubscribe already settled by the server's push
        self._expected.popleft()
        self._settle_resubscription()
        if command == self._unsubscribe:
            return
        if waiter is not None and self._pending.get(channel) is waiter:
            del self._pending[channel]
        if channel in self.channels:
            logger.debug("Redis at %s refused channel %r: %s", self.name, channel, error)
            self._moved(channel)
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    def _moved(self, channel: bytes) -> None:
        self.forget(channel)
        if self._on_moved is not None:
            self._on_moved(self, channel)

    def _settle_resubscription(self) -> None:
        if self._resubscribing:
            self._resubscribing -= 1
            if not self._resubscribing:
                self._link_up()

    def _release_waiters(self) -> None:
        """The link is gone: pending (un)subscribes end; the reconnect redoes every one."""
        waiters = [*self._pending.values(), *(w for _, _, w in self._expected)]
        waiters += [w for _, _, w in self._outgoing]
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_result(False)
        self._pending.clear()
        self._expected.clear()
        self._outgoing.clear()
        self._active.clear()
        self._resubscribing = 0

    # -- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_BASE
        while True:
            conn: AbstractConnection | None = None
            try:
                conn = self._connect()
                await self._open(conn)
                await self._listen(conn)
            except _READER_ERRORS as exc:
                if self.connected:
                    delay = BACKOFF_BASE
                self._link_down(exc)
            except Exception as exc:  # a bug must not silently end cross-process delivery
                logger.exception("Redis pub/sub reader for %s failed; reconnecting", self.name)
                if self.connected:
                    delay = BACKOFF_BASE
                self._link_down(exc)
            finally:
                self._conn = None
                if conn is not None:
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _open(self, conn: AbstractConnection) -> None:
        async with bounded(self._timeout):
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("PING", check_health=False)
            await conn.read_response()
        async with self._send_lock:
            # From here subscribe() queues its command (sent after these); a channel it
            # added before is in the snapshot below.
            self._conn = conn
            self._expected.clear()
            channels = list(self.channels)
            self._resubscribing = len(channels)
            await self._write(conn, [(self._subscribe, channel, None) for channel in channels])
        if not channels:
            self._link_up()

    async def _listen(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        clock = LoopClock.of(loop)
        last_reply = loop.time()
        ping_sent: float | None = None
        busy_at_ping = 0.0
        try:
            while True:
                now = loop.time()
                if ping_sent is None:
                    wait = last_reply + self._ping_interval - now
                    if wait <= 0:
                        async with self._send_lock, bounded(self._timeout):
                            await conn.send_command("PING", check_health=False)
                        ping_sent, busy_at_ping = now, clock.busy
                        clock.acquire()
                        continue
                else:
                    # Only time the loop was free counts: a busy loop may not have read
                    # a PONG that is already here.
                    waited = now - ping_sent - (clock.busy - busy_at_ping)
                    wait = self._timeout - waited
                    if wait <= 0:
                        raise RedisTimeoutError(f"no answer to PING within {self._timeout:g} s")
                try:
                    reply = await conn.read_response(timeout=wait, disconnect_on_error=False)
                except ResponseError as error:  # an error reply: the connection is fine
                    last_reply = loop.time()
                    self._refused(error)
                    continue
                if reply is None:  # the read timed out: PING, or give up, above
                    continue
                last_reply = loop.time()
                if ping_sent is not None:
                    ping_sent = None
                    clock.release()
                self._handle(reply)
        finally:
            if ping_sent is not None:
                clock.release()

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # PONG
        kind = reply[0]
        if kind == self._message:
            self._on_message(reply[1], reply[2])
        elif kind.upper() in (self._subscribe, self._unsubscribe):
            self._confirmed(kind, reply[1])

    def _link_up(self) -> None:
        self.connected = True
        self._up.set()
        back = self._was_up
        self._was_up = True
        if self._down_since_monotonic is not None:
            outage = asyncio.get_running_loop().time() - self._down_since_monotonic
            self.reconnects += 1
            logger.info(
                "Redis pub/sub link to %s is back after %.2f s; re-subscribed %d channel(s)",
                self.name,
                outage,
                len(self.channels),
            )
        self.down_since = None
        self._down_since_monotonic = None
        self._on_up(self, back)

    def _link_down(self, exc: BaseException) -> None:
        was_connected = self.connected
        self.connected = False
        self._up.clear()
        self.last_error = describe_error(exc)
        self._release_waiters()
        if self._down_since_monotonic is None:
            self.down_since = time.time()
            self._down_since_monotonic = asyncio.get_running_loop().time()
            logger.warning(
                "Redis pub/sub link to %s is down (%s): reconnecting; messages other "
                "processes publish meanwhile are not received",
                self.name,
                self.last_error,
            )
        if was_connected:
            self._on_down(self)


def _commands(batch: list[_Pending], per_command: int) -> Iterator[list[_Pending]]:
    """Consecutive (un)subscribes of one kind, at most ``per_command`` channels each."""
    run: list[_Pending] = []
    for item in batch:
        if run and (item[0] != run[0][0] or len(run) >= per_command):
            yield run
            run = []
        run.append(item)
    if run:
        yield run
