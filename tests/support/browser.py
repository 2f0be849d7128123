"""Debian's headless Chromium through Playwright, launched the same way by every browser test.

Playwright's own browser download is never used: ``/usr/bin/chromium`` (installed by
``scripts/install-browser.sh``). Test modules skip themselves when it or the
``playwright`` package is missing, then call :func:`chromium`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed at the end of the block."""
    # Imported here: this module loads without playwright (the tests then skip).
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=15000
        )
        try:
            yield browser
        finally:
            browser.close()
