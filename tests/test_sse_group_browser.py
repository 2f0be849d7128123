"""A group as Server-Sent Events in Debian's headless Chromium, with a real ``EventSource``.

The page (``tests/support/sse_page.html``) opens one ``EventSource`` on
``app.sse_group("/events/{room}", ...)`` and records every message (its
``lastEventId`` and data) and every ``resync`` event. Messages are published over HTTP
straight to the server while the page reaches it through a TCP proxy the test controls
(``tests/support/tcp_proxy.py``): cutting it resets the page's connection, as a dropped
network does, and refuses its reconnections for a while. (Playwright's offline mode is
no use here: Chromium keeps an open event stream flowing through it.)

- Cut twice and ended once by the server, all while 300 messages are published: the
  page ends with every message once, in order, without a resync.
- The server restarted with an empty memory history (a new epoch) while the page was
  cut off: the page gets ``event: resync`` (``epoch_changed``) and goes on in the new
  numbering.
- Two processes on one Redis: messages published on one reach the page on the other;
  FLUSHALL while it is connected makes the page see the resync live.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import CHROMIUM, chromium
from tests.support.redis import REDIS_SERVER, RedisServer
from tests.support.server import free_port, serve
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page
except ImportError:
    pytest.skip("needs the playwright package", allow_module_level=True)

APP = "tests.support.sse_app:app"
WAIT_MS = 30_000
_rooms = itertools.count()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    contexts = []

    def open_page(port: int, room: str) -> Page:
        context = browser.new_context()
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?room={room}")
        page.wait_for_function("window.state?.opens === 1")
        return page

    yield open_page
    for context in contexts:
        context.close()


def room() -> str:
    return f"room{next(_rooms)}"


def publish(base: str, group: str, count: int = 1, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/publish/{group}?count={count}", json=body, timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def publish_paced(base: str, group: str, count: int, pace: float = 0.002) -> int:
    """``count`` messages one by one (``{"i": i}``), over one connection; the last seq."""
    last = 0
    with httpx.Client(base_url=base, timeout=10) as http:
        for i in range(count):
            response = http.post(f"/publish/{group}", json={"i": i})
            response.raise_for_status()
            last = response.json()["seq"]
            time.sleep(pace)
    return last


def received(page: Page) -> int:
    count: int = page.evaluate("window.state.messages.length")
    return count


def wait_received(page: Page, count: int) -> None:
    page.wait_for_function(f"window.state.messages.length >= {count}", timeout=WAIT_MS)


def wait_alone(base: str, group: str) -> None:
    """Until the server has seen the page leave (its member is gone from presence)."""
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/presence/{group}", timeout=10).json():
        assert time.monotonic() < deadline, "the server did not notice the page leave"
        time.sleep(0.02)


def state(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate("window.state")
    return value


def test_a_page_cut_off_twice_and_ended_once_ends_with_every_message(open_page: Any) -> None:
    group, total = room(), 300
    with serve(APP) as server, TcpProxy(server.port) as proxy:
        base = server.http_url
        page = open_page(proxy.port, group)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            publishing = pool.submit(publish_paced, base, group, total)
            for interruption in ("cut", "end", "cut"):
                wait_received(page, received(page) + 30)
                if interruption == "cut":
                    assert proxy.cut() >= 1
                    wait_alone(base, group)  # the server noticed: the member left
                    time.sleep(0.3)  # refused meanwhile; publishing goes on
                    proxy.restore()
                else:
                    httpx.post(f"{base}/end", timeout=10).raise_for_status()
            assert publishing.result(60) == total
        wait_received(page, total)
        seen = state(page)
        page.close()
    epoch = seen["messages"][0][0].split(":")[1]
    assert [last_id for last_id, _ in seen["messages"]] == [
        f"{seq}:{epoch}" for seq in range(1, total + 1)
    ]
    assert [data["i"] for _, data in seen["messages"]] == list(range(total))
    assert seen["resyncs"] == []
    assert seen["opens"] >= 4 and seen["errors"] >= 3


def test_a_new_epoch_after_a_restart_makes_the_page_resync(open_page: Any) -> None:
    group, port = room(), free_port()
    with TcpProxy(port) as proxy:
        with serve(APP, port=port) as server:
            page = open_page(proxy.port, group)
            first = publish(server.http_url, group, 10)
            wait_received(page, 10)
            proxy.cut()
            wait_alone(server.http_url, group)
        with serve(APP, port=port) as server:  # a new memory history: a new epoch
            second = publish(server.http_url, group, 5)
            assert second["epoch"] != first["epoch"]
            proxy.restore()
            page.wait_for_function("window.state.resyncs.length === 1")
            publish(server.http_url, group, 3)
            wait_received(page, 13)
            seen = state(page)
            page.close()  # an open stream would hold the server's shutdown
    old, new = first["epoch"], second["epoch"]
    assert seen["resyncs"] == [
        [
            f"5:{new}",
            {
                "type": "nexios.resync",
                "group": group,
                "reason": "epoch_changed",
                "epoch": new,
                "last_seq": 5,
            },
        ]
    ]
    assert seen["log"] == [
        *(f"{seq}:{old}" for seq in range(1, 11)),
        f"resync 5:{new}",
        *(f"{seq}:{new}" for seq in range(6, 9)),
    ]


def test_two_processes_on_redis_and_a_flush_while_connected(open_page: Any) -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    group = room()
    with RedisServer() as redis:
        env = {"NEXIOS_CHANNELS_URL": redis.url()}
        with serve(APP, env=env) as first, serve(APP, env=env) as second:
            page = open_page(first.port, group)
            before = publish(second.http_url, group, 20)  # on the other process
            wait_received(page, 20)
            redis.flush()  # history and its numbering are gone while the page reads
            after = publish(second.http_url, group, 3)
            wait_received(page, 23)
            seen = state(page)
            page.close()
    assert after["epoch"] != before["epoch"]
    assert [last_id for last_id, _ in seen["messages"]] == [
        *(f"{seq}:{before['epoch']}" for seq in range(1, 21)),
        *(f"{seq}:{after['epoch']}" for seq in range(1, 4)),
    ]
    (resync,) = seen["resyncs"]
    assert resync[0] == f"0:{after['epoch']}"
    assert resync[1]["reason"] == "epoch_changed" and resync[1]["epoch"] == after["epoch"]
    assert seen["log"][20] == f"resync 0:{after['epoch']}"  # before the new numbering
