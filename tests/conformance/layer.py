"""The behaviour every :class:`~nexios.layers.base.ChannelLayer` must show.

Subclass :class:`ChannelLayerConformance` in a ``test_*`` module and provide two
fixtures:

- ``layer``: a started layer whose receiver is the ``recorder`` fixture;
- ``second_layer``: another started instance on the same backend, standing for another
  process (so it must publish with another origin), whose receiver is
  ``second_recorder`` — or ``None`` for a one-process layer, which skips the
  cross-process tests.

Saved messages use the layer's own default history store (fixture ``history``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import orjson
import pytest

from nexios.exceptions import ConfigurationError
from nexios.history.base import HistoryStore
from nexios.layers import base
from nexios.layers.base import ChannelLayer, PresenceRecord, WireMessage

__all__ = ["ChannelLayerConformance", "Recorder", "eventually"]

Delivered = list[tuple[str, WireMessage]]


class Recorder:
    """A receiver that keeps what arrives and lets a test wait until enough has."""

    def __init__(self) -> None:
        self.messages: Delivered = []
        self._arrived = asyncio.Event()

        self.tasks: dict[str, set[asyncio.Task[object] | None]] = {}
        """Per group, the tasks the receiver was called from."""

    def __call__(self, group: str, message: WireMessage) -> None:
        self.messages.append((group, message))
        self.tasks.setdefault(group, set()).add(asyncio.current_task())
        self._arrived.set()

    def data(self) -> list[tuple[str, bytes]]:
        return [(group, message.data) for group, message in self.messages]

    async def wait_for(self, done: Callable[[Delivered], bool], timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not done(self.messages):
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_count(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda messages: len(messages) >= count, timeout)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``check`` until true; only for what no event announces (TTL expiry)."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


def _other(second_layer: ChannelLayer | None) -> ChannelLayer:
    if second_layer is None:
        pytest.skip("this layer has no second process to talk to")
    return second_layer


def _text(data: str) -> WireMessage:
    return WireMessage("text", data.encode())


async def _ids(layer: ChannelLayer, group: str) -> set[str]:
    return {record.channel_id for record in await layer.presence_list(group)}


class ChannelLayerConformance:
    """Inherit, provide ``layer`` and ``second_layer``; every test below then runs."""

    @pytest.fixture
    def recorder(self) -> Recorder:
        return Recorder()

    @pytest.fixture
    def second_recorder(self) -> Recorder:
        return Recorder()

    @pytest.fixture
    async def history(self, layer: ChannelLayer) -> AsyncIterator[HistoryStore]:
        store = layer.default_history()
        yield store
        await store.close()

    # lifecycle and health

    @pytest.mark.anyio
    async def test_health_of_a_started_layer(self, layer: ChannelLayer) -> None:
        health = layer.health()
        assert health.connected
        assert health.url == layer.url or "***" in health.url
        assert health.subscribed_groups == 0
        assert health.reconnects == 0
        await layer.subscribe("a")
        await layer.subscribe("b")
        await layer.subscribe("b")
        assert layer.health().subscribed_groups == 2
        await layer.unsubscribe("a")
        await layer.unsubscribe("never-subscribed")
        assert layer.health().subscribed_groups == 1

    @pytest.mark.anyio
    async def test_stop_is_idempotent(self, layer: ChannelLayer) -> None:
        await layer.subscribe("a")
        await layer.stop()
        await layer.stop()
        health = layer.health()
        assert not health.connected
        assert health.subscribed_groups == 0

    # publish and subscribe

    @pytest.mark.anyio
    async def test_publish_to_a_group_nobody_subscribed(self, layer: ChannelLayer) -> None:
        await layer.publish("nobody", _text("lost"))

    @pytest.mark.anyio
    async def test_other_instance_receives_bytes_unchanged(
        self,
        layer: ChannelLayer,
        second_layer: ChannelLayer | None,
        second_recorder: Recorder,
    ) -> None:
        other = _other(second_layer)
        await other.subscribe("room")
        sent = [
            WireMessage("json", b'{"a":[1,2.5,null],"s":"\\u00e9"}', seq=1),
            WireMessage("text", "héllo ✓".encode(), seq=2),
            WireMessage("bytes", bytes(range(256)) * 4, seq=3),
            WireMessage("bytes", b"", seq=0),
            WireMessage("json", b"[" + b"1," * 50_000 + b"1]", seq=2**40),
        ]
        for message in sent:
            await layer.publish("room", message)
        await second_recorder.wait_for_count(len(sent))
        received = second_recorder.messages
        assert [group for group, _ in received] == ["room"] * len(sent)
        assert [(m.kind, m.data, m.seq) for _, m in received] == [
            (m.kind, m.data, m.seq) for m in sent
        ]
        origin = getattr(layer, "origin", base.PROCESS_ID)
        assert {m.origin for _, m in received} == {origin}

    @pytest.mark.anyio
    async def test_publisher_does_not_receive_its_own_messages(
        self,
        layer: ChannelLayer,
        recorder: Recorder,
        second_layer: ChannelLayer | None,
        second_recorder: Recorder,
    ) -> None:
        other = _other(second_layer)
        await layer.subscribe("room")
        await other.subscribe("room")
        await layer.publish("room", _text("mine"))
        await second_recorder.wait_for_count(1)
        # The broker fans "mine" out before it even sees "theirs", so once "theirs"
        # arrived here, "mine" would have arrived too if it were not skipped.
        await other.publish("room", _text("theirs"))
        await recorder.wait_for_count(1)
        await layer.publish("room", _text("mine again"))
        await second_recorder.wait_for_count(2)
        assert recorder.data() == [("room", b"theirs")]
        assert second_recorder.data() == [("room", b"mine"), ("room", b"mine again")]

    @pytest.mark.anyio
    async def test_only_subscribed_groups_are_delivered(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        await layer.subscribe("room")
        await other.publish("elsewhere", _text("not for us"))
        await other.publish("room", _text("for us"))
        await recorder.wait_for_count(1)
        assert recorder.data() == [("room", b"for us")]

    @pytest.mark.anyio
    async def test_subscribing_twice_delivers_once(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        await layer.subscribe("room")
        await layer.subscribe("room")
        await layer.subscribe("marker")
        await other.publish("room", _text("once"))
        await other.publish("marker", _text("end"))
        await recorder.wait_for(lambda messages: messages[-1][0] == "marker")
        assert recorder.data() == [("room", b"once"), ("marker", b"end")]

    @pytest.mark.anyio
    async def test_unsubscribe_stops_delivery(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        await layer.subscribe("left")
        await layer.subscribe("stayed")
        await other.publish("left", _text("before"))
        await recorder.wait_for_count(1)
        await layer.unsubscribe("left")
        await other.publish("left", _text("after"))
        await other.publish("stayed", _text("marker"))
        await recorder.wait_for(lambda messages: messages[-1][0] == "stayed")
        assert recorder.data() == [("left", b"before"), ("stayed", b"marker")]
        # and subscribing again resumes it
        await layer.subscribe("left")
        await other.publish("left", _text("again"))
        await recorder.wait_for_count(3)
        assert recorder.data()[-1] == ("left", b"again")

    @pytest.mark.anyio
    async def test_many_groups_on_one_layer(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        groups = [f"g{i}" for i in range(50)]
        for group in groups:
            await layer.subscribe(group)
        for group in groups:
            await other.publish(group, _text(group))
        await recorder.wait_for_count(len(groups))
        assert recorder.data() == [(group, group.encode()) for group in groups]

    # presence

    @pytest.mark.anyio
    async def test_presence_add_list_remove(self, layer: ChannelLayer) -> None:
        await layer.presence_add("room", "c1", b'{"name":"ada"}', ttl=30)
        await layer.presence_add("room", "c2", b"", ttl=30)
        await layer.presence_add("lobby", "c3", b"\x00\xff", ttl=30)
        assert set(await layer.presence_list("room")) == {
            PresenceRecord("room", "c1", b'{"name":"ada"}'),
            PresenceRecord("room", "c2", b""),
        }
        assert await layer.presence_list("lobby") == [PresenceRecord("lobby", "c3", b"\x00\xff")]
        assert await layer.presence_remove("room", "c1") is True
        assert await layer.presence_remove("room", "c1") is False
        assert await layer.presence_remove("nowhere", "c1") is False
        assert await layer.presence_list("room") == [PresenceRecord("room", "c2", b"")]
        assert await layer.presence_remove("room", "c2") is True
        assert await layer.presence_list("room") == []

    @pytest.mark.anyio
    async def test_presence_of_unknown_group_is_empty(self, layer: ChannelLayer) -> None:
        assert await layer.presence_list("nobody-here") == []

    @pytest.mark.anyio
    async def test_presence_add_again_replaces_info(self, layer: ChannelLayer) -> None:
        await layer.presence_add("room", "c1", b"old", ttl=30)
        await layer.presence_add("room", "c1", b"new", ttl=30)
        assert await layer.presence_list("room") == [PresenceRecord("room", "c1", b"new")]

    @pytest.mark.anyio
    async def test_presence_is_shared_between_instances(
        self, layer: ChannelLayer, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        await layer.presence_add("room", "here", b"1", ttl=30)
        await other.presence_add("room", "there", b"2", ttl=30)
        for instance in (layer, other):
            assert await _ids(instance, "room") == {"here", "there"}
        assert await other.presence_remove("room", "here") is True
        assert await _ids(layer, "room") == {"there"}

    @pytest.mark.anyio
    async def test_expired_members_are_not_listed(self, layer: ChannelLayer) -> None:
        await layer.presence_add("room", "short", b"", ttl=0.05)
        await layer.presence_add("room", "long", b"", ttl=30)
        assert await _ids(layer, "room") == {"short", "long"}

        async def only_long_left() -> bool:
            return await _ids(layer, "room") == {"long"}

        await eventually(only_long_left)

    @pytest.mark.anyio
    async def test_refresh_extends_only_existing_members(self, layer: ChannelLayer) -> None:
        await layer.presence_add("room", "kept", b"k", ttl=0.3)
        await layer.presence_add("room", "dropped", b"d", ttl=0.3)
        await layer.presence_add("room", "left", b"l", ttl=30)
        assert await layer.presence_remove("room", "left")
        await layer.presence_refresh(
            [("room", "kept"), ("room", "left"), ("room", "ghost"), ("nowhere", "kept")], ttl=30
        )

        async def dropped_expired() -> bool:
            return "dropped" not in await _ids(layer, "room")

        await eventually(dropped_expired)
        # refreshing neither brings back a member that left nor invents one
        assert await layer.presence_list("room") == [PresenceRecord("room", "kept", b"k")]
        assert await layer.presence_list("nowhere") == []
        await layer.presence_refresh([], ttl=30)

    @pytest.mark.anyio
    async def test_reap_returns_expired_members_once(self, layer: ChannelLayer) -> None:
        await layer.presence_add("room", "gone", b"1", ttl=0.05)
        await layer.presence_add("lobby", "gone too", b"2", ttl=0.05)
        await layer.presence_add("room", "alive", b"3", ttl=30)

        async def expired() -> bool:
            return await _ids(layer, "room") == {"alive"} and not await _ids(layer, "lobby")

        await eventually(expired)
        assert set(await layer.presence_reap()) == {
            PresenceRecord("room", "gone", b"1"),
            PresenceRecord("lobby", "gone too", b"2"),
        }
        assert await layer.presence_reap() == []
        assert await layer.presence_remove("room", "gone") is False
        assert await layer.presence_list("room") == [PresenceRecord("room", "alive", b"3")]

    @pytest.mark.anyio
    async def test_concurrent_reaps_report_each_member_once(
        self, layer: ChannelLayer, second_layer: ChannelLayer | None
    ) -> None:
        # Two processes when the layer has them, else concurrent calls on one.
        reapers = [layer, second_layer or layer] * 3
        members = {PresenceRecord(f"g{i % 7}", f"c{i}", str(i).encode()) for i in range(80)}
        for record in members:
            await layer.presence_add(record.group, record.channel_id, record.info, ttl=0.05)
        await layer.presence_add("g0", "alive", b"", ttl=30)

        async def all_expired() -> bool:
            for group in {record.group for record in members}:
                if await _ids(layer, group) - {"alive"}:
                    return False
            return True

        await eventually(all_expired)
        reaped: list[PresenceRecord] = []

        async def reap(reaper: ChannelLayer) -> None:
            reaped.extend(await reaper.presence_reap())

        async with anyio.create_task_group() as tasks:
            for reaper in reapers:
                tasks.start_soon(reap, reaper)
        assert len(reaped) == len(members)
        assert set(reaped) == members
        assert await _ids(layer, "g0") == {"alive"}

    # the receiver

    @pytest.mark.anyio
    async def test_receiver_is_called_in_publish_order_from_a_reader_task(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        other = _other(second_layer)
        groups = [f"g{i}" for i in range(5)]
        for group in groups:
            assert await layer.subscribe(group) is True
        # concurrent publishers: each group's messages must arrive in its publish order
        await asyncio.gather(
            *(
                other.publish(group, WireMessage("json", b"%d" % i, seq=i))
                for i in range(1, 61)
                for group in groups
            )
        )
        await recorder.wait_for_count(300)
        for group in groups:
            assert [m.seq for g, m in recorder.messages if g == group] == list(range(1, 61))
        # synchronously, from a reader task: never from the publishers' tasks, and all of
        # a group's messages from one task (the one reading its broker connection)
        for group in groups:
            (task,) = recorder.tasks[group]
            assert task is not None and task is not asyncio.current_task()

    # group names

    @pytest.mark.anyio
    @pytest.mark.parametrize("group", ["lone \udcff surrogate", "x" * 1025, "é" * 600])
    async def test_bad_group_names_change_nothing(
        self, layer: ChannelLayer, history: HistoryStore, group: str
    ) -> None:
        await layer.subscribe("fine")
        calls = [
            layer.subscribe(group),
            layer.publish(group, _text("x")),
            layer.publish_saved(group, "text", b"x", history=history),
            layer.publish_once(group, _text("x"), idempotency_key="k"),
            layer.presence_add(group, "c1", b"", ttl=30),
            layer.presence_list(group),
        ]
        for call in calls:
            with pytest.raises(ConfigurationError, match="group name"):
                await call
        assert layer.health().subscribed_groups == 1
        # undoing what cannot have been done is not an error
        await layer.unsubscribe(group)
        assert await layer.presence_remove(group, "c1") is False
        assert await layer.presence_heartbeat([(group, "c1", b"")], ttl=30) == []
        assert await layer.presence_reap() == []
        assert await history.groups() == []

    @pytest.mark.anyio
    async def test_the_longest_group_name_works(
        self, layer: ChannelLayer, recorder: Recorder, second_layer: ChannelLayer | None
    ) -> None:
        group = "é" * 512  # 1024 bytes
        await layer.presence_add(group, "c1", b"i", ttl=30)
        assert await layer.presence_list(group) == [PresenceRecord(group, "c1", b"i")]
        if second_layer is not None:
            await layer.subscribe(group)
            await second_layer.publish(group, _text("long"))
            await recorder.wait_for_count(1)
            assert recorder.data() == [(group, b"long")]

    # saved messages

    @pytest.mark.anyio
    async def test_publish_saved_numbers_stores_and_publishes(
        self,
        layer: ChannelLayer,
        history: HistoryStore,
        second_layer: ChannelLayer | None,
        second_recorder: Recorder,
    ) -> None:
        if second_layer is not None:
            await second_layer.subscribe("room")
        results = [
            await layer.publish_saved(
                "room", "json", b'{"n":%d}' % i, history=history, seq_field="seq"
            )
            for i in range(3)
        ]
        entries = [r.entry for r in results]
        assert all(e is not None and not e.duplicate for e in entries)
        assert [e.seq for e in entries if e] == [1, 2, 3]
        assert len({e.epoch for e in entries if e}) == 1 and not any(r.duplicate for r in results)
        stamped = [{"seq": 1, "n": 0}, {"seq": 2, "n": 1}, {"seq": 3, "n": 2}]
        # History keeps what members received: the seq field is in the saved data.
        page = await history.read("room")
        assert [orjson.loads(e.data) for e in page] == stamped
        assert [orjson.loads(e.data) for e in entries if e] == stamped
        assert page.epoch == entries[0].epoch  # type: ignore[union-attr]
        if second_layer is None:
            return
        assert [r.receivers for r in results] == [1, 1, 1]
        await second_recorder.wait_for_count(3)
        received = [m for _, m in second_recorder.messages]
        assert [(m.seq, m.epoch) for m in received] == [(e.seq, e.epoch) for e in entries if e]
        assert [orjson.loads(m.data) for m in received] == stamped
        assert [orjson.loads(m.delivered_data()) for m in received] == stamped

    @pytest.mark.anyio
    async def test_publish_saved_with_a_used_key_does_nothing(
        self,
        layer: ChannelLayer,
        history: HistoryStore,
        second_layer: ChannelLayer | None,
        second_recorder: Recorder,
    ) -> None:
        if second_layer is not None:
            await second_layer.subscribe("room")
        first = await layer.publish_saved(
            "room", "text", b"once", history=history, idempotency_key="k"
        )
        retry = await layer.publish_saved(
            "room", "text", b"once", history=history, idempotency_key="k"
        )
        assert first.entry is not None and retry.entry is not None
        assert not first.duplicate and retry.duplicate and retry.receivers == 0
        assert (retry.entry.seq, retry.entry.epoch) == (first.entry.seq, first.entry.epoch)
        assert [e.data for e in await history.read("room")] == [b"once"]
        if second_layer is not None:
            await layer.publish_saved("room", "text", b"marker", history=history)
            await second_recorder.wait_for_count(2)
            assert second_recorder.data() == [("room", b"once"), ("room", b"marker")]

    @pytest.mark.anyio
    async def test_publish_once_delivers_once_per_key(
        self, layer: ChannelLayer, second_layer: ChannelLayer | None, second_recorder: Recorder
    ) -> None:
        if second_layer is not None:
            await second_layer.subscribe("room")
        first = await layer.publish_once("room", _text("a"), idempotency_key="k1")
        retry = await layer.publish_once("room", _text("a"), idempotency_key="k1")
        other_key = await layer.publish_once("room", _text("b"), idempotency_key="k2")
        other_group = await layer.publish_once("lobby", _text("c"), idempotency_key="k1")
        assert [r.duplicate for r in (first, retry, other_key, other_group)] == [
            False,
            True,
            False,
            False,
        ]
        assert retry.receivers == 0 and retry.entry is None
        if second_layer is not None:
            assert (first.receivers, other_key.receivers) == (1, 1)
            await layer.publish("room", _text("marker"))
            await second_recorder.wait_for_count(3)
            assert second_recorder.data() == [("room", b"a"), ("room", b"b"), ("room", b"marker")]

    # presence heartbeat

    @pytest.mark.anyio
    async def test_heartbeat_extends_and_adds_back_what_vanished(self, layer: ChannelLayer) -> None:
        # "kept" must outlive however long reaping "expiring" takes on a busy machine
        await layer.presence_add("room", "kept", b"k", ttl=30)
        await layer.presence_add("room", "expiring", b"e", ttl=0.05)
        await layer.presence_add("room", "left", b"l", ttl=30)
        assert await layer.presence_remove("room", "left")

        async def reaped() -> bool:
            return PresenceRecord("room", "expiring", b"e") in await layer.presence_reap()

        await eventually(reaped)  # reaped while "this process" stalled
        entries = [
            ("room", "kept", b"k"),
            ("room", "expiring", b"e"),
            ("lobby", "new", b"n"),
        ]
        added = await layer.presence_heartbeat(entries, ttl=30)
        assert sorted(added, key=lambda r: r.channel_id) == [
            PresenceRecord("room", "expiring", b"e"),
            PresenceRecord("lobby", "new", b"n"),
        ]
        assert await _ids(layer, "room") == {"kept", "expiring"}
        assert await layer.presence_list("lobby") == [PresenceRecord("lobby", "new", b"n")]
        # extended: nothing expires within the old ttl, and a second beat adds nothing
        assert await layer.presence_heartbeat(entries, ttl=30) == []
        assert await layer.presence_heartbeat([], ttl=30) == []

    @pytest.mark.anyio
    async def test_heartbeat_keeps_members_alive_past_their_ttl(self, layer: ChannelLayer) -> None:
        # A beat within the first ttl extends c1 far past it; c2, never beaten, expires.
        # (Short beats in a timed loop failed when the machine stalled for one ttl.)
        await layer.presence_add("room", "c1", b"1", ttl=1.0)
        await layer.presence_add("room", "c2", b"2", ttl=1.0)
        assert await layer.presence_heartbeat([("room", "c1", b"1")], ttl=30) == []

        async def c2_reaped() -> bool:
            return PresenceRecord("room", "c2", b"2") in await layer.presence_reap()

        await eventually(c2_reaped)
        assert await layer.presence_heartbeat([("room", "c1", b"1")], ttl=30) == []
        assert await _ids(layer, "room") == {"c1"}
