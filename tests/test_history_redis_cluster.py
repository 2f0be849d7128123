"""The Redis Streams history store on a Redis Cluster: the conformance suite, then what
only a cluster has."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nexios.history.base import HistoryLimits
from nexios.history.redis import RedisHistoryStore
from tests.conformance.history import HistoryStoreConformance, MakeStore


@pytest.fixture
async def make_cluster_store(cluster_url: str) -> AsyncIterator[MakeStore]:
    stores: list[RedisHistoryStore] = []

    def make(limits: HistoryLimits | None = None) -> RedisHistoryStore:
        store = RedisHistoryStore(cluster_url, limits=limits)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


class TestRedisClusterHistory(HistoryStoreConformance):
    @pytest.fixture
    def make_store(self, make_cluster_store: MakeStore) -> MakeStore:
        return make_cluster_store
