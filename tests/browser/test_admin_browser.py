"""The admin in a real browser: log in, filter, search the context, open an instance, resume it.

Also takes the screenshots the README shows. They go to a temporary directory, so a test run
leaves the checkout clean; ``UPDATE_SCREENSHOTS=1 make test`` writes them to ``docs/images/``.
Full-page screenshots are taken by growing the viewport to the page's height, which works with
every Chromium (Playwright's ``full_page`` stalls with some distribution builds).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import AbstractUser

from hephaestus_django import Status
from hephaestus_django.models import WorkflowInstance
from tests.support.browser import CHANGELIST, PASSWORD, WIDTH, log_in, snap

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_operator_finds_and_resumes_an_order(
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    target = str(orders["to resume"])
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.set_default_timeout(15_000)

        page.goto(f"{live_server.url}/admin/login/?next={CHANGELIST}")
        page.fill("#id_username", admin_user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#result_list tbody tr")).to_have_count(len(orders))
        expect(page.locator("#result_list .hx-status-failed")).to_have_count(1)
        snap(page, "admin-changelist.png")

        page.locator("#changelist-filter a", has_text=re.compile(r"^waiting$")).click()
        expect(page).to_have_url(re.compile(r"status__exact=waiting"))
        expect(page.locator("#result_list tbody tr")).to_have_count(3)

        page.fill("#searchbar", "order_id=10006")
        page.press("#searchbar", "Enter")
        expect(page).to_have_url(re.compile(r"q=order_id"))
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("AwaitShipment")

        rows.first.locator("th a").click()
        graph = page.locator("#hx-graph svg.hx-graph")
        expect(graph).to_be_visible()
        waiting = graph.locator('g.hx-state-waiting[data-step="shop.workflows.AwaitShipment"]')
        expect(waiting).to_be_visible()
        expect(
            graph.locator('g.hx-state-completed[data-step="shop.workflows.ValidateOrder"]')
        ).to_be_visible()
        snap(page, "admin-detail.png", until="#hx-graph")
        page.emulate_media(color_scheme="dark")
        snap(page, "admin-detail-dark.png", until="#hx-graph")
        page.emulate_media(color_scheme="light")

        page.click("#hx-resume")
        page.select_option("#id_event", label="AwaitShipment: shipped")
        page.fill("#id_payload", '{"carrier": "DHL Express", "tracking": "JD0815"}')
        snap(page, "admin-resume.png")
        page.click("#hx-confirm")
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Resumed AwaitShipment with “shipped”; the instance is now waiting"
        )
        expect(
            graph.locator('g.hx-state-waiting[data-step="hephaestus_django.core.steps.Wait"]')
        ).to_be_visible()

    resumed = WorkflowInstance.objects.get(pk=target).to_instance()
    assert resumed.status is Status.WAITING
    assert resumed.context.result("shipment") == {"carrier": "DHL Express", "tracking": "JD0815"}


def test_operator_cancels_an_order_and_refunds_it(
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    target = str(orders["also waiting"])
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, admin_user)
        page.goto(f"{live_server.url}{CHANGELIST}{target}/change/")
        page.click("#hx-cancel")
        expect(page.locator("#id_compensate")).to_be_visible()
        expect(page.locator(".hx-confirm")).to_contain_text(
            "Runs the compensate() of ChargePayment, then ReserveStock, in this order"
        )
        page.fill("#id_reason", "The customer called: the mug is a gift and came too late.")
        page.check("#id_compensate")
        snap(page, "admin-cancel.png")
        page.click("#hx-confirm")
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Cancelled, compensating ChargePayment, then ReserveStock"
        )
        graph = page.locator("#hx-graph svg.hx-graph")
        expect(
            graph.locator('g.hx-state-compensated[data-step="shop.workflows.ChargePayment"]')
        ).to_be_visible()
        expect(
            graph.locator('g.hx-state-cancelled[data-step="shop.workflows.AwaitShipment"]')
        ).to_be_visible()

    cancelled = WorkflowInstance.objects.get(pk=target).to_instance()
    assert cancelled.status is Status.CANCELLED
    assert cancelled.compensation is not None
    assert cancelled.compensation.done


# How far the list's last column reaches, against the box that shows it (Django's changelist
# scrolls ``.results`` sideways rather than widen the page) and against the window.
LAST_COLUMN = """() => {
    const results = document.querySelector("#changelist .results");
    const frame = results.getBoundingClientRect();
    const cells = [...document.querySelectorAll("#result_list tr > :last-child")];
    return {
        scrollWidth: results.scrollWidth,
        clientWidth: results.clientWidth,
        frameRight: frame.right,
        cellsRight: Math.max(...cells.map((cell) => cell.getBoundingClientRect().right)),
        pageWidth: document.documentElement.scrollWidth,
        windowWidth: window.innerWidth,
    };
}"""


@pytest.mark.parametrize("width", [1280, 1400])
@pytest.mark.parametrize("sidebar", ["open", "closed"])
def test_the_changelists_last_column_is_not_cut_off(
    width: int,
    sidebar: str,
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    with open_browser() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, admin_user)
        # Django's nav_sidebar.js keeps the choice as the text "true" or "false".
        is_open = "true" if sidebar == "open" else "false"
        page.evaluate(f"localStorage.setItem('django.admin.navSidebarIsOpen', '{is_open}')")
        page.reload()
        expect(page.locator("#result_list tbody tr")).to_have_count(len(orders))
        assert page.locator("#main.shifted").count() == (1 if sidebar == "open" else 0)
        found = page.evaluate(LAST_COLUMN)
    assert found["scrollWidth"] <= found["clientWidth"], found
    assert found["cellsRight"] <= found["frameRight"] + 0.5, found
    assert found["pageWidth"] <= found["windowWidth"], found
