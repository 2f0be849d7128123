"""nexios.events: on / once / off / emit / namespace; listener errors are logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.events import EventEmitter

pytestmark = pytest.mark.anyio


async def test_on_as_decorator_and_direct_call() -> None:
    events = EventEmitter()
    got: list[tuple[str, Any]] = []

    @events.on("user.joined")
    async def async_listener(data: Any) -> None:
        got.append(("async", data))

    def sync_listener(data: Any) -> None:
        got.append(("sync", data))

    assert events.on("user.joined", sync_listener) is sync_listener
    assert async_listener.__name__ == "async_listener"
    assert await events.emit("user.joined", {"name": "ada"}) == 2
    assert got == [("async", {"name": "ada"}), ("sync", {"name": "ada"})]


async def test_emit_passes_args_and_kwargs_and_counts() -> None:
    events = EventEmitter()
    got: list[Any] = []
    events.on("e", lambda *a, **k: got.append((a, k)))
    assert await events.emit("e", 1, 2, key="v") == 1
    assert got == [((1, 2), {"key": "v"})]
    assert await events.emit("nobody.listens") == 0


async def test_once_runs_a_single_time() -> None:
    events = EventEmitter()
    got: list[int] = []

    @events.once("tick")
    async def first(n: int) -> None:
        got.append(n)

    events.on("tick", lambda n: got.append(n * 10))
    await events.emit("tick", 1)
    await events.emit("tick", 2)
    assert got == [1, 10, 20]
    assert events.listeners("tick") != [] and first not in events.listeners("tick")


async def test_once_on_one_event_does_not_affect_the_same_listener_elsewhere() -> None:
    events = EventEmitter()
    got: list[str] = []

    def listener(name: str) -> None:
        got.append(name)

    events.on("a", listener)
    events.once("b", listener)
    await events.emit("a", "a1")
    await events.emit("a", "a2")
    await events.emit("b", "b1")
    await events.emit("b", "b2")
    assert got == ["a1", "a2", "b1"]


async def test_off_then_on_again_is_not_once_any_more() -> None:
    events = EventEmitter()
    got: list[int] = []

    def listener(n: int) -> None:
        got.append(n)

    events.once("e", listener)
    events.off("e", listener)
    events.on("e", listener)
    await events.emit("e", 1)
    await events.emit("e", 2)
    assert got == [1, 2]


async def test_nested_emit_does_not_rerun_a_once_listener() -> None:
    events = EventEmitter()
    got: list[int] = []

    @events.once("e")
    async def reentrant(n: int) -> None:
        got.append(n)
        await events.emit("e", n + 1)

    await events.emit("e", 1)
    assert got == [1]


async def test_off_one_or_all() -> None:
    events = EventEmitter()
    got: list[str] = []

    class Listener:
        def method(self, value: str) -> None:
            got.append("method " + value)

    owner = Listener()
    events.on("e", owner.method)

    def plain(value: str) -> None:
        got.append("plain " + value)

    events.on("e", plain)
    events.off("e", owner.method)  # a new bound-method object, equal to the registered one
    await events.emit("e", "1")
    assert got == ["plain 1"]
    events.off("e")
    assert await events.emit("e", "2") == 0
    events.off("e", plain)  # unknown: ignored
    events.off("never.registered")


async def test_namespace_prefixes_names_and_shares_listeners() -> None:
    events = EventEmitter()
    chat = events.namespace("chat")
    got: list[str] = []
    chat.on("message", lambda text: got.append("chat.message " + text))
    events.on("chat.message", lambda text: got.append("root " + text))
    await events.emit("chat.message", "a")
    await chat.emit("message", "b")
    assert got == ["chat.message a", "root a", "chat.message b", "root b"]
    nested = chat.namespace("room")
    nested.once("join", lambda who: got.append("join " + who))
    assert len(events.listeners("chat.room.join")) == 1
    await events.emit("chat.room.join", "ada")
    await nested.emit("join", "bob")
    assert got[-1] == "join ada"
    chat.off("message")
    assert events.listeners("chat.message") == []


async def test_listener_errors_are_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = EventEmitter()
    got: list[str] = []

    @events.on("e")
    async def broken_async(data: Any) -> None:
        raise RuntimeError("async listener broke")

    @events.on("e")
    def broken_sync(data: Any) -> None:
        raise ValueError("sync listener broke")

    events.on("e", lambda data: got.append("ran"))
    with caplog.at_level(logging.ERROR, logger="nexios.events"):
        assert await events.emit("e", None) == 3
    assert got == ["ran"]
    errors = [r for r in caplog.records if r.name == "nexios.events"]
    assert len(errors) == 2
    assert all(r.levelno == logging.ERROR and r.exc_info for r in errors)
    assert "broken_async" in errors[0].getMessage() and "'e'" in errors[0].getMessage()
    assert "RuntimeError: async listener broke" in caplog.text
    assert "ValueError: sync listener broke" in caplog.text


@pytest.mark.parametrize("name", ["", None, 3])
async def test_bad_names_and_listeners(name: Any) -> None:
    events = EventEmitter()
    with pytest.raises(ValueError, match="non-empty str"):
        events.on(name, print)
    with pytest.raises(ValueError, match="non-empty str"):
        await events.emit(name)
    with pytest.raises(ValueError, match="non-empty str"):
        events.namespace(name)


async def test_listener_must_be_callable() -> None:
    with pytest.raises(TypeError, match="must be callable, got 'nope'"):
        EventEmitter().on("e", "nope")  # type: ignore[call-overload]


async def test_app_events() -> None:
    app = NexiosApp()
    got: list[Any] = []
    app.events.on("ping", got.append)
    await app.events.emit("ping", {"n": 1})
    assert got == [{"n": 1}]
    assert isinstance(app.events, EventEmitter)
