"""nexios.metrics: hooks → Prometheus exposition, flushing, the ASGI endpoint, and the
multiprocess mode with real worker processes (sums, dead workers, a clean start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from nexios.exceptions import ConfigurationError
from nexios.metrics import (
    EVICTION_REASONS,
    HANDSHAKE_OUTCOMES,
    MULTIPROC_ENV,
    SAMPLE_EVERY,
    Metrics,
    close_code_label,
    forget_dead_processes,
    prepare_multiprocess_dir,
)
from tests.support.server import REPO_ROOT


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    found = {}
    decoded = text.decode() if isinstance(text, bytes) else text
    for family in text_string_to_metric_families(decoded):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: bytes | str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture(autouse=True)
def single_process() -> Iterator[None]:
    """No multiprocess folder in this process, before and after each test (tests here
    call prepare_multiprocess_dir, which sets the variable for the workers they start)."""
    saved = os.environ.pop(MULTIPROC_ENV, None)
    yield
    os.environ.pop(MULTIPROC_ENV, None)
    if saved is not None:
        os.environ[MULTIPROC_ENV] = saved


# --------------------------------------------------------------------------- one process


def test_every_metric_is_exported_from_the_start() -> None:
    text = Metrics().exposition()
    for name in (
        "nexios_connections",
        "nexios_messages_received_total",
        "nexios_received_bytes_total",
        "nexios_messages_sent_total",
        "nexios_sent_bytes_total",
        "nexios_broadcasts_total",
        "nexios_deliveries_total",
        "nexios_outbox_drops_total",
        "nexios_layer_reconnects_total",
        "nexios_publish_errors_total",
        "nexios_outbox_depth_count",
        "nexios_write_buffer_bytes_count",
        "nexios_send_seconds_count",
        "nexios_history_append_seconds_count",
    ):
        assert value(text, name) == 0, name
    for outcome in HANDSHAKE_OUTCOMES:
        assert value(text, "nexios_handshakes_total", outcome=outcome) == 0
    for reason in EVICTION_REASONS:
        assert value(text, "nexios_evictions_total", reason=reason) == 0
    for result in ("complete", "incomplete"):
        assert value(text, "nexios_recoveries_total", result=result) == 0
    assert value(text, "process_cpu_seconds_total") is not None  # single process only


def test_hooks_show_in_the_exposition() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.connection_opened()
    metrics.connection_closed(1000)
    metrics.connection_closed(None)
    metrics.handshake_refused("origin")
    metrics.handshake_refused("limit")
    metrics.handshake_refused("limit")
    metrics.message_received(10)
    metrics.message_received(5)
    metrics.message_sent(7)
    metrics.broadcast_published()
    metrics.delivered(members=100, nbytes=20)
    metrics.evicted("outbox_full")
    metrics.watch(dropped=lambda: 3)
    metrics.outbox_depth(5)
    metrics.write_buffer(5000)
    metrics.send_seconds(0.002)
    metrics.history_appended(0.0003)
    metrics.recovered(complete=True)
    metrics.recovered(complete=False)
    metrics.publish_failed()
    text = metrics.exposition()
    expected = {
        ("nexios_connections", ()): 1,
        ("nexios_handshakes_total", (("outcome", "accepted"),)): 3,
        ("nexios_handshakes_total", (("outcome", "origin"),)): 1,
        ("nexios_handshakes_total", (("outcome", "limit"),)): 2,
        ("nexios_connections_closed_total", (("code", "1000"),)): 1,
        ("nexios_connections_closed_total", (("code", "1006"),)): 1,
        ("nexios_messages_received_total", ()): 2,
        ("nexios_received_bytes_total", ()): 15,
        ("nexios_messages_sent_total", ()): 101,
        ("nexios_sent_bytes_total", ()): 7 + 100 * 20,
        ("nexios_broadcasts_total", ()): 1,
        ("nexios_deliveries_total", ()): 100,
        ("nexios_evictions_total", (("reason", "outbox_full"),)): 1,
        ("nexios_outbox_drops_total", ()): 3,
        ("nexios_outbox_depth_bucket", (("le", "4.0"),)): 0,
        ("nexios_outbox_depth_bucket", (("le", "8.0"),)): 1,
        ("nexios_write_buffer_bytes_bucket", (("le", "4096.0"),)): 0,
        ("nexios_write_buffer_bytes_bucket", (("le", "16384.0"),)): 1,
        ("nexios_send_seconds_bucket", (("le", "0.0025"),)): 1,
        ("nexios_send_seconds_bucket", (("le", "0.001"),)): 0,
        ("nexios_history_append_seconds_count", ()): 1,
        ("nexios_recoveries_total", (("result", "complete"),)): 1,
        ("nexios_recoveries_total", (("result", "incomplete"),)): 1,
        ("nexios_publish_errors_total", ()): 1,
    }
    found = samples(text)
    assert {key: found.get(key) for key in expected} == expected


def test_hot_path_totals_reach_prometheus_at_flush_only() -> None:
    metrics = Metrics()
    metrics.message_received(4)
    assert metrics.registry.get_sample_value("nexios_messages_received_total") == 0
    metrics.flush()
    assert metrics.registry.get_sample_value("nexios_messages_received_total") == 1
    metrics.flush()  # nothing new: not counted twice
    assert metrics.registry.get_sample_value("nexios_messages_received_total") == 1
    assert metrics.received_messages == 1 and metrics.received_bytes == 4


@pytest.mark.parametrize(
    ("code", "label"),
    [
        *((None, "1006"), (1000, "1000"), (1013, "1013"), (1015, "1015"), (3000, "3xxx")),
        *((4999, "4xxx"), (999, "other"), (1016, "other"), (2000, "other"), (5000, "other")),
    ],
)
def test_close_code_labels_are_a_bounded_set(code: int | None, label: str) -> None:
    assert close_code_label(code) == label


def test_unknown_reasons_are_refused_with_the_valid_ones() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="'origin'"):
        metrics.handshake_refused("because")
    with pytest.raises(ValueError, match="use one of"):
        metrics.handshake_refused("accepted")  # counted by connection_opened
    with pytest.raises(ValueError, match="outbox_full"):
        metrics.evicted("bored")


def test_sampled_is_one_in_sample_every() -> None:
    metrics = Metrics()
    picks = [metrics.sampled() for _ in range(SAMPLE_EVERY * 10)]
    assert sum(picks) == 10
    assert picks[SAMPLE_EVERY - 1] and not any(picks[: SAMPLE_EVERY - 1])


def test_watched_state_is_read_at_flush(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    state = {"groups": 3, "members": 40, "up": 1}
    metrics.watch(
        groups=lambda: state["groups"],
        members=lambda: state["members"],
        layer_up=lambda: state["up"],
    )
    metrics.flush()
    read = metrics.registry.get_sample_value
    assert (read("nexios_groups"), read("nexios_group_members"), read("nexios_layer_up")) == (
        3,
        40,
        1,
    )
    state.update(groups=2, up=0)
    metrics.flush()
    assert (read("nexios_groups"), read("nexios_layer_up")) == (2, 0)


@pytest.mark.parametrize(
    ("source", "metric"),
    [
        ("layer_reconnects", "nexios_layer_reconnects_total"),
        ("dropped", "nexios_outbox_drops_total"),
    ],
)
def test_watched_totals_follow_their_owners_count(source: str, metric: str) -> None:
    metrics = Metrics()
    count = {"n": 0}
    metrics.watch(**{source: lambda: count["n"]})
    read = metrics.registry.get_sample_value
    for n, expected in ((0, 0), (2, 2), (2, 2), (5, 5), (1, 6)):  # 1: a new layer object
        count["n"] = n
        metrics.flush()
        assert read(metric) == expected


def test_outboxes_are_sampled_into_histograms_at_flush() -> None:
    metrics = Metrics()
    outboxes = [(0, 0), (3, 0), (0, 5000), (700, 2_000_000)]
    metrics.watch(outboxes=lambda: outboxes)
    metrics.flush()
    read = metrics.registry.get_sample_value
    assert read("nexios_outbox_depth_count") == 2  # empty outboxes are not observed
    assert read("nexios_outbox_depth_bucket", {"le": "4.0"}) == 1
    assert read("nexios_outbox_depth_bucket", {"le": "512.0"}) == 1
    assert read("nexios_outbox_depth_bucket", {"le": "1024.0"}) == 2
    assert read("nexios_write_buffer_bytes_count") == 2
    assert read("nexios_write_buffer_bytes_bucket", {"le": "16384.0"}) == 1


@pytest.mark.anyio
async def test_timed_sends_and_background_timers_observe_send_seconds() -> None:
    metrics = Metrics()
    gate = asyncio.Event()

    async def send() -> None:
        await gate.wait()

    metrics.time_until(send())
    timed = asyncio.ensure_future(metrics.timed(send()))
    await asyncio.sleep(0)
    assert metrics.registry.get_sample_value("nexios_send_seconds_count") == 0
    gate.set()
    await timed
    with anyio.fail_after(5):
        while metrics.registry.get_sample_value("nexios_send_seconds_count") != 2:
            await asyncio.sleep(0)

    async def fails() -> None:
        raise OSError("peer gone")

    metrics.time_until(fails())
    for _ in range(3):
        await asyncio.sleep(0)
    assert metrics.registry.get_sample_value("nexios_send_seconds_count") == 2
    metrics.time_until(send())  # still pending at stop: cancelled, its coroutine closed
    gate.clear()
    await metrics.stop()
    assert metrics.registry.get_sample_value("nexios_send_seconds_count") == 2


def test_a_failing_source_is_logged_once_and_keeps_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    calls = {"n": 0}

    def members() -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("runtime gone")
        return 5

    metrics.watch(members=members)
    with caplog.at_level(logging.ERROR, logger="nexios.metrics"):
        for _ in range(3):
            metrics.flush()
    assert metrics.registry.get_sample_value("nexios_group_members") == 5
    assert [r.message for r in caplog.records].count(
        "Reading the 'members' metric failed; it keeps its last value"
    ) == 1


def test_flush_interval_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        Metrics(flush_interval=0)


@pytest.mark.anyio
async def test_start_flushes_periodically_and_stop_flushes_last() -> None:
    metrics = Metrics(flush_interval=0.01)
    await metrics.start()
    metrics.message_received(1)
    with anyio.fail_after(5):
        while metrics.registry.get_sample_value("nexios_messages_received_total") != 1:
            await anyio.sleep(0.005)
    metrics.message_received(1)
    await metrics.stop()
    assert metrics.registry.get_sample_value("nexios_messages_received_total") == 2


@pytest.mark.anyio
async def test_asgi_endpoint_serves_text_and_openmetrics() -> None:
    metrics = Metrics()
    metrics.message_received(3)  # not flushed yet: the scrape flushes
    transport = httpx.ASGITransport(app=metrics)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        text = await client.get("/metrics")
        open_metrics = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert value(text.text, "nexios_messages_received_total") == 1
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_multiprocess_variable_set_after_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(ConfigurationError, match="before the app is imported"):
        Metrics()


# --------------------------------------------------------------------------- several processes

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from nexios.metrics import Metrics

    async def main(connections, groups):
        metrics = Metrics()
        metrics.watch(groups=lambda: groups, members=lambda: connections, layer_up=lambda: 1)
        for _ in range(connections):
            metrics.connection_opened()
        metrics.message_received(10)
        metrics.evicted("send_timeout")
        metrics.flush()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await metrics.stop()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


@contextlib.contextmanager
def worker(folder: Path, connections: int, groups: int) -> Iterator[subprocess.Popen[str]]:
    """A process recording metrics into ``folder``; it stops cleanly on a stdin line."""
    env = {**os.environ, MULTIPROC_ENV: str(folder), "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(connections), str(groups)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def scrape(folder: Path) -> bytes:
    """What a scrape of any worker returns: every process's files, combined."""
    forget_dead_processes(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)


def stop_cleanly(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("stop\n")
    process.stdin.flush()
    assert process.wait(timeout=10) == 0


def test_workers_are_summed_and_leave_the_gauges_when_they_stop(tmp_path: Path) -> None:
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    del os.environ[MULTIPROC_ENV]  # prepare sets it for workers; this process stays single
    with worker(folder, connections=3, groups=2) as first, worker(folder, 4, 5) as second:
        text = scrape(folder)
        assert value(text, "nexios_connections") == 7
        assert value(text, "nexios_group_members") == 7
        assert value(text, "nexios_messages_received_total") == 2
        assert value(text, "nexios_handshakes_total", outcome="accepted") == 7
        assert value(text, "nexios_evictions_total", reason="send_timeout") == 2
        per_process = {
            labels: v for (name, labels), v in samples(text).items() if name == "nexios_groups"
        }
        assert per_process == {
            (("pid", str(first.pid)),): 2,
            (("pid", str(second.pid)),): 5,
        }
        # A worker killed outright: its gauges leave at the next scrape, its counts stay.
        first.send_signal(signal.SIGKILL)
        first.wait()
        text = scrape(folder)
        assert value(text, "nexios_connections") == 4
        assert value(text, "nexios_groups", pid=str(first.pid)) is None
        assert value(text, "nexios_messages_received_total") == 2
        # A worker stopped cleanly takes its gauges away itself.
        stop_cleanly(second)
        text = scrape(folder)
        assert value(text, "nexios_connections") is None  # no live process, no sample
        assert value(text, "nexios_layer_up", pid=str(second.pid)) is None
        assert value(text, "nexios_handshakes_total", outcome="accepted") == 7


def test_a_new_run_starts_from_zero(tmp_path: Path) -> None:
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    del os.environ[MULTIPROC_ENV]
    with worker(folder, connections=2, groups=1) as process:
        stop_cleanly(process)
    assert value(scrape(folder), "nexios_messages_received_total") == 1
    (folder / "notes.txt").write_text("not ours", encoding="utf-8")
    assert prepare_multiprocess_dir(folder) == folder
    del os.environ[MULTIPROC_ENV]
    assert value(scrape(folder), "nexios_messages_received_total") is None
    assert (folder / "notes.txt").exists()  # only metric files are removed


def test_prepare_uses_the_variable_or_a_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "given"))
    assert prepare_multiprocess_dir() == tmp_path / "given"
    assert (tmp_path / "given").is_dir()
    del os.environ[MULTIPROC_ENV]
    made = prepare_multiprocess_dir()
    try:
        assert made.is_dir() and made.name.startswith("nexios-metrics-")
        assert os.environ[MULTIPROC_ENV] == str(made)
    finally:
        made.rmdir()
