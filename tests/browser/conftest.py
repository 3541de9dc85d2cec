"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and an admin user.

``playwright install`` is never run (it downloads a browser build from a CDN): Playwright drives
``/usr/bin/chromium``, which :func:`tests.browser.chromium.ensure_chromium` installs with apt when
it is missing and we are root. The tests are skipped, saying why, only when that cannot be done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import LAUNCH_ARGS, ensure_chromium

EXAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "example_project"


@pytest.fixture(scope="session")
def chromium() -> Path:
    path, why = ensure_chromium()
    if path is None:
        pytest.skip(f"no Chromium for the browser tests: {why}")
    return path


@pytest.fixture(scope="session")
def shop() -> Any:
    """The example project's order workflow: realistic screenshots, and the README's example."""
    if str(EXAMPLE_PROJECT) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_PROJECT))
    import shop.workflows

    return shop.workflows


@pytest.fixture
def open_browser(chromium: Path) -> Callable[[], AbstractContextManager[Any]]:
    """``with open_browser() as browser:`` a headless Chromium, closed at the end of the block.

    Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls from a
    thread with a running loop. So a test sets its data up before the block and checks the
    database after it; the live server answers from its own thread meanwhile.
    """
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install playwright"
    )

    @contextmanager
    def launch() -> Iterator[Any]:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
            try:
                yield browser
            finally:
                browser.close()

    return launch
