"""Operating in production in a real browser: rewind an order to a step picked on its graph,
pause one, retry the failed ones in bulk. Takes the screenshots the guide "Fixing instances in
production" shows (``UPDATE_SCREENSHOTS=1 make test`` writes them to ``docs/images/``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import AbstractUser

from hephaestus_django.models import WorkflowInstance
from tests.support.browser import CHANGELIST, WIDTH, log_in, snap

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHARGE = "shop.workflows.ChargePayment"


def test_operator_rewinds_an_order_to_a_step_picked_on_its_graph(
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    target = str(orders["in transit"])
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, admin_user)
        page.goto(f"{live_server.url}{CHANGELIST}{target}/change/")
        page.click("#hx-rewind")
        graph = page.locator("#hx-graph svg")
        expect(graph).to_be_visible()
        graph.locator(f'a[href*="step={CHARGE}"]').first.click()
        expect(page).to_have_url(re.compile(r"step=shop\.workflows\.ChargePayment"))
        expect(page.locator("#hx-rewind-form select")).to_have_value(CHARGE)
        snap(page, "admin-rewind.png")
        page.click("#hx-confirm")
        expect(page.locator(".messagelist .success")).to_be_visible()

    rewound = WorkflowInstance.objects.get(pk=target).to_instance()
    assert CHARGE in {step.path() for step in rewound.active_steps | rewound.completed_steps}


def test_operator_pauses_an_order_and_retries_the_failed_ones_in_bulk(
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    waiting = str(orders["also waiting"])
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, admin_user)
        page.goto(f"{live_server.url}{CHANGELIST}{waiting}/change/")
        page.click("#hx-pause")
        page.click("#hx-confirm")
        expect(page.locator("#hx-paused")).to_be_visible()
        snap(page, "admin-paused.png", until="#hx-graph")

        page.goto(f"{live_server.url}{CHANGELIST}?status__exact=failed")
        page.locator("#result_list tbody input.action-select").first.check()
        page.select_option("select[name=action]", value="bulk_retry")
        page.click("button[name=index]")
        expect(page.locator("#hx-bulk-count")).to_contain_text("1")
        page.click("#hx-confirm")
        expect(page.locator("#hx-bulk-progress")).to_be_visible()
        snap(page, "admin-bulk.png")
