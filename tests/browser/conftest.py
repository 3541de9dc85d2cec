"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, an admin user, and the
example shop's orders in every state.

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
from uuid import UUID

import pytest
from django.contrib.auth.models import AbstractUser

from hephaestus_django import LocalRunner, storages
from hephaestus_django.admin import listing
from tests.browser.chromium import LAUNCH_ARGS, ensure_chromium
from tests.support.browser import PASSWORD, order
from tests.timers import make_due

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


@pytest.fixture
def orders(shop: Any) -> dict[str, UUID]:
    """Orders in every state the admin shows: completed, waiting, on a timer, failed, rejected."""
    flow, storage = shop.OrderFulfilment, storages["default"]
    ids = {"delivered": flow.start(order(10001, "ada"))}
    flow.resume(ids["delivered"], "shipped", {"carrier": "DHL Express", "tracking": "JD0142"})
    make_due(storage, ids["delivered"])
    LocalRunner().work(storage=storage)
    ids["cancelled"] = flow.start(order(10002, "barbara", items=1))
    flow.resume(ids["cancelled"], "cancelled", {"reason": "customer cancelled"})
    ids["declined"] = flow.start(order(10003, "alan", card="declined"))
    ids["rejected"] = flow.start(order(10004, "ken", items=0))
    ids["in transit"] = flow.start(order(10005, "margaret", items=1))
    flow.resume(ids["in transit"], "shipped", {"carrier": "PostNL", "tracking": "3SPNL0815"})
    ids["to resume"] = flow.start(order(10006, "grace"))
    ids["also waiting"] = flow.start(order(10007, "ada", items=1))
    return ids


@pytest.fixture
def only_the_shop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filters list the shop's workflows only, as in a project: this test process has also
    registered every workflow of the other test modules."""
    every = listing.registered_workflows
    monkeypatch.setattr(
        listing,
        "registered_workflows",
        lambda: [(path, cls) for path, cls in every() if path.startswith("shop.")],
    )


@pytest.fixture
def admin_user(django_user_model: type[AbstractUser]) -> AbstractUser:
    return django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)
