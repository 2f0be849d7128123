"""A group feed's gap repair against a history store that is away for a while.

The feed holds a message that arrived after a gap and reads the missing ones from
history. When nothing else is published, that read is the only way members ever get
them: it must go on until the store answers, not give up after a few tries (a Redis
Cluster failover leaves the store addressing the dead primary for a few seconds).
"""

from __future__ import annotations

import asyncio

import pytest

from nexios.exceptions import BackendUnavailableError
from nexios.framing import FrameSet
from nexios.history.base import HistoryPage
from nexios.history.memory import MemoryHistoryStore
from nexios.runtime.feeds import GroupFeed, Resync

pytestmark = pytest.mark.anyio

GROUP = "room"


class StoreAway:
    """Reads ``history`` once ``failures`` reads have failed as an unreachable store's do."""

    def __init__(self, history: MemoryHistoryStore, failures: int) -> None:
        self.history = history
        self.failures = failures
        self.reads = 0

    async def read(self, group: str, since: int, limit: int, epoch: str) -> HistoryPage:
        self.reads += 1
        if self.reads <= self.failures:
            raise BackendUnavailableError("Redis is unreachable (test: the store is away)")
        return await self.history.read(group, since=since, limit=limit, epoch=epoch)


async def saved(history: MemoryHistoryStore, count: int) -> list[FrameSet]:
    frames = []
    for i in range(count):
        entry = await history.append(GROUP, "json", b'{"i": %d}' % i)
        frames.append(
            FrameSet(entry.kind, entry.data, group=GROUP, seq=entry.seq, epoch=entry.epoch)
        )
    return frames


@pytest.mark.parametrize("failures", [0, 1, 6])
async def test_a_gap_is_repaired_however_many_reads_fail_first(failures: int) -> None:
    history = MemoryHistoryStore()
    frames = await saved(history, 3)
    delivered: list[int] = []
    notices: list[Resync] = []
    all_in = asyncio.Event()

    def fan_out(group: str, f: FrameSet) -> int:
        delivered.append(f.seq)
        if f.seq == 3:
            all_in.set()
        return 1

    store = StoreAway(history, failures)
    feed = GroupFeed(GROUP, fan_out=fan_out, read=store.read, resync=lambda g, n: notices.append(n))
    feed.start(frames[0].epoch, 0)
    feed.offer(frames[2])  # 1 and 2 were missed: only history has them
    async with asyncio.timeout(30):
        await all_in.wait()
    feed.close()
    assert delivered == [1, 2, 3]
    assert notices == []
    assert store.reads == failures + 1
