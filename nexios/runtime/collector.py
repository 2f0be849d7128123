"""Full garbage collections that do not walk every connection, each time.

CPython's cyclic collector walks every object it tracks in a full (generation 2)
collection. A member is about 60 of them, so a process with 5,000 members stops for
a third of a second (measured on the benchmark machine: 416 ms at 358,000 objects), and
every message in flight waits; the pause grows with the members. Members live long, and
what survives a full collection is, by definition, alive then: after each full
collection the objects are moved to the permanent generation (``gc.freeze``), so the
next full collections walk only what was made since.

The permanent generation is not searched for cycles: a member that leaves can leave
some 40 objects in reference cycles (measured), and frozen they stay. So once the members
that left since the first freeze reach a quarter of those that were there, everything is
unfrozen, and the next full collection takes it all, as CPython's own rule (a quarter of
the old objects renewed) would have. Growing and steady membership no longer cost
full-size pauses; turnover costs what it did.

Opt-in, ``NEXIOS_GC_FREEZE=1``: turnover is counted in channels (members of groups),
so connections that never join a group are not counted when they close, and the cycles
they leave stay frozen until the members turn over. Turn it on where most connections
are members, as in the rooms and growth benchmarks, which measured it.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

__all__ = ["COLLECTOR", "CollectorPolicy"]

logger = logging.getLogger("nexios.channels")

TURNOVER_SHARE = 0.25
"""Members that left since the freeze, as a share of those then, that unfreeze."""

MIN_TURNOVER = 100
"""Leavers that always allow an unfreeze (a small process renews quickly)."""


class CollectorPolicy:
    """Freezes what survives each full collection; unfreezes after a quarter turned over.

    Process-wide (the collector is): runtimes :meth:`attach` at start and :meth:`detach`
    at stop, and report members as they come and go.
    """

    def __init__(self) -> None:
        self._users = 0
        self._frozen = False  # gc.get_freeze_count() would walk every frozen object
        self._live = 0
        self._at_freeze = 0
        self._left_since = 0
        self.freezes = 0
        """Full collections whose survivors were frozen."""
        self.unfreezes = 0
        """Times the turnover made everything collectable again."""

    @property
    def active(self) -> bool:
        return self._users > 0

    def attach(self) -> None:
        if self._users == 0:
            gc.callbacks.append(self._on_collection)
        self._users += 1

    def detach(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            gc.callbacks.remove(self._on_collection)
            gc.unfreeze()
            self._frozen = False
            self._live = self._at_freeze = self._left_since = 0

    def joined(self) -> None:
        self._live += 1

    def left(self) -> None:
        self._live = max(0, self._live - 1)
        if not self._frozen:
            return
        self._left_since += 1
        if self._left_since > max(self._at_freeze * TURNOVER_SHARE, MIN_TURNOVER):
            gc.unfreeze()  # the next full collection takes what the leavers left behind
            self._frozen = False
            self.unfreezes += 1
            self._at_freeze = self._left_since = 0

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        # Everything a full collection leaves was reachable at its end. What leavers
        # left among the frozen since the last unfreeze stays counted.
        gc.freeze()
        if not self._frozen:
            self._frozen, self._at_freeze, self._left_since = True, self._live, 0
        self._at_freeze = max(self._at_freeze, self._live)
        self.freezes += 1


COLLECTOR = CollectorPolicy()
"""The process's policy (there is one collector)."""
