"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, two
``nexios run`` processes on one Redis, traffic driven by real WebSocket clients.

A wrong token gets a bare 401 and nothing of the page; the right one shows every
process's numbers, and they move as clients connect, talk and leave. With
``NEXIOS_UPDATE_SCREENSHOT=1`` it replaces ``docs/dashboard.png``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.redis import RedisServer
from tests.support.server import REPO_ROOT, Server, serve

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    pytest.skip("needs the playwright package", allow_module_level=True)

TOKEN = "dashboard-token-for-the-browser-test"
PAGE = "/_nexios/dashboard"
SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
TIMEOUT_MS = 10000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[Server]]:
    with RedisServer() as redis, ExitStack() as stack:
        env = {"NEXIOS_CHANNELS_URL": redis.url(), "NEXIOS_DASHBOARD_TOKEN": TOKEN}
        yield [stack.enter_context(serve("tests.support.ops_app:app", env=env)) for _ in "ab"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=15000
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def stat(page: Page, name: str) -> str:
    return page.locator(f'[data-stat="{name}"]').inner_text()


def join(stack: ExitStack, server: Server, room: str, user: str) -> ClientConnection:
    url = server.ws_url(f"/room/{room}?user={user}")
    ws = stack.enter_context(connect(url, open_timeout=10))
    assert ws.recv(timeout=10) == "in"
    return ws


def talk(page: Page, members: list[ClientConnection], rounds: int) -> None:
    """``rounds`` bursts of 40 messages, each delivered to the 5 members of the lobby;
    between bursts, wait for the page to poll again (its clock in the status line)."""
    for burst in range(rounds):
        shown = page.locator("#status").inner_text()
        for i in range(40):  # the publisher is on the first process, two members elsewhere
            members[0].send(f"hello {burst}.{i}")
        for member in members[:5]:
            received = [member.recv(timeout=10) for _ in range(40)]
            assert received == [f"hello {burst}.{i}" for i in range(40)]
        if burst + 1 < rounds:
            expect(page.locator("#status")).not_to_have_text(shown)


def test_a_wrong_or_missing_token_gets_nothing(page: Page, servers: list[Server]) -> None:
    for query in ("", "?token=wrong", f"?token={TOKEN[:-1]}"):
        response = page.goto(servers[0].http_url + PAGE + query)
        assert response is not None and response.status == 401
        assert page.content().count("data-stat") == 0
        assert "a valid token is required" in page.inner_text("body")
    api = page.goto(servers[0].http_url + PAGE + "/api/stats")
    assert api is not None and api.status == 401
    script = page.goto(servers[0].http_url + PAGE + "/dashboard.js")
    assert script is not None and script.status == 401


def test_the_numbers_are_every_process_and_follow_the_traffic(
    page: Page, servers: list[Server]
) -> None:
    first, second = servers
    page.goto(first.http_url + PAGE + f"?token={TOKEN}")
    assert page.url == first.http_url + PAGE  # the token left the address bar
    expect(page.locator("#status")).to_contain_text("live")
    expect(page.locator('[data-stat="processes"]')).to_have_text("2")
    expect(page.locator('[data-stat="connections"]')).to_have_text("0")
    expect(page.locator("#processes tr")).to_have_count(2)
    expect(page.locator("#processes tr .link.up")).to_have_count(2)

    names = ["ann", "bob", "cy", "dee", "eve"]
    with ExitStack() as stack:
        members = [
            join(stack, first if i < 3 else second, "lobby", name) for i, name in enumerate(names)
        ]
        members.append(join(stack, second, "side", "fay"))
        expect(page.locator('[data-stat="connections"]')).to_have_text("6")
        expect(page.locator('[data-stat="members"]')).to_have_text("6")
        lobby = page.locator("#groups tr").first
        expect(lobby).to_contain_text("lobby")
        expect(lobby.locator("td").nth(2)).to_have_text("5")  # presence, every process
        for name in names:
            expect(lobby).to_contain_text(name)

        screenshot = os.environ.get("NEXIOS_UPDATE_SCREENSHOT") == "1"
        talk(page, members, rounds=12 if screenshot else 1)
        expect(page.locator('[data-stat="rate_in"]')).not_to_have_text("0")
        expect(page.locator('[data-stat="rate_out"]')).not_to_have_text("0")
        line = page.locator("#line-out")
        expect(line).to_have_attribute("points", re.compile(r",(?!100\.0)\d"))  # off the floor
        if screenshot:
            page.screenshot(path=str(SCREENSHOT), full_page=True)
    expect(page.locator('[data-stat="connections"]')).to_have_text("0")
    expect(page.locator("#groups tr")).to_have_count(0)
