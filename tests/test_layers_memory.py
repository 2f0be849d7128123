"""The in-process channel layer: the conformance suite, one process only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nexios.layers import layer_from_url
from nexios.layers.base import WireMessage
from nexios.layers.memory import MemoryLayer
from tests.conformance.layer import ChannelLayerConformance, Recorder


class TestMemoryLayer(ChannelLayerConformance):
    @pytest.fixture
    async def layer(self, recorder: Recorder) -> AsyncIterator[MemoryLayer]:
        layer = MemoryLayer()
        await layer.start(recorder)
        yield layer
        await layer.stop()

    @pytest.fixture
    def second_layer(self) -> None:
        return None


def test_layer_from_url_builds_a_memory_layer() -> None:
    layer = layer_from_url("memory://")
    assert isinstance(layer, MemoryLayer)
    assert layer.url == "memory://"


@pytest.mark.anyio
async def test_publish_has_no_one_to_reach_but_is_counted() -> None:
    recorder = Recorder()
    layer = MemoryLayer()
    await layer.start(recorder)
    await layer.subscribe("room")
    await layer.publish("room", WireMessage("text", b"hi"))
    assert recorder.messages == []
    assert layer.health().details["published"] == 1
    await layer.stop()


@pytest.mark.anyio
async def test_there_is_no_link_to_lose() -> None:
    events: list[bool] = []
    layer = MemoryLayer()
    await layer.start(Recorder(), on_link=events.append)
    assert await layer.subscribe("room") is True
    await layer.stop()
    assert events == []
