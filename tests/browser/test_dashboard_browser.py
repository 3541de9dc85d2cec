"""The operations dashboard in a real browser, light and dark; takes the README's screenshots.

A day of the example shop: its orders in every state (the ``orders`` fixture of
``tests/browser/conftest.py``), and a few hundred more written with SQL over the last 24 hours,
so the chart has a shape; a worker's pass is recorded, and one timer is overdue.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection

from hephaestus_django import storages
from hephaestus_django.worker import run_once
from tests.support.browser import log_in, snap
from tests.timers import make_due

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DASHBOARD = "/admin/hephaestus_django/workflowinstance/dashboard/"

A_DAY = """
INSERT INTO workflow_instances (id, workflow, status, state, inserted_at, updated_at)
SELECT gen_random_uuid(), 'shop.workflows.OrderFulfilment', s.status,
       CASE WHEN s.status = 'failed' THEN jsonb_build_object('error', jsonb_build_object(
           'type', (ARRAY['shop.workflows.CardDeclined', 'shop.workflows.CardDeclined',
                          'TimeoutError', 'shop.workflows.OutOfStock'])[g % 4 + 1],
           'message', (ARRAY['card declined by the issuer', 'card declined by the issuer',
                             'the payment service did not answer in 10s',
                             'MUG-ENAMEL: none left'])[g % 4 + 1],
           'step', 'shop.workflows.ChargePayment', 'at', now()))
       ELSE '{}'::jsonb END,
       now() - (g * 131 % 86000) * interval '1 second'
             - (CASE WHEN g % 3 = 0 THEN 0 ELSE (g % 7) * 1800 END) * interval '1 second',
       now() - (g * 131 % 86000) * interval '1 second'
FROM generate_series(1, 420) AS g,
     LATERAL (SELECT CASE WHEN g % 11 = 0 THEN 'failed' ELSE 'completed' END AS status) AS s
"""


def test_operator_opens_the_dashboard(
    live_server: Any,
    admin_user: AbstractUser,
    orders: dict[str, UUID],
    only_the_shop: None,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    from playwright.sync_api import expect

    with connection.cursor() as cursor:
        cursor.execute(A_DAY)
    run_once("default")
    make_due(storages["default"], orders["in transit"], ago=timedelta(minutes=7))

    with open_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        log_in(page, live_server.url, admin_user)
        page.goto(f"{live_server.url}/admin/")
        page.locator("a", has_text="Operations dashboard").first.click()
        expect(page).to_have_url(f"{live_server.url}{DASHBOARD}")
        expect(page.locator("svg.hx-chart")).to_be_visible()
        expect(page.locator("#hx-counts tbody tr")).to_have_count(1)
        expect(page.locator("#hx-errors tbody tr")).to_have_count(4)
        expect(page.locator("#hx-card-worker")).not_to_contain_text("never")
        expect(page.locator("#hx-card-overdue")).to_contain_text("the worst by 7m")
        # the page fits a 1,280 px window: nothing scrolls sideways
        widest = page.evaluate(
            "Math.ceil(Math.max(document.documentElement.scrollWidth, ...Array.from("
            "document.querySelectorAll('body *'), e => e.getBoundingClientRect().right)))"
        )
        assert widest <= 1280, f"the dashboard is {widest} px wide in a 1,280 px window"
        snap(page, "admin-dashboard.png", width=1280)
        page.emulate_media(color_scheme="dark")
        snap(page, "admin-dashboard-dark.png", width=1280)
        page.emulate_media(color_scheme="light")

        page.locator("#hx-errors a", has_text="shop.workflows.CardDeclined").click()
        expect(page).to_have_url(re.compile(r"error_type=shop.workflows.CardDeclined"))
        expect(page.locator("#changelist-filter")).to_contain_text("shop.workflows.CardDeclined")


LONG_NAMES = """
INSERT INTO workflow_instances (id, workflow, status, state)
VALUES (gen_random_uuid(), %s, 'failed', jsonb_build_object('error', jsonb_build_object(
    'type', %s, 'message', %s, 'step', %s, 'at', now())))
"""

WIDEST = (
    "Math.ceil(Math.max(document.documentElement.scrollWidth, ...Array.from("
    "document.querySelectorAll('body *'), e => e.getBoundingClientRect().right)))"
)


def test_the_dashboard_fits_1280_px_with_long_dotted_names(
    live_server: Any,
    admin_user: AbstractUser,
    open_browser: Callable[[], AbstractContextManager[Any]],
) -> None:
    """A new user's dashboard was 1,344 px wide in a 1,280 px window: dotted paths (a workflow
    pasted into ``manage.py shell``, an exception class deep in a package) do not wrap."""
    module = "django.core.management.commands.shell"
    with connection.cursor() as cursor:
        cursor.execute(
            LONG_NAMES,
            [
                f"{module}.OrderFulfilmentWithGiftWrappingAndInternationalShipping",
                f"{module}.PaymentProviderCommunicationTimeoutErrorWhileCapturingTheCharge",
                "x" * 300,
                f"{module}.CapturePaymentAuthorisationAtTheExternalPaymentServiceProvider",
            ],
        )
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, live_server.url, admin_user)
        page.goto(f"{live_server.url}{DASHBOARD}")
        page.locator("#hx-errors tbody tr").first.wait_for()
        widest = page.evaluate(WIDEST)
    assert widest <= 1280, f"the dashboard is {widest} px wide in a 1,280 px window"
