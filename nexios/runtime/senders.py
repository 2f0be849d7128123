"""One :class:`Sender` per member: its bounded outgoing queue, flush, order and eviction.

Fan-out never awaits a member: the runtime frames a message once per payload type and
calls :meth:`Sender.put` on each member's sender, which queues it and returns. Two
implementations, chosen per connection by what the server offers:

- :class:`AsgiSender` (any ASGI server): a queue of ASGI ``websocket.send`` messages
  drained by one task per member.
- :class:`FrameSender` (``nexios run``, whose protocol offers the ``nexios.frames``
  sink): a queue of pre-built WebSocket frames, written straight to the transport once
  per event-loop iteration (a burst of broadcasts costs one ``write`` per member), as
  long as the transport's buffer is under :data:`HIGH_WATER`; the rest waits until the
  peer reads.

Both apply the same :class:`OutboxLimits` and :class:`OverflowPolicy`. When a member's
queue is full (``max_messages``, or ``max_bytes`` counting what the transport still
buffers):

- ``EVICT`` (default): the member is closed with **1013 (Try Again Later)** and leaves
  its groups: it did nothing wrong by protocol, it was too slow; it may reconnect and
  recover from history.
- ``DROP_OLDEST``: the oldest queued messages are dropped to make room (counted).
- ``DROP_NEWEST``: the new message is dropped (counted).

A member that makes no progress for ``send_timeout`` (a send that does not complete, or
a transport buffer the peer does not drain below :data:`LOW_WATER`) is evicted whatever
the policy: it is not coming back. The runtime checks deadlines four times a second, so
the send path reads no clock.

Order: a direct ``ws.send_*`` on a member's socket first waits for the broadcasts
queued before it (:meth:`Sender.drain`), so a member receives messages in the order the
program sent them.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nexios.connection import MemberConnection
from nexios.exceptions import ConfigurationError
from nexios.framing import Frame

__all__ = [
    "DEADLINE_MISSED",
    "EVICTION_CLOSE_CODE",
    "HIGH_WATER",
    "AsgiSender",
    "DropCounter",
    "FlushScheduler",
    "FrameSender",
    "FrameSink",
    "OutboxLimits",
    "OverflowPolicy",
    "Sender",
    "SenderFailure",
    "sender_for",
]

EVICTION_CLOSE_CODE = 1013
"""Close code sent to a member evicted for being too slow."""

DEADLINE_MISSED = "send deadline missed: client too slow"
"""The reason given when a member is evicted for making no progress for ``send_timeout``
(the other reason: its outbox was full)."""

HIGH_WATER = 256 * 1024
"""Bytes a frame sender lets the transport buffer before it keeps frames back."""

LOW_WATER = 64 * 1024
"""A frame sender's peer is keeping up while less than this is queued for it (held
frames and the transport's buffer); above it for ``send_timeout`` without once getting
below, the member is evicted."""

CLOSE_BOUND = 2.0
"""Seconds a close frame gets to reach a peer before the connection is dropped."""

SenderFailure = Callable[["Sender", int, str], None]
"""``on_failure(sender, code, reason)``: 1013 to evict the member, 1006 when it is gone."""

DropCounter = Callable[[int], None]
"""``on_drop(count)``: ``count`` more messages were dropped by a ``DROP_*`` policy."""


class OverflowPolicy(enum.Enum):
    """What happens when a member's queue is full. See the module docstring."""

    EVICT = "evict"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Per-member bounds of the outgoing queue, the progress deadline and the policy."""

    max_messages: int = 1024
    max_bytes: int = 8 * 1024 * 1024
    send_timeout: float = 5.0
    policy: OverflowPolicy = OverflowPolicy.EVICT

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"OutboxLimits.{name} must be an int >= 1, got {value!r}.")
        if not isinstance(self.send_timeout, int | float) or self.send_timeout <= 0:
            raise ConfigurationError(
                f"OutboxLimits.send_timeout must be positive seconds, got {self.send_timeout!r}."
            )
        if not isinstance(self.policy, OverflowPolicy):
            raise ConfigurationError(
                f"OutboxLimits.policy must be an OverflowPolicy, got {self.policy!r}."
            )


class FrameSink(Protocol):
    """What a server offers at ``scope["extensions"]["nexios.frames"]``."""

    def write(self, frame: bytes) -> bool: ...

    def buffered(self) -> int: ...

    def abort(self) -> None: ...


class Sender(abc.ABC):
    """A member's outgoing path. Created by the runtime, one per member, at its first join."""

    kind: str
    """``"asgi"`` or ``"frames"``."""

    def __init__(
        self,
        ws: MemberConnection,
        limits: OutboxLimits,
        on_failure: SenderFailure,
        on_drop: DropCounter | None = None,
    ) -> None:
        self.ws = ws
        self.limits = limits
        self._on_failure = on_failure
        self._on_drop = on_drop
        self.dropped = 0
        """Messages dropped by a ``DROP_*`` policy."""
        self.closed = False
        self._idle_waiters: list[asyncio.Future[None]] = []

    async def _until_idle(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter

    def _went_idle(self) -> None:
        if not self._idle_waiters:
            return  # the common case, on every flush: nobody waits
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @abc.abstractmethod
    def put(self, frame: Frame) -> bool:
        """Queue ``frame``. False when it was not queued (dropped, evicted or closed)."""

    @property
    @abc.abstractmethod
    def pending(self) -> bool:
        """True while queued messages have not been handed to the server yet."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until what was queued before now has been handed on (or the sender closed)."""

    @abc.abstractmethod
    def overdue(self, now: float) -> bool:
        """True when the member has made no progress for ``send_timeout`` (checked by
        the runtime about four times a second, with the loop's clock, for the senders
        that had something to send since they were last idle)."""

    @property
    @abc.abstractmethod
    def idle(self) -> bool:
        """Nothing queued and nothing on its way: no deadline to watch."""

    def missed_deadline(self) -> None:
        """Evict the member: it made no progress for ``send_timeout``."""
        self._fail(EVICTION_CLOSE_CODE, DEADLINE_MISSED)

    @property
    @abc.abstractmethod
    def depth(self) -> int:
        """Messages queued now."""

    @property
    @abc.abstractmethod
    def queued_bytes(self) -> int:
        """Bytes queued now, including what the transport still buffers."""

    def close(self) -> None:
        """Stop sending and forget what is queued. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.ws.sender is self:
            self.ws.sender = None
        self._discard()

    @abc.abstractmethod
    def _discard(self) -> None: ...

    def end(self, code: int, reason: str) -> None:
        """Close the member's connection with ``code`` (bounded: see WebSocket.end)."""
        self.close()
        self.ws.end(code, reason)

    def _overflow(self, size: int) -> bool:
        """The queue is full: apply the policy. True when there is room now."""
        policy = self.limits.policy
        if policy is OverflowPolicy.EVICT:
            self._fail(EVICTION_CLOSE_CODE, "outbox full: client too slow")
            return False
        if policy is OverflowPolicy.DROP_OLDEST and self._drop_oldest_for(size):
            return True
        self._count_drop()
        return False

    def _count_drop(self) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(1)

    @abc.abstractmethod
    def _drop_oldest_for(self, size: int) -> bool:
        """Drop queued messages, oldest first, until ``size`` more bytes fit."""

    def _fail(self, code: int, reason: str) -> None:
        if not self.closed:
            self._on_failure(self, code, reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} bytes={self.queued_bytes}>"


class AsgiSender(Sender):
    """A queue of ASGI messages drained by one task (portable: any ASGI server)."""

    kind = "asgi"

    def __init__(
        self,
        ws: MemberConnection,
        limits: OutboxLimits,
        on_failure: SenderFailure,
        scheduler: FlushScheduler | None = None,
        on_drop: DropCounter | None = None,
    ) -> None:
        super().__init__(ws, limits, on_failure, on_drop)
        self._scheduler = scheduler
        self._queue: deque[Frame] = deque()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.send_started: float | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def pending(self) -> bool:
        return bool(self._queue) or self.send_started is not None

    def put(self, frame: Frame) -> bool:
        if self.closed:
            return False
        size = frame.size
        limits = self.limits
        if (
            len(self._queue) >= limits.max_messages or self._bytes + size > limits.max_bytes
        ) and not self._overflow(size):
            return False
        self._queue.append(frame)
        self._bytes += size
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    def _drop_oldest_for(self, size: int) -> bool:
        limits = self.limits
        if size > limits.max_bytes:
            return False
        queue = self._queue
        while queue and (
            len(queue) >= limits.max_messages or self._bytes + size > limits.max_bytes
        ):
            self._bytes -= queue.popleft().size
            self._count_drop()
        return True

    async def _run(self) -> None:
        transmit = self.ws.transmit
        queue = self._queue
        loop = asyncio.get_running_loop()
        while not self.closed:
            if self._scheduler is not None:
                self._scheduler.busy.add(self)  # once per burst: watch its deadline
            while queue:
                frame = queue.popleft()
                self._bytes -= frame.size
                self.send_started = loop.time()
                try:
                    await transmit(frame.asgi())
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._fail(1006, f"send failed: {error!r}")
                    return
                self.send_started = None
            self._went_idle()
            wakeup = loop.create_future()
            self._wakeup = wakeup
            await wakeup

    async def drain(self) -> None:
        if self.closed or not self.pending:
            return
        await self._until_idle()

    def overdue(self, now: float) -> bool:
        started = self.send_started
        return started is not None and now - started > self.limits.send_timeout

    @property
    def idle(self) -> bool:
        return not self._queue and self.send_started is None

    def _discard(self) -> None:
        self._queue.clear()
        self._bytes = 0
        self._went_idle()
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.cancel()


class FlushScheduler:
    """Writes every frame sender's queue once at the end of the loop iteration, and
    keeps the set of senders whose deadline is worth watching (``busy``): those whose
    peer may be behind, so members that keep up cost the deadline check nothing."""

    __slots__ = ("_loop", "busy", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.due: list[FrameSender] = []
        """Senders to flush at the end of this iteration; :meth:`schedule` adds to it."""
        self.busy: set[Sender] = set()

    def schedule(self, sender: FrameSender) -> None:
        """Flush ``sender`` at the end of this loop iteration."""
        if not self.due:
            self._loop.call_soon(self._flush)
        self.due.append(sender)

    def _flush(self) -> None:
        due = self.due[:]
        self.due.clear()
        for sender in due:
            sender.flush()


class FrameSender(Sender):
    """A queue of pre-built frames written straight to the transport (``nexios run``)."""

    kind = "frames"

    def __init__(
        self,
        ws: MemberConnection,
        sink: FrameSink,
        limits: OutboxLimits,
        on_failure: SenderFailure,
        scheduler: FlushScheduler,
        on_drop: DropCounter | None = None,
    ) -> None:
        super().__init__(ws, limits, on_failure, on_drop)
        self.sink = sink
        self._scheduler = scheduler
        # Looked up once: put() and flush() run once per member and message.
        self._busy = scheduler.busy
        self._schedule = scheduler.schedule
        self._due = scheduler.due
        self._buffered = sink.buffered
        self._write = sink.write
        self._max_messages = limits.max_messages
        self._max_bytes = limits.max_bytes
        on_writable = getattr(sink, "on_writable", None)
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        # What the transport holds, as of our last look, plus what we wrote since: an
        # upper bound (it only drains between our writes), so put() and flush() need
        # not ask the sink on every message, only when the bound says it may be full.
        self._backlog = 0
        # A sink that cannot say when it drains gets everything: its buffer is the queue.
        self._high_water = HIGH_WATER if on_writable is not None else 1 << 62
        # Since when the peer has been behind (its backlog above LOW_WATER).
        self._stalled_since: float | None = None
        self._on_writable: Callable[[Callable[[], None] | None], None] | None = on_writable

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes + self.sink.buffered()

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def put(self, frame: Frame) -> bool:
        if self.closed:
            return False
        data = frame.wire_bytes or frame.wire()
        size = len(data)
        queue = self._queue
        if queue:  # a flush is already on its way (this iteration, or once writable)
            if (
                len(queue) >= self._max_messages
                or self._bytes + self._backlog + size > self._max_bytes
            ) and not self._room_for(size):
                return False
            queue.append(data)
            self._bytes += size
            return True
        if self._backlog + size > self._max_bytes and not self._room_for(size):
            return False
        queue.append(data)
        self._bytes = size
        due = self._due
        if due:
            due.append(self)  # the scheduler's flush is on its way: no need to call it
        else:
            self._schedule(self)
        return True

    def _room_for(self, size: int) -> bool:
        """The bound says the queue is full: look at the transport, then apply the policy."""
        self._backlog = self._buffered()
        if (
            len(self._queue) < self._max_messages
            and self._bytes + self._backlog + size <= self._max_bytes
        ):
            return True
        return self._overflow(size)

    def _drop_oldest_for(self, size: int) -> bool:
        limits = self.limits
        queue = self._queue
        backlog = self._backlog
        while queue and (
            len(queue) >= limits.max_messages or self._bytes + backlog + size > limits.max_bytes
        ):
            self._bytes -= len(queue.popleft())
            self._count_drop()
        return len(queue) < limits.max_messages and self._bytes + backlog + size <= limits.max_bytes

    def flush(self) -> None:
        """Write queued frames while the transport takes them (one ``write`` call)."""
        queue = self._queue
        if not queue:
            return
        if self._bytes > self._high_water - self._backlog:
            self._flush_part()
            return
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._bytes = 0
        # _written(data), inlined: this runs once per member and message
        if not self._write(data):
            self._fail(1006, "connection closed")
            return
        backlog = self._backlog = self._backlog + len(data)
        if backlog > LOW_WATER:
            self._busy.add(self)
        if self._idle_waiters:
            self._went_idle()

    def _flush_part(self) -> None:
        """Not all of the queue fits under the high-water mark by the bound: look at the
        transport, write what fits and wait for it to drain."""
        self._backlog = self._buffered()
        room = self._high_water - self._backlog
        queue = self._queue
        if room > 0:
            parts = []
            taken = 0
            while queue and taken < room:
                part = queue.popleft()
                parts.append(part)
                taken += len(part)
            self._bytes -= taken
            if not self._written(b"".join(parts)):
                return
        if queue:
            self._busy.add(self)
            self._wait_writable()

    def _written(self, data: bytes) -> bool:
        if not self._write(data):
            self._fail(1006, "connection closed")
            return False
        backlog = self._backlog = self._backlog + len(data)
        if backlog > LOW_WATER:
            self._busy.add(self)  # the peer may be behind: watch its deadline
        if self._idle_waiters and not self._queue:
            self._went_idle()
        return True

    def _wait_writable(self) -> None:
        if self._on_writable is not None:
            self._on_writable(self.flush)

    async def drain(self) -> None:
        self.flush()
        if self.closed or not self._queue:
            return
        await self._until_idle()

    def overdue(self, now: float) -> bool:
        if self._queue:
            self.flush()  # in case the transport drained without telling us
        self._backlog = self.sink.buffered()
        if self._bytes + self._backlog <= LOW_WATER:
            self._stalled_since = None
            return False
        if self._stalled_since is None:
            self._stalled_since = now
            return False
        return now - self._stalled_since > self.limits.send_timeout

    @property
    def idle(self) -> bool:
        return not self._queue and not self.sink.buffered()

    def _discard(self) -> None:
        self._queue.clear()
        self._bytes = 0
        if self._on_writable is not None:
            self._on_writable(None)
        self._went_idle()

    def end(self, code: int, reason: str) -> None:
        """Close with ``code``; drop the connection if the close frame can't get through."""
        super().end(code, reason)
        asyncio.get_running_loop().call_later(CLOSE_BOUND, self._abort_if_stuck)

    def _abort_if_stuck(self) -> None:
        if self.sink.buffered() > 0:
            self.sink.abort()


def sender_for(
    ws: MemberConnection,
    limits: OutboxLimits,
    on_failure: SenderFailure,
    scheduler: FlushScheduler,
    on_drop: DropCounter | None = None,
) -> Sender:
    """The sender for ``ws``: frames when the server offers a sink, ASGI messages otherwise."""
    sink: Any = ws.scope.get("extensions", {}).get("nexios.frames")
    if sink is not None:
        return FrameSender(ws, sink, limits, on_failure, scheduler, on_drop)
    return AsgiSender(ws, limits, on_failure, scheduler, on_drop)
