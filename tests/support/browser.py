"""The browser tests' data and moves: the example shop's orders, logging in, screenshots.

Screenshots go to a temporary directory, so a test run leaves the checkout clean;
``UPDATE_SCREENSHOTS=1 make test`` writes them to ``docs/images/``.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractUser

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
IMAGES = (
    DOCS_IMAGES
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="hephaestus-screenshots-"))
)
CHANGELIST = "/admin/hephaestus_django/workflowinstance/"
PASSWORD = "browser-test-password"
WIDTH = 1440

CUSTOMERS = {
    "ada": {"name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
    "grace": {"name": "Grace Hopper", "email": "grace@example.com", "tier": "gold"},
    "alan": {"name": "Alan Turing", "email": "alan@example.com", "tier": "silver"},
    "barbara": {"name": "Barbara Liskov", "email": "barbara@example.com", "tier": "silver"},
    "ken": {"name": "Ken Thompson", "email": "ken@example.com", "tier": "bronze"},
    "margaret": {"name": "Margaret Hamilton", "email": "margaret@example.com", "tier": "bronze"},
}


def order(order_id: int, customer: str, *, card: str = "visa", items: int = 2) -> dict[str, Any]:
    lines = [
        {"sku": "MUG-ENAMEL", "name": "Enamel mug", "quantity": 2, "unit_price": Decimal("12.50")},
        {"sku": "LAMP-DESK", "name": "Desk lamp", "quantity": 1, "unit_price": Decimal("89.00")},
    ][:items]
    total = sum((line["unit_price"] * line["quantity"] for line in lines), Decimal("0.00"))
    return {
        "order_id": order_id,
        "placed_at": datetime(2025, 3, 3, 9, 30, tzinfo=UTC) + timedelta(hours=order_id - 10000),
        "customer": {"id": order_id - 10000, **CUSTOMERS[customer]},
        "items": lines,
        "total": total,
        "currency": "EUR",
        "card": card,
    }


def snap(page: Any, name: str, until: str | None = None, width: int = WIDTH) -> None:
    """A screenshot of the whole page, or of its top down to the end of ``until``."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": width, "height": height})
    clip = None
    if until is not None:
        box = page.locator(until).bounding_box()
        clip = {"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 20}
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), clip=clip)
    page.set_viewport_size({"width": width, "height": 900})


def log_in(page: Any, url: str, user: AbstractUser) -> None:
    page.goto(f"{url}/admin/login/?next={CHANGELIST}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
