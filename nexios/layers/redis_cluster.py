"""The Redis Cluster channel layer (``redis+cluster://host:port[,host:port...]``).

The URL names any reachable nodes; the others are discovered (redis-py's asyncio cluster
client runs the commands). Everything the single-server layer (:mod:`nexios.layers.redis`,
the parent class) does holds per group, because a group's keys and its channel share one
hash slot (the hash tag ``{g:<group>}``): the scripts, the wire format, the atomic
append-and-publish of saved messages (publish order is seq order), idempotency,
presence. What differs:

- **Sharded pub/sub.** Messages are published with ``SPUBLISH``, which only the nodes of
  the group's shard see, and received with ``SSUBSCRIBE`` on the primary that serves the
  group's slot: one pub/sub link per primary, each with its own reader task. Each
  group's messages still come from one connection, in publish order.
- **Re-homing.** When a link goes down, or a primary stops serving a group's slot (Redis
  drops the subscription with an ``sunsubscribe`` push, or answers ``MOVED``), the layer
  reloads the slot map — again and again, with backoff, while a link is down — and
  subscribes each group on the primary that serves it now. ``on_link(False)`` when that
  starts, ``on_link(True)`` once every group is confirmed again, so that the runtime
  fills the gap from history.
- **Failover.** Replication is asynchronous: a promoted replica may lack the last
  messages of a group, whose seqs members received. The first saved message after a
  failover (or after the slot moved to another primary) therefore starts a new epoch
  (``append_entry.lua``), and connected members get a resync notice instead of seqs
  that would mean two different messages.
- **Presence.** A script may not write keys of two slots, so the expiry index is one
  key per slot. Heartbeats are one script per primary for entries of all its slots, and
  reaping sweeps the slot indexes of each primary in a few scripts (both use
  ``allow-cross-slot-keys``, Redis 7+). A short lease per primary (:data:`REAP_LEASE`,
  renewed by the process that holds it) makes the other processes skip a primary that
  was just swept, so the cluster sweeps about once per lease period whatever the number
  of processes: the cost is a lookup per slot (16384), not per group.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from nexios._redis import (
    LINK_ERRORS,
    Backend,
    ClusterBackend,
    describe_error,
    is_cluster_url,
    load_script,
    redact_url,
)
from nexios.exceptions import ConfigurationError
from nexios.history.base import is_group_name
from nexios.layers._pubsub import Link
from nexios.layers.base import LayerHealth, PresenceRecord
from nexios.layers.redis import (
    REAP_LIMIT,
    REAP_ROUNDS,
    SCRIPT_CHUNK,
    SCRIPTS,
    RedisLayer,
    chunks,
    records_of,
    ttl_ms,
)

__all__ = ["REAP_LEASE", "RedisClusterLayer"]

REAP_LEASE = 1.0
"""Seconds one process's sweep of a primary's expiry indexes excludes the others'."""
INDEXES_PER_SCRIPT = 1024
"""Slot indexes one reap script looks at (about a millisecond of Redis time)."""
SETTLE_BASE = 0.05
SETTLE_MAX = 0.5

_HEARTBEAT_NODES = load_script("presence_heartbeat_nodes")
_REAP_NODES = load_script("presence_reap_nodes")
_LEASE = load_script("lease")
CLUSTER_SCRIPTS = (*SCRIPTS, _HEARTBEAT_NODES, _REAP_NODES, _LEASE)

_SLOT_MAP_ERRORS: tuple[type[BaseException], ...] = (
    *LINK_ERRORS,
    TimeoutError,
    RedisError,
    RedisClusterException,
)

_Entry = tuple[str, str, bytes]
_T = TypeVar("_T")

logger = logging.getLogger("nexios.layers.redis")


class RedisClusterLayer(RedisLayer):
    """Groups, broadcasts and presence shared through a Redis Cluster (Redis 7+).

    Same arguments as :class:`~nexios.layers.redis.RedisLayer`; ``url`` is
    ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS).
    """

    def _new_backend(self, url: str, timeout: float, key_prefix: str) -> Backend:
        if not is_cluster_url(url):
            raise ConfigurationError(
                f"{redact_url(url)!r} is not a Redis Cluster URL: write "
                "redis+cluster://host:port[,host:port...], or use RedisLayer for one server."
            )
        self._cluster = ClusterBackend(
            url, timeout=timeout, scripts=CLUSTER_SCRIPTS, key_prefix=key_prefix
        )
        self._links: dict[str, Link] = {}
        self._home: dict[str, str] = {}
        """Group -> the primary (node name) whose link carries it."""
        self._settling: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        """Links of nodes that left, being stopped."""
        self._up: bool | None = None
        """Every link up and every group confirmed on its primary (None: starting)."""
        return self._cluster

    # -- links ---------------------------------------------------------------------------

    async def _connect_links(self) -> str | None:
        try:
            await self._cluster.ready()
        except _SLOT_MAP_ERRORS as exc:
            return describe_error(exc)
        self._sync_links()
        links = list(self._links.values())
        if not all(await asyncio.gather(*(link.wait_up() for link in links))):
            return next((link.last_error for link in links if link.last_error), "no answer")
        self._up = True
        return None

    async def _close_links(self) -> None:
        settling, self._settling = self._settling, None
        if settling is not None:
            settling.cancel()
        links = list(self._links.values())
        self._links.clear()
        self._home.clear()
        self._up = None
        await asyncio.gather(*(link.stop() for link in links))

    def _sync_links(self) -> None:
        """A link per primary; every group on the primary that serves its slot now."""
        primaries = {node.name for node in self._cluster.primaries()}
        for name in primaries - self._links.keys():
            self._add_link(name)
        for group in self._groups:
            self._place(group)
        for name, link in list(self._links.items()):
            if name not in primaries and not link.channels:
                del self._links[name]
                stopping = asyncio.get_running_loop().create_task(link.stop())
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)

    def _add_link(self, name: str) -> Link:
        connect = functools.partial(self._pubsub_connection, name)
        link = self._links[name] = self._new_link(name, connect, sharded=True)
        link.start()
        return link

    def _pubsub_connection(self, name: str) -> AbstractConnection:
        node = self._cluster.node_named(name)
        if node is None:
            raise RedisConnectionError(f"{name} is no longer a node of the cluster")
        return self._cluster.pubsub_connection(node)

    def _place(self, group: str) -> Link | None:
        """Carry ``group`` on the link of the primary serving its slot (None: unknown)."""
        node = self._cluster.node_of_slot(self.keyspace.slot(group))
        if node is None:
            return None
        channel = self.keyspace.channel(group)
        home = self._home.get(group)
        if home != node.name:
            previous = self._links.get(home) if home is not None else None
            if previous is not None:
                previous.unsubscribe(channel)
            self._home[group] = node.name
        link = self._links.get(node.name) or self._add_link(node.name)
        link.want(channel)
        return link

    def _link_for(self, group: str) -> Link | None:
        return self._place(group)

    def _link_leaving(self, group: str) -> Link | None:
        home = self._home.pop(group, None)
        return None if home is None else self._links.get(home)

    def _link_up(self, link: Link, back: bool) -> None:
        self._update()

    def _link_down(self, link: Link) -> None:
        self._unsettle()

    def _moved(self, link: Link, channel: bytes) -> None:
        self._unsettle()

    def _unsettle(self) -> None:
        """Something moved or failed: reload the slot map until every group is home."""
        if self._settling is None and self._up is not None:
            self._settling = asyncio.get_running_loop().create_task(
                self._settle(), name="nexios-redis-cluster-settle"
            )
        self._update()

    async def _settle(self) -> None:
        delay = SETTLE_BASE
        try:
            while not await self._settled():
                await asyncio.sleep(delay)
                delay = min(delay * 2, SETTLE_MAX)
        finally:
            if self._settling is asyncio.current_task():
                self._settling = None
        self._update()

    async def _settled(self) -> bool:
        """One round: reload the slot map, re-home, wait for the confirmations."""
        try:
            await self._cluster.refresh()
        except _SLOT_MAP_ERRORS:
            return False  # a node is down and no failover yet: try again
        try:
            self._sync_links()
            return await self._all_home()
        except Exception:  # a bug must not leave the layer down for good
            logger.exception("Re-subscribing the groups on the cluster's primaries failed")
            return False

    async def _all_home(self) -> bool:
        """Wait for the confirmations under way: True when every group is carried."""
        waits = []
        for group, home in self._home.items():
            link = self._links.get(home)
            if link is None:
                return False
            channel = self.keyspace.channel(group)
            if not link.carries(channel):
                waits.append(link.subscribe(channel))
        confirmed = all(await asyncio.gather(*waits))
        return confirmed and all(link.connected for link in self._links.values())

    def _update(self) -> None:
        """Tell ``on_link`` when the layer as a whole goes down or is back."""
        if self._up is None:
            return  # starting: start() reports
        up = self._settling is None and all(link.connected for link in self._links.values())
        if up != self._up:
            self._up = up
            self._tell_link(up)

    # -- presence ------------------------------------------------------------------------

    def _refresh_chunks(
        self, entries: Sequence[tuple[str, str]]
    ) -> Iterable[Sequence[tuple[str, str]]]:
        """One script per slot: its keys must share the slot."""
        by_slot: defaultdict[int, list[tuple[str, str]]] = defaultdict(list)
        for entry in entries:
            by_slot[self.keyspace.slot(entry[0])].append(entry)
        for part in by_slot.values():
            yield from chunks(part, SCRIPT_CHUNK)

    async def presence_heartbeat(
        self, entries: Sequence[_Entry], ttl: float
    ) -> list[PresenceRecord]:
        """One script per primary and chunk. A primary that cannot be reached does not
        keep the others' entries from being extended (nor their re-added ones from being
        returned): it is logged, and raised only when no primary could be reached."""
        self._check_open()
        valid = [entry for entry in entries if is_group_name(entry[0])]
        with self._errors("refresh presence"):
            await self._cluster.ready()
        added, moved = await self._beat(valid, ttl)
        if moved:  # the slot map changed: learn the new one, then once more
            with self._errors("refresh presence"):
                await self._cluster.refresh()
            again, _ = await self._beat(moved, ttl)
            added += again
        return added

    async def _beat(
        self, entries: Sequence[_Entry], ttl: float
    ) -> tuple[list[PresenceRecord], list[_Entry]]:
        """One heartbeat script per primary and chunk: (added back, not served there)."""
        by_node: dict[str, tuple[ClusterNode, list[_Entry]]] = {}
        moved: list[_Entry] = []
        for entry in entries:
            node = self._cluster.node_of_slot(self.keyspace.slot(entry[0]))
            if node is None:
                moved.append(entry)
            else:
                by_node.setdefault(node.name, (node, []))[1].append(entry)
        parts = [
            (node, part) for node, items in by_node.values() for part in chunks(items, SCRIPT_CHUNK)
        ]
        replies = await self._on_primaries(
            "refresh presence",
            [
                (
                    node,
                    self._queue.submit_script(
                        _HEARTBEAT_NODES,
                        [],
                        [ttl_ms(ttl), *self._beat_args(part)],
                        **self._cluster.at_node(node),
                    ),
                )
                for node, part in parts
            ],
        )
        added: list[PresenceRecord] = []
        for (_, part), reply in zip(parts, replies, strict=True):
            if reply is not None:
                added_at, moved_at = reply
                added += [PresenceRecord(*part[int(i) - 1]) for i in added_at]
                moved += [part[int(i) - 1] for i in moved_at]
        return added, moved

    async def _on_primaries(
        self, action: str, calls: Sequence[tuple[ClusterNode, Awaitable[_T]]]
    ) -> list[_T | None]:
        """Await one call per primary (or chunk): the replies, None for a primary that
        failed. Failures are logged; when every call failed, the first is raised."""
        results = await asyncio.gather(*(call for _, call in calls), return_exceptions=True)
        failed = [
            (node.name, result)
            for (node, _), result in zip(calls, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed and len(failed) == len(calls):
            with self._errors(action):
                raise failed[0][1]
        for name, error in failed:
            logger.warning("Could not %s on %s: %s", action, name, describe_error(error))
        return [None if isinstance(result, BaseException) else result for result in results]

    def _beat_args(self, part: Sequence[_Entry]) -> list[Any]:
        args: list[Any] = []
        for group, channel_id, info in part:
            members, infos = self.keyspace.presence(group)
            index = self.keyspace.presence_index(group)
            args += [members, infos, index, group, channel_id, info]
        return args

    async def presence_reap(self) -> list[PresenceRecord]:
        """Each primary's slot indexes, unless another process swept them just now. A
        primary that cannot be reached is logged and skipped (what the others reaped is
        returned, so that each leave is announced), raised only when all fail."""
        self._check_open()
        with self._errors("reap expired presence"):
            await self._cluster.ready()
        served = self._cluster.slots_by_primary()
        nodes = [node for node in self._cluster.primaries() if node.name in served]
        found = await self._on_primaries(
            "reap expired presence",
            [(node, self._sweep(node, served[node.name])) for node in nodes],
        )
        return [record for records in found if records for record in records]

    async def _sweep(self, node: ClusterNode, slots: list[int]) -> list[PresenceRecord]:
        if not await self._lease(node, slots[0]):
            return []
        return await self._reap_node(node, slots)

    async def _lease(self, node: ClusterNode, slot: int) -> bool:
        """True unless another process swept ``node`` within the last :data:`REAP_LEASE`.

        The lease lives in a slot of ``node``: a sweep needs that node only.
        """
        taken = await self._queue.script(
            _LEASE,
            [self.keyspace.reap_lease_of_slot(slot)],
            [self.origin, round(REAP_LEASE * 1000)],
            ordered=False,
            **self._cluster.at_node(node),
        )
        return bool(taken)

    async def _reap_node(self, node: ClusterNode, slots: list[int]) -> list[PresenceRecord]:
        reaped: list[PresenceRecord] = []
        indexes = [self.keyspace.presence_index_of_slot(slot) for slot in slots]
        for part in chunks(indexes, INDEXES_PER_SCRIPT):
            for _ in range(REAP_ROUNDS):
                more, flat, _ = await self._queue.script(
                    _REAP_NODES,
                    [],
                    [REAP_LIMIT, self.keyspace.group_head, "}", *part],
                    ordered=False,
                    **self._cluster.at_node(node),
                )
                reaped += records_of(flat)
                if not int(more):
                    break
        return reaped

    # -- the rest ------------------------------------------------------------------------

    def health(self) -> LayerHealth:
        links = self._links.values()
        errors = [link.last_error for link in links if link.last_error]
        down = [link.down_since for link in links if link.down_since is not None]
        return LayerHealth(
            url=redact_url(self.url),
            connected=bool(self._up),
            subscribed_groups=len(self._groups),
            reconnects=sum(link.reconnects for link in links),
            last_error=errors[-1] if errors else None,
            details={
                "address": self._address,
                "primaries": {name: link.connected for name, link in self._links.items()},
                "down_since": min(down) if down else None,
                "undecodable": self._undecodable,
            },
        )
