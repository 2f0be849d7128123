"""The Redis Cluster channel layer: the conformance suite on a real cluster (three
primaries, three replicas), then what only a cluster has: shards, moving slots,
failovers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from nexios.layers.redis_cluster import RedisClusterLayer
from tests.conformance.layer import ChannelLayerConformance, Recorder

OTHER_ORIGIN = uuid.uuid4().bytes
"""The origin of a layer that plays "another process" inside this one."""


async def started(
    url: str, recorder: Recorder | None = None, *, origin: bytes | None = None, **options: object
) -> RedisClusterLayer:
    layer = RedisClusterLayer(url, origin=origin, **options)  # type: ignore[arg-type]
    await layer.start(recorder or Recorder())
    return layer


class TestRedisClusterLayer(ChannelLayerConformance):
    @pytest.fixture
    async def layer(self, cluster_url: str, recorder: Recorder) -> AsyncIterator[RedisClusterLayer]:
        layer = await started(cluster_url, recorder)
        yield layer
        await layer.stop()

    @pytest.fixture
    async def second_layer(
        self, cluster_url: str, second_recorder: Recorder
    ) -> AsyncIterator[RedisClusterLayer]:
        layer = await started(cluster_url, second_recorder, origin=OTHER_ORIGIN)
        yield layer
        await layer.stop()
