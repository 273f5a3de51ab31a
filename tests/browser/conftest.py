"""A real browser for the UI tests: Debian's Chromium, headless, driven through Playwright.

The browser is the distribution's (``apt-get install chromium``; ``.ci/run`` installs it where it
can), never one Playwright downloads. Tests that need it skip, saying so, where it is absent.
Screenshots go into each test's temporary folder and, when ``TRADEFLOW_SCREENSHOTS=<dir>`` is set,
into that folder too (``TRADEFLOW_SCREENSHOTS=docs/images`` refreshes the README's pictures).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FloatRect, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's services, which a
# machine without outside network refuses (and which a test has no business reaching anyway).
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
# A wide layout (the deployments table shows every schedule from about 1700 CSS pixels on), drawn at
# 0.8 so that a screenshot is 1360 x 800 pixels.
VIEWPORT: ViewportSize = {"width": 1700, "height": 1000}
SCALE = 0.8
# Read at import: the suite's autouse fixture hides TRADEFLOW_* variables from the tests themselves.
SCREENSHOTS = (
    Path(os.environ["TRADEFLOW_SCREENSHOTS"]).resolve() if os.environ.get("TRADEFLOW_SCREENSHOTS") else None
)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the distribution's package, shared by the browser tests.

    Closed when they are done, not at the end of the session: while Playwright's sync API is open it
    marks the main thread's event loop as running, and ``asyncio.run()`` (Prefect, the flow tests)
    would refuse to start.
    """
    if not CHROMIUM.exists():
        pytest.skip("Chromium not installed: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (own context, no shared cookies or storage); waits for content up to a minute."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=SCALE)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def requested(page: Page) -> list[str]:
    """Every URL the tab asks for, in order (to check that nothing comes from outside)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    """Return ``shoot(page, name, height=None)``: the viewport (its top ``height`` CSS pixels) as a PNG.

    The PNG goes into the test's folder and, when set, into $TRADEFLOW_SCREENSHOTS.
    """

    def shoot(tab: Page, name: str, height: int | None = None) -> Path:
        path = tmp_path / f"{name}.png"
        clip: FloatRect | None = (
            {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
        )
        tab.screenshot(path=str(path), clip=clip)
        if SCREENSHOTS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)
        return path

    return shoot
