"""One group's saved messages, delivered to this process's members in seq order.

A :class:`GroupFeed` exists while a group has members in this process. Saved messages
(``save_history=True``) reach it from two sources — this process's own publishes and
the channel layer's feed from other processes — and it hands them to the members in
strictly increasing ``seq``, each once:

- a message at ``last + 1`` is delivered at once, with any held successors;
- a message ahead of that is held, and the missing ones are read from history (*live
  gap repair*); when history no longer has them, or holds another numbering, the
  members get a *resync notice* instead of a silent gap;
- a message at or below ``last`` is a duplicate and is dropped;
- a message of a new epoch (the history's numbering was lost) sends a resync notice
  (``epoch_changed``) and starts over under the new epoch; numbers never masquerade as
  the old ones.

Before a feed knows where the group stands (the first member is joining: the layer
subscription is being confirmed and the history's position read) it holds everything.
A member that joins with ``since`` is a *joiner* until its replay from history is
merged with what arrived live meanwhile (:meth:`GroupFeed.add_joiner`).

Unsaved messages do not go through the feed: they are delivered as they come, so they
keep each publisher's order among themselves but not relative to saved messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nexios.exceptions import ChannelError
from nexios.framing import FrameSet
from nexios.history.base import HistoryPage

__all__ = ["MAX_HELD", "REPAIR_BATCH", "GroupFeed", "Resync"]

logger = logging.getLogger("nexios.channels")

MAX_HELD = 10_000
"""Messages a feed holds while it waits for a missing one; past it, members resync."""

REPAIR_BATCH = 500
"""Entries read from history per step of a gap repair."""

_REPAIR_ATTEMPTS = 5
_REPAIR_PAUSE = 0.05
_REPAIR_RETRY_MAX = 2.0
"""Most seconds between two reads of history that failed: a gap is repaired however
long the store is away (it may be the only way the missing messages arrive)."""

HistoryReader = Callable[[str, int, int, str], Awaitable[HistoryPage]]
"""``read(group, since, limit, epoch)``: the runtime's read of the group's history."""


class Resync:
    """What members are told when their sequence cannot continue without a gap."""

    __slots__ = ("epoch", "last_seq", "reason")

    def __init__(self, reason: str, epoch: str, last_seq: int) -> None:
        self.reason = reason
        """``"gap"`` (history no longer holds what was missed) or ``"epoch_changed"``."""
        self.epoch = epoch
        """The epoch members continue in."""
        self.last_seq = last_seq
        """The last seq skipped: the next message members get comes after it."""

    def to_dict(self, group: str) -> dict[str, object]:
        return {
            "type": "nexios.resync",
            "group": group,
            "reason": self.reason,
            "epoch": self.epoch,
            "last_seq": self.last_seq,
        }


class GroupFeed:
    """Orders one group's saved messages for this process's members."""

    def __init__(
        self,
        group: str,
        *,
        fan_out: Callable[[str, FrameSet], int],
        read: HistoryReader,
        resync: Callable[[str, Resync], None],
    ) -> None:
        self.group = group
        self.epoch = ""
        self.last = 0
        """The last seq delivered to this process's members."""
        self.ready = False
        self._fan_out = fan_out
        self._read = read
        self._resync = resync
        self._held: dict[int, FrameSet] = {}
        self._retired: set[str] = set()
        self._target = 0
        self._repair: asyncio.Task[None] | None = None
        self.joiners: dict[str, list[FrameSet]] = {}
        """Channel id -> what arrived while that member's replay was being read."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ setup

    def start(self, epoch: str, last_seq: int) -> None:
        """The group's position is known: deliver from ``last_seq + 1`` on."""
        self.epoch, self.last, self.ready = epoch, last_seq, True
        held, self._held = self._held, {}
        for frames in sorted(held.values(), key=lambda f: f.seq):
            self.offer(frames)

    def close(self) -> None:
        """The group has no member here any more."""
        if self._repair is not None and not self._repair.done():
            self._repair.cancel()
        self._held.clear()
        self.joiners.clear()
        self._wake(everyone=True)

    # ------------------------------------------------------------------ delivery

    def offer(self, frames: FrameSet) -> None:
        """A saved message (``frames.seq > 0``) from this process or the layer."""
        if not self.ready:
            self._held[frames.seq] = frames
            return
        if frames.epoch != self.epoch and not self._adopt(frames.epoch):
            return
        seq = frames.seq
        if seq <= self.last:
            return
        if seq == self.last + 1:
            self._deliver(frames)
            self._release_held()
            return
        self._held[seq] = frames
        if len(self._held) > MAX_HELD:
            self._skip_to(min(self._held) - 1, "gap")
            return
        self._start_repair()

    def _adopt(self, epoch: str) -> bool:
        """A message of another epoch: False to drop it, True once it is ours."""
        if epoch in self._retired:
            return False  # a straggler of a numbering already replaced
        if self.epoch:
            self._retired.add(self.epoch)
            self._resync(self.group, Resync("epoch_changed", epoch, 0))
            logger.warning(
                "Group %r: history epoch changed (%s -> %s); members told to resync",
                self.group,
                self.epoch,
                epoch,
                extra={"group": self.group, "reason": "epoch_changed"},
            )
        self.epoch, self.last = epoch, 0
        self._held = {seq: f for seq, f in self._held.items() if f.epoch == epoch}
        self._wake(everyone=True)  # their positions belong to the old numbering
        return True

    def _deliver(self, frames: FrameSet) -> None:
        self.last = frames.seq
        self.pass_on(frames)
        if self._waiters:
            self._wake()

    def pass_on(self, frames: FrameSet) -> None:
        """Hand a message (saved in order, or unsaved) to members and joiners."""
        for buffered in self.joiners.values():
            buffered.append(frames)
        self._fan_out(self.group, frames)

    def _release_held(self) -> None:
        held = self._held
        while held:
            frames = held.pop(self.last + 1, None)
            if frames is None:
                for seq in [seq for seq in held if seq <= self.last]:
                    del held[seq]
                return
            self._deliver(frames)

    def _skip_to(self, last_seq: int, reason: str) -> None:
        """Give up on what is missing up to ``last_seq``: tell members, go on after it."""
        self._resync(self.group, Resync(reason, self.epoch, last_seq))
        logger.warning(
            "Group %r: messages %d-%d are gone from history; members told to resync",
            self.group,
            self.last + 1,
            last_seq,
            extra={"group": self.group, "reason": reason},
        )
        self.last = max(self.last, last_seq)
        self._wake()
        self._release_held()

    # ------------------------------------------------------------------ repair

    def offer_epoch(self, epoch: str, last_seq: int) -> None:
        """History moved to ``epoch`` (seen after the link came back): switch to it and
        deliver what it already holds."""
        if epoch != self.epoch and self._adopt(epoch):
            self.catch_up(last_seq)

    def lost(self) -> None:
        """History lost the group's numbering and holds nothing yet: tell members now."""
        if self.epoch:
            self._retired.add(self.epoch)
            self._resync(self.group, Resync("epoch_changed", "", 0))
            logger.warning(
                "Group %r: history lost its numbering; members told",
                self.group,
                extra={"group": self.group, "reason": "epoch_changed"},
            )
        self.epoch, self.last = "", 0
        self._held.clear()

    def catch_up(self, last_seq: int) -> None:
        """The group's history reaches ``last_seq`` (seen after the link came back)."""
        if last_seq > self.last:
            self._target = max(self._target, last_seq)
            self._start_repair()

    def _start_repair(self) -> None:
        if self._repair is None or self._repair.done():
            self._repair = asyncio.get_running_loop().create_task(
                self._repair_gaps(), name=f"nexios-repair-{self.group[:40]}"
            )

    def _missing_up_to(self) -> int:
        """The highest seq known to exist that has not been delivered, or 0."""
        held = min(self._held) - 1 if self._held else 0
        return max(held, self._target if self._target > self.last else 0)

    async def _repair_gaps(self) -> None:
        attempts = failures = 0
        while (upto := self._missing_up_to()) > self.last:
            before = self.last
            try:
                page = await self._read(
                    self.group, self.last, min(upto - self.last, REPAIR_BATCH), self.epoch
                )
            except ChannelError as error:
                failures += 1
                if failures == 1:
                    logger.warning(
                        "Group %r: gap repair could not read history (trying again): %s",
                        self.group,
                        error,
                        extra={"group": self.group},
                    )
                await asyncio.sleep(min(_REPAIR_PAUSE * 2 ** (failures - 1), _REPAIR_RETRY_MAX))
                continue
            if failures:
                logger.info(
                    "Group %r: gap repair read history again after %d failed reads",
                    self.group,
                    failures,
                    extra={"group": self.group},
                )
                failures = 0
            if page.epoch != self.epoch or not page.complete:
                self._skip_to(upto, "gap")
                continue
            for entry in page:
                if entry.seq == self.last + 1:
                    self._deliver(
                        FrameSet(
                            entry.kind,
                            entry.data,
                            group=self.group,
                            seq=entry.seq,
                            epoch=entry.epoch,
                        )
                    )
            self._release_held()
            if self.last == before:
                # History does not have it yet: a publisher may still be between its
                # append and its publish. Wait a little, then give up on it.
                attempts += 1
                if attempts >= _REPAIR_ATTEMPTS:
                    self._skip_to(upto, "gap")
                    continue
                await asyncio.sleep(_REPAIR_PAUSE * attempts)
            else:
                attempts = 0

    # ------------------------------------------------------------------ joiners

    async def reached(self, seq: int) -> None:
        """Return once this process delivered up to ``seq`` (it may lag a client that
        saw ``seq`` on another process), repairing from history to get there."""
        if self.last >= seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        self.catch_up(seq)
        await waiter

    def _wake(self, everyone: bool = False) -> None:
        still: list[tuple[int, asyncio.Future[None]]] = []
        for seq, waiter in self._waiters:
            if everyone or self.last >= seq:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((seq, waiter))
        self._waiters = still

    def add_joiner(self, channel_id: str) -> list[FrameSet]:
        """Collect what this feed passes on until :meth:`remove_joiner`."""
        buffered: list[FrameSet] = []
        self.joiners[channel_id] = buffered
        return buffered

    def remove_joiner(self, channel_id: str) -> None:
        self.joiners.pop(channel_id, None)
