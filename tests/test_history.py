"""Choosing a history store by URL, and its bounds from the environment."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import nexios.history
from nexios.exceptions import ConfigurationError
from nexios.history import (
    HistoryLimits,
    MemoryHistoryStore,
    SqliteHistoryStore,
    history_from_url,
    limits_from_env,
)


def test_memory_url() -> None:
    limits = HistoryLimits(max_entries=10, max_age=None)
    store = history_from_url("memory://", limits=limits)
    assert isinstance(store, MemoryHistoryStore) and store.limits is limits
    assert history_from_url("MEMORY://").limits == HistoryLimits()


@pytest.mark.anyio
async def test_sqlite_url_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = history_from_url("sqlite:///data/history.db")
    assert isinstance(store, SqliteHistoryStore)
    assert store.path == "data/history.db"
    await store.close()
    assert (tmp_path / "data" / "history.db").exists()


@pytest.mark.anyio
async def test_sqlite_url_four_slashes_is_absolute(tmp_path: Path) -> None:
    limits = HistoryLimits(max_entries=5)
    absolute = tmp_path / "abs" / "history.db"
    store = history_from_url(f"sqlite:///{absolute}", limits=limits)  # absolute starts with /
    assert isinstance(store, SqliteHistoryStore)
    assert store.path == str(absolute) and store.limits is limits
    await store.close()
    assert absolute.exists()


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://cache.example:6380"])
def test_redis_url_imports_the_redis_store_lazily(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, Any]] = []

    class FakeRedisHistoryStore:
        def __init__(self, url: str, *, limits: HistoryLimits | None = None) -> None:
            created.append((url, limits))

    fake = types.ModuleType("nexios.history.redis")
    fake.RedisHistoryStore = FakeRedisHistoryStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nexios.history.redis", fake)
    limits = HistoryLimits(max_entries=3)
    store = history_from_url(url, limits=limits)
    assert isinstance(store, FakeRedisHistoryStore)
    assert created == [(url, limits)]


@pytest.mark.parametrize(
    "url",
    ["postgres://db/history", "memory", "", "file:///tmp/h.db", "/var/lib/history.db"],
)
def test_unknown_scheme_says_which_schemes_work(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"memory://.*sqlite:///.*redis://"):
        history_from_url(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/history.db"])
def test_sqlite_url_without_path_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("sqlite:///relative/path.db")):
        history_from_url(url)


def test_url_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="str"):
        history_from_url(None)  # type: ignore[arg-type]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("NEXIOS_HISTORY_MAX_ENTRIES", raising=False)
    monkeypatch.delenv("NEXIOS_HISTORY_MAX_AGE", raising=False)
    return monkeypatch


def test_limits_from_env_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert limits_from_env() == HistoryLimits()
    clean_env.setenv("NEXIOS_HISTORY_MAX_ENTRIES", "")
    assert limits_from_env() == HistoryLimits()


def test_limits_from_env_reads_both(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NEXIOS_HISTORY_MAX_ENTRIES", "250")
    clean_env.setenv("NEXIOS_HISTORY_MAX_AGE", "3600.5")
    assert limits_from_env() == HistoryLimits(max_entries=250, max_age=3600.5)


@pytest.mark.parametrize("value", ["none", "None", " NONE "])
def test_limits_from_env_no_age_bound(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("NEXIOS_HISTORY_MAX_AGE", value)
    assert limits_from_env() == HistoryLimits(max_age=None)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "1e3"])
def test_limits_from_env_bad_max_entries(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("NEXIOS_HISTORY_MAX_ENTRIES", value)
    with pytest.raises(ConfigurationError, match=r"NEXIOS_HISTORY_MAX_ENTRIES.*at least 1"):
        limits_from_env()


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "null"])
def test_limits_from_env_bad_max_age(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("NEXIOS_HISTORY_MAX_AGE", value)
    with pytest.raises(ConfigurationError, match=r"NEXIOS_HISTORY_MAX_AGE.*'none'"):
        limits_from_env()


def test_public_names() -> None:
    for name in nexios.history.__all__:
        assert hasattr(nexios.history, name), name
