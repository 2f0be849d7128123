"""The chat example in a real browser: Debian's headless Chromium driven by Playwright.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (``scripts/install-browser.sh``
installs both; Playwright's own browser download is never used). Skipped without them.
Takes a screenshot of two pages in the same room, side by side; with
``NEXIOS_UPDATE_SCREENSHOT=1`` it replaces ``docs/chat-screenshot.png`` (so an ordinary
test run leaves the work tree as it was).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nexios.client import connect
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.server import REPO_ROOT, Server, serve

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's chromium at /usr/bin/chromium (run scripts/install-browser.sh)",
        allow_module_level=True,
    )
try:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
except ImportError:
    pytest.skip(
        "needs the playwright package (run scripts/install-browser.sh)", allow_module_level=True
    )

TIMEOUT_MS = 5000
SCREENSHOT = REPO_ROOT / "docs" / "chat-screenshot.png"
HISTORY_KEPT = 5

OpenPage = Callable[[str, str], Page]

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    history = tmp_path_factory.mktemp("chat") / "history.db"
    env = {
        "NEXIOS_HISTORY_URL": f"sqlite:///{history}",
        "NEXIOS_HISTORY_MAX_ENTRIES": str(HISTORY_KEPT),
    }
    with serve("examples.chat.app:app", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=15000
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[OpenPage]:
    """``open_page(name, room)``: a new browser context (own storage) that joined ``room``."""
    contexts = []

    def open_page(name: str, room: str) -> Page:
        context = browser.new_context(viewport={"width": 720, "height": 520})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(server.http_url + "/")
        page.fill("#name", name)
        page.fill("#room", room)
        page.click("#join-form button")
        expect(page.locator("#status")).to_have_text("online")
        expect(page.locator("#room-title")).to_have_text(f"#{room}")
        return page

    yield open_page
    for context in contexts:
        context.close()


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def messages(page: Page) -> Locator:
    return page.locator("#messages li.msg .text")


@pytest.fixture
def screenshot_path(tmp_path: Path) -> Path:
    return SCREENSHOT if os.environ.get("NEXIOS_UPDATE_SCREENSHOT") else tmp_path / "chat.png"


def test_two_pages_talk_see_each_other_and_typing(
    open_page: OpenPage, screenshot_path: Path
) -> None:
    ada = open_page("ada", "demo")
    bob = open_page("bob", "demo")
    expect(ada.locator("#online li")).to_have_text(["ada (you)", "bob"])
    expect(bob.locator("#online li")).to_have_text(["ada", "bob (you)"])
    for page in (ada, bob):
        expect(page.locator("#online-count")).to_have_text("2")

    say(bob, "Hi ada! Is the build green?")
    expect(messages(ada)).to_have_text(["Hi ada! Is the build green?"])
    say(ada, "Green across both workers.")
    say(bob, "Ship it!")
    for page in (ada, bob):
        expect(messages(page)).to_have_text(
            ["Hi ada! Is the build green?", "Green across both workers.", "Ship it!"]
        )
    expect(ada.locator("#messages li.system")).to_have_text(["ada joined", "bob joined"])

    bob.fill("#text", "one more thing")  # typing, not sent
    expect(ada.locator("#typing")).to_have_text("bob is typing…")
    expect(bob.locator("#typing")).to_have_text("")  # nobody shows their own typing
    save_side_by_side(ada, bob, screenshot_path)
    assert screenshot_path.read_bytes().startswith(b"\x89PNG")

    bob.press("#text", "Enter")
    expect(messages(ada).last).to_have_text("one more thing")
    expect(ada.locator("#typing")).to_have_text("")  # their message ends the indicator


def test_a_reloaded_page_shows_the_history(open_page: OpenPage) -> None:
    ada = open_page("ada", "reload")
    bob = open_page("bob", "reload")
    say(ada, "first")
    say(ada, "second")
    expect(messages(bob)).to_have_text(["first", "second"])
    bob.reload()
    expect(bob.locator("#status")).to_have_text("online")  # rejoined by itself
    expect(messages(bob)).to_have_text(["first", "second"])
    expect(bob.locator("#online li")).to_have_text(["ada", "bob (you)"])
    # Once when bob came, once when the reloaded page joined again.
    expect(ada.locator("#messages li.system", has_text="bob joined")).to_have_count(2)


def test_a_dropped_socket_reconnects_and_recovers_what_it_missed(open_page: OpenPage) -> None:
    ada = open_page("ada", "drops")
    bob = open_page("bob", "drops")
    say(bob, "before the drop")
    expect(messages(ada)).to_have_text(["before the drop"])

    # The automatic path: the socket is replaced, the client reconnects with backoff.
    ada.evaluate("window.chat.state.client.reconnect()")
    expect(ada.locator("#messages li.system", has_text="Reconnected")).to_have_text(
        ["Reconnected: nothing was missed."]
    )
    expect(ada.locator("#status")).to_have_text("online")
    expect(bob.locator("#online li")).to_have_text(["ada", "bob (you)"])

    # Closed while bob talks, then back: the client recovers what was missed.
    ada.evaluate("window.chat.state.client.close()")
    expect(ada.locator("#status")).to_have_text("offline")
    expect(bob.locator("#online li")).to_have_text(["bob (you)"])
    say(bob, "while you were away")
    say(bob, "and this too")
    expect(messages(bob).last).to_have_text("and this too")
    ada.evaluate("window.chat.state.client.connect()")
    expect(ada.locator("#status")).to_have_text("online")
    expect(messages(ada)).to_have_text(["before the drop", "while you were away", "and this too"])
    expect(ada.locator("#messages li.system", has_text="Reconnected")).to_have_text(
        ["Reconnected: nothing was missed.", "Reconnected: 2 missed messages recovered."]
    )
    expect(ada.locator("#notice")).to_be_hidden()


def test_too_much_missed_reloads_the_page_with_a_notice_and_the_latest(
    open_page: OpenPage, server: Server
) -> None:
    ada = open_page("ada", "gaps")
    say(ada, "seen by ada")
    expect(messages(ada)).to_have_text(["seen by ada"])
    ada.evaluate("window.chat.state.client.close()")
    expect(ada.locator("#status")).to_have_text("offline")
    sent = [f"missed {i}" for i in range(HISTORY_KEPT + 2)]
    publish_as(server, "carol", "gaps", sent)
    ada.evaluate("window.chat.state.client.connect()")
    # History no longer has all that ada missed: the page reloads and starts afresh.
    expect(ada.locator("#notice")).to_have_text(
        "Some messages could not be recovered; showing the latest 50."
    )
    expect(ada.locator("#notice")).to_be_visible()
    expect(ada.locator("#status")).to_have_text("online")
    expect(messages(ada)).to_have_count(HISTORY_KEPT)
    expect(messages(ada).last).to_have_text(sent[-1])


def publish_as(server: Server, name: str, room: str, texts: list[str]) -> None:
    """Publish through the Python client (it retries the server's 429 by itself)."""

    async def run() -> None:
        async with connect(server.ws_url("/connect"), token=name, timeout=10) as client:
            for text in texts:
                await client.publish(f"chat:{room}", {"text": text})

    # Playwright's sync API holds this thread's event loop: the client gets a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


def test_server_errors_are_visible(open_page: OpenPage, browser: Browser, server: Server) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.http_url + "/")
        page.fill("#name", "eve")
        page.fill("#room", "Not A Room")
        page.click("#join-form button")
        expect(page.locator("#join-error")).to_have_text(
            "Room must be 1 to 32 characters: lowercase letters, digits and dashes."
        )
        expect(page.locator("#room")).to_have_attribute("aria-invalid", "true")
        page.fill("#room", "fixed-room")
        page.click("#join-form button")
        expect(page.locator("#status")).to_have_text("online")
        page.click("#leave")
        page.fill("#name", "   ")
        page.click("#join-form button")
        expect(page.locator("#join-error")).to_have_text(
            "Name must be 1 to 32 printable characters."
        )
        expect(page.locator("#status")).to_have_text("offline")
    finally:
        context.close()

    ada = open_page("ada", "errors")
    say(ada, "")
    expect(ada.locator("#error")).to_have_text("Message must be 1 to 1000 characters.")
    # Over 5 a second: the server answers 429 and the client sends it again later.
    ada.evaluate("for (let i = 0; i < 6; i++) window.chat.state.chat.publish({text: 'spam ' + i})")
    expect(messages(ada)).to_have_text([f"spam {i}" for i in range(6)])


def save_side_by_side(left: Page, right: Page, target: Path) -> None:
    """Write both pages, side by side, to ``target`` (a PNG)."""
    shots = [left.screenshot(), right.screenshot()]
    target.parent.mkdir(exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        # Without Pillow, let the browser do the composing.
        images = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(s).decode()}">' for s in shots
        )
        page = left.context.new_page()
        page.set_viewport_size({"width": 1460, "height": 540})
        page.set_content(f'<body style="margin:0;background:#ccc;display:flex;gap:10px">{images}')
        page.screenshot(path=str(target))
        page.close()
        return
    first, second = (Image.open(io.BytesIO(s)) for s in shots)
    gap = 10
    canvas = Image.new(
        "RGB", (first.width + gap + second.width, max(first.height, second.height)), "#c4c9d0"
    )
    canvas.paste(first, (0, 0))
    canvas.paste(second, (first.width + gap, 0))
    canvas.save(target, optimize=True)
