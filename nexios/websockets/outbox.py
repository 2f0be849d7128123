"""A member's bounded outgoing queue, drained by its own sender task.

Fan-out never awaits a member: ``group_send`` puts the (already framed) message in each
member's :class:`Outbox` and returns. Each outbox has one sender task that writes to
the socket. A member that stops reading fills its outbox; a member whose send does not
complete within ``send_timeout`` is stuck. Both are handled by the outbox's
:class:`OverflowPolicy`:

- ``EVICT`` (default): the member is closed with **1013 (Try Again Later)** and removed
  from all its groups. A client can reconnect and recover what it missed from history
  using the last ``seq`` it saw. 1013 rather than 1008 because the client did nothing
  wrong by protocol; it was too slow for the server's bound.
- ``DROP_OLDEST``: the oldest queued message is dropped to make room (counted).
- ``DROP_NEWEST``: the new message is dropped (counted).

A stuck send (deadline missed) always evicts, whatever the policy: a member that cannot
take even one message is not coming back. Deadlines are checked by the hub's
maintenance task (every 0.25 s), not with a timer per send, so the send path costs one
clock read.

Bounds: ``max_messages`` and ``max_bytes`` (of the frames queued), checked on every put.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nexios.websockets.base import WebSocket

__all__ = ["EVICTION_CLOSE_CODE", "Outbox", "OutboxLimits", "OverflowPolicy"]

EVICTION_CLOSE_CODE = 1013
"""Close code sent to a member evicted for being too slow."""


class OverflowPolicy(enum.Enum):
    """What happens when a member's outbox is full. See the module docstring."""

    EVICT = "evict"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Per-member bounds of the outgoing queue and the send deadline."""

    max_messages: int = 1024
    max_bytes: int = 8 * 1024 * 1024
    send_timeout: float = 5.0
    policy: OverflowPolicy = OverflowPolicy.EVICT

    @classmethod
    def from_env(cls) -> OutboxLimits:
        """Defaults, overridden by ``NEXIOS_OUTBOX_MAX_MESSAGES``, ``NEXIOS_OUTBOX_MAX_BYTES``,
        ``NEXIOS_SEND_TIMEOUT`` and ``NEXIOS_OUTBOX_POLICY`` (evict, drop_oldest, drop_newest).
        """
        import os

        from nexios.exceptions import ConfigurationError

        base = cls()
        try:
            return cls(
                max_messages=int(os.environ.get("NEXIOS_OUTBOX_MAX_MESSAGES", base.max_messages)),
                max_bytes=int(os.environ.get("NEXIOS_OUTBOX_MAX_BYTES", base.max_bytes)),
                send_timeout=float(os.environ.get("NEXIOS_SEND_TIMEOUT", base.send_timeout)),
                policy=OverflowPolicy(os.environ.get("NEXIOS_OUTBOX_POLICY", base.policy.value)),
            )
        except ValueError as error:
            raise ConfigurationError(
                f"Invalid NEXIOS_OUTBOX_* / NEXIOS_SEND_TIMEOUT: {error}"
            ) from None

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("OutboxLimits bounds must be at least 1")
        if self.send_timeout <= 0:
            raise ValueError("OutboxLimits.send_timeout must be positive seconds")


class Outbox:
    """The queue and sender task of one member. Created by the hub, one per channel."""

    __slots__ = (
        "_bytes",
        "_drained_hook",
        "_idle_waiters",
        "_loop",
        "_on_dead",
        "_queue",
        "_task",
        "_wakeup",
        "closed",
        "dropped",
        "limits",
        "send_started",
        "ws",
    )

    def __init__(
        self,
        ws: WebSocket,
        limits: OutboxLimits,
        on_dead: Callable[[Outbox, int, str], None],
    ) -> None:
        self.ws = ws
        self.limits = limits
        self._on_dead = on_dead
        self._queue: deque[tuple[dict[str, Any], int]] = deque()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._drained_hook = self.drained  # one bound method, not one per burst
        self.send_started: float | None = None
        self.dropped = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, message: dict[str, Any], size: int) -> bool:
        """Queue a framed message. False when it was not queued (dropped or evicted)."""
        if self.closed:
            return False
        limits = self.limits
        full = len(self._queue) >= limits.max_messages or self._bytes + size > limits.max_bytes
        if full and not self._make_room(size):
            return False
        if not self._queue and self.send_started is None:
            self.ws._before_send = self._drained_hook
        self._queue.append((message, size))
        self._bytes += size
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self._task is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._drain())
        return True

    def _make_room(self, size: int) -> bool:
        policy = self.limits.policy
        if policy is OverflowPolicy.EVICT:
            self._on_dead(self, EVICTION_CLOSE_CODE, "outbox full: client too slow")
            return False
        if policy is OverflowPolicy.DROP_NEWEST or size > self.limits.max_bytes:
            self.dropped += 1
            return False
        while self._queue and (
            len(self._queue) >= self.limits.max_messages
            or self._bytes + size > self.limits.max_bytes
        ):
            _, dropped_size = self._queue.popleft()
            self._bytes -= dropped_size
            self.dropped += 1
        return True

    async def _drain(self) -> None:
        send = self.ws._send
        queue = self._queue
        loop = self._loop
        assert loop is not None
        while not self.closed:
            while queue:
                message, size = queue.popleft()
                self._bytes -= size
                self.send_started = loop.time()
                try:
                    await send(message)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._on_dead(self, 1006, f"send failed: {error!r}")
                    return
                self.send_started = None
            self._went_idle()
            wakeup = loop.create_future()
            self._wakeup = wakeup
            await wakeup

    async def drained(self) -> None:
        """Wait until what was queued before now has been written (or the outbox closed)."""
        if self.closed or (not self._queue and self.send_started is None):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter

    def _went_idle(self) -> None:
        if self.ws._before_send is self._drained_hook:
            self.ws._before_send = None
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def overdue(self, now: float) -> bool:
        """True when the send in progress has missed its deadline."""
        started = self.send_started
        return started is not None and now - started > self.limits.send_timeout

    def close(self) -> None:
        """Stop the sender and drop what is queued."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._bytes = 0
        self._went_idle()
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.cancel()
