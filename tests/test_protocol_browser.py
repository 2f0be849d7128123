"""The browser client in Debian's headless Chromium against a real ``nexios run``.

The page (``tests/support/protocol_page.html``) loads ``/_nexios/nexios.js`` from the
server — no build step — subscribes to three groups and shows each message as a list
item; when a recovery is incomplete it reloads, as an app would. Every scenario runs on
one process (memory layer) and on two processes sharing Redis, with sqlite history:

- the network is cut (Playwright offline) for 5 s while 200 messages are published
  (from an HTTP handler and from the Python client): each page shows every message
  once, in order, without a reload;
- the server is restarted while messages are published elsewhere: the pages reconnect
  and recover them from the sqlite history;
- the history is replaced (a new epoch): the pages are told, and reload;
- a token valid 10 s is refreshed while messages flow: nothing lost, no reconnect.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexios.client import connect
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.redis import REDIS_SERVER, RedisServer
from tests.support.server import Server, free_port, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:
    pytest.skip("needs the playwright package", allow_module_level=True)

APP = "tests.support.protocol_app:app"
WAIT_MS = 30_000
GROUPS = ("alpha", "beta", "gamma")
_names = itertools.count()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=15000
        )
        yield browser
        browser.close()


class Deployment:
    """``nexios run`` of the protocol app: one process, or two processes on Redis.

    The two processes listen on ports of their own, and the pages of :func:`two_pages`
    open one on each: with ``--workers 2`` on one port the kernel picks the worker, and
    under load it can pick the same one every time.
    """

    def __init__(self, kind: str, tmp_path: Path, redis: RedisServer | None) -> None:
        self.kind = kind
        self.history = tmp_path / "history.db"
        self.redis = redis
        self.ports = [free_port()] + ([free_port()] if redis is not None else [])
        self.extra: dict[str, str] = {}
        self.servers: list[Server] = []

    def env(self, history: Path | None = None) -> dict[str, str]:
        env = {
            "NEXIOS_HISTORY_URL": f"sqlite:///{history or self.history}",
            "PROTOCOL_PING": "1",
            **self.extra,
        }
        if self.redis is not None:
            env["NEXIOS_CHANNELS_URL"] = self.redis.url()
        return env

    @contextlib.contextmanager
    def run(self, *, elsewhere: bool = False, history: Path | None = None) -> Iterator[Server]:
        """Start the deployment (on new ports with ``elsewhere``); yield its first process."""
        ports = [free_port() for _ in self.ports] if elsewhere else self.ports
        with contextlib.ExitStack() as stack:
            self.servers = [
                stack.enter_context(serve(APP, env=self.env(history), port=port)) for port in ports
            ]
            yield self.servers[0]


@pytest.fixture(params=["memory", "redis"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "memory":
        yield Deployment("memory", tmp_path, None)
        return
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    with RedisServer() as redis:
        yield Deployment("redis", tmp_path, redis)


def groups() -> list[str]:
    """Three fresh group names (each test has its own)."""
    run = next(_names)
    return [f"{name}-{run}-{time.monotonic_ns() % 10**9}" for name in GROUPS]


class Pages:
    """Pages of one test, each in its own browser context (own storage, own network)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def open(self, server: Server, names: list[str], **query: str) -> Page:
        context = self.browser.new_context()
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = context.new_page()
        params = "&".join(
            f"{key}={value}" for key, value in {"groups": ",".join(names), **query}.items()
        )
        page.goto(f"{server.http_url}/?{params}")
        wait_subscribed(page, names)
        return page

    def discard(self, page: Page) -> None:
        self.contexts.remove(page.context)
        page.context.close()

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def wait_subscribed(page: Page, names: list[str]) -> None:
    page.wait_for_function(
        "names => names.every(g => window.client?.subscriptions.get(g)?.state === 'subscribed')",
        arg=names,
        timeout=WAIT_MS,
    )


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()


def two_pages(
    pages: Pages, server: Server, names: list[str], deployment: Deployment, **query: str
) -> list[Page]:
    """Two pages; on Redis, one on each of the deployment's two processes."""
    first = pages.open(server, names, **query)
    second = pages.open(deployment.servers[-1], names, **query)
    if deployment.redis is not None:
        assert first.evaluate("window.pid()") != second.evaluate("window.pid()")
    return [first, second]


def post(server: Server, group: str, body: Any) -> int:
    response = httpx.post(f"{server.http_url}/publish/{group}", json=body, timeout=10)
    response.raise_for_status()
    seq: int = response.json()["seq"]
    return seq


def publish_with_python_client(server: Server, group: str, count: int, start: int) -> None:
    async def run() -> None:
        async with connect(server.ws_url("/connect"), timeout=10) as client:
            for n in range(start, start + count):
                await client.publish(group, {"n": n, "by": "python"})

    # Playwright's sync API holds this thread's event loop: the client gets a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


def publish_200(server: Server, names: list[str]) -> dict[str, int]:
    """200 messages over three groups: two through an HTTP handler, one by the Python
    client. Returns how many each group got."""
    counts = {names[0]: 70, names[1]: 70, names[2]: 60}
    for n in range(70):
        post(server, names[0], {"n": n})
        post(server, names[1], {"n": n})
    publish_with_python_client(server, names[2], 60, 0)
    return counts


def shows_all(page: Page, group: str, count: int) -> None:
    """The page shows seq 1..count in ``group``, each once, in order."""
    page.wait_for_function(
        "([g, n]) => window.log.messages[g].length >= n", arg=[group, count], timeout=WAIT_MS
    )
    seqs = page.evaluate("g => window.log.messages[g]", group)
    assert seqs == list(range(1, count + 1)), seqs
    shown = page.locator(f"#g-{group} li").evaluate_all(
        "items => items.map(i => Number(i.dataset.seq))"
    )
    assert shown == list(range(1, count + 1))


def reloads(page: Page) -> list[Any]:
    result: list[Any] = page.evaluate("window.log.reloads")
    return result


# ---------------------------------------------------------------------- scenarios


def test_a_5_second_network_cut_while_200_messages_are_published(
    deployment: Deployment, pages: Pages
) -> None:
    names = groups()
    with deployment.run() as server:
        both = two_pages(pages, server, names, deployment, grace="2000")
        for page in both:
            page.context.set_offline(True)
        began = time.monotonic()
        counts = publish_200(server, names)
        time.sleep(max(0.0, 5 - (time.monotonic() - began)))  # the rest of the 5 s cut
        for page in both:
            page.context.set_offline(False)
        for page in both:
            for group, count in counts.items():
                shows_all(page, group, count)
            assert reloads(page) == []
            # The cut outlasted ping + grace: the socket was replaced and the groups
            # recovered from their positions.
            states = page.evaluate("window.log.states")
            assert states.count("connected") >= 2, states
            recovered = page.evaluate("window.log.recovered")
            assert recovered and all(r["complete"] for r in recovered), recovered
            assert sum(r["recovered"] for r in recovered) > 0


def test_a_restarted_server_is_recovered_from_sqlite_history(
    deployment: Deployment, pages: Pages
) -> None:
    names = groups()
    with deployment.run() as server:
        both = two_pages(pages, server, names, deployment)
        for n in range(5):
            post(server, names[0], {"n": n})
        for page in both:
            shows_all(page, names[0], 5)
    # Down: the pages retry. Elsewhere, on the same history, 30 more messages.
    with deployment.run(elsewhere=True) as elsewhere:
        for n in range(5, 35):
            post(elsewhere, names[0], {"n": n})
        publish_with_python_client(elsewhere, names[1], 10, 0)
    with deployment.run() as server:
        for page in both:
            shows_all(page, names[0], 35)
            shows_all(page, names[1], 10)
            wait_subscribed(page, names)
            assert reloads(page) == []
            recovered = page.evaluate("window.log.recovered")
            by_group = {r["group"]: r for r in recovered}
            assert by_group[names[0]] == {
                "group": names[0],
                "complete": True,
                "recovered": 30,
                "reason": "subscribe",
            }
        post(server, names[0], {"n": 35})
        for page in both:
            shows_all(page, names[0], 36)


def test_a_new_history_epoch_makes_the_pages_reload(
    deployment: Deployment, pages: Pages, tmp_path: Path
) -> None:
    names = groups()
    with deployment.run() as server:
        both = two_pages(pages, server, names, deployment)
        for n in range(3):
            post(server, names[0], {"n": n})
        for page in both:
            shows_all(page, names[0], 3)
    # The history is lost: the server comes back on a new file, under new epochs.
    with deployment.run(history=tmp_path / "new-history.db") as server:
        for page in both:
            page.wait_for_function("window.log.reloads.length > 0", timeout=WAIT_MS)
            wait_subscribed(page, names)
            told = reloads(page)
            assert told[0]["reason"] == "subscribe"
            assert page.evaluate("window.log.messages")[names[0]] == []  # a fresh page
        post(server, names[0], {"n": 0})
        for page in both:
            shows_all(page, names[0], 1)


def test_a_token_valid_10_seconds_is_refreshed_without_losing_a_message(
    deployment: Deployment, pages: Pages
) -> None:
    names = groups()
    deployment.extra["PROTOCOL_TOKENS"] = "1"
    with deployment.run() as server:
        both = two_pages(pages, server, names, deployment, ttl="10")
        sent = 0
        began = time.monotonic()
        while time.monotonic() - began < 12:  # past the first token's end
            post(server, names[sent % 3], {"n": sent})
            sent += 1
            time.sleep(0.05)  # a steady stream, not a burst
        expected = {name: len(range(i, sent, 3)) for i, name in enumerate(names)}
        for page in both:
            for group, count in expected.items():
                shows_all(page, group, count)
            assert page.evaluate("window.log.tokens") >= 2  # the first, then a refresh
            assert page.evaluate("window.log.states") == ["connecting", "connected"]
            assert page.evaluate("window.log.errors") == []
            assert reloads(page) == []
