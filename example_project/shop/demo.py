"""The demo behind ``manage.py demo``: orders in every state, then a summary of what happened.

A plain class, so it can be run and tested without the command line::

    Demo(sys.stdout, orders=10, seed=1).run()

It is re-runnable: every run adds new orders (numbered after the highest stored one) to what
the database already holds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO
from uuid import UUID

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.db import connection
from django.db.models import Count, IntegerField, Max
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from hephaestus_django import Instance, Status, storages
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.worker import run_once
from shop.workflows import (
    DELIVERY_WINDOW,
    BookExpressCourier,
    BookStandardCourier,
    OrderFulfilment,
    RequestReview,
    ThankGoldCustomer,
)

DEFAULT_ORDERS = 50
DEFAULT_SEED = 2024
FIRST_ORDER_ID = 10001
ADMIN_URL = "http://127.0.0.1:8000/admin/"
ADMIN_USERNAME = ADMIN_PASSWORD = "admin"  # EXAMPLE PROJECT ONLY: a well-known password
PROGRESS_FROM = 20
"""Show a progress bar from this many orders on (when writing to a terminal)."""

CUSTOMERS = [
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
    {"id": 2, "name": "Grace Hopper", "email": "grace@example.com", "tier": "gold"},
    {"id": 3, "name": "Alan Turing", "email": "alan@example.com", "tier": "silver"},
    {"id": 4, "name": "Edsger Dijkstra", "email": "edsger@example.com", "tier": "silver"},
    {"id": 5, "name": "Barbara Liskov", "email": "barbara@example.com", "tier": "silver"},
    {"id": 6, "name": "Ken Thompson", "email": "ken@example.com", "tier": "bronze"},
    {"id": 7, "name": "Margaret Hamilton", "email": "margaret@example.com", "tier": "bronze"},
    {"id": 8, "name": "Donald Knuth", "email": "don@example.com", "tier": "bronze"},
    {"id": 9, "name": "Frances Allen", "email": "fran@example.com", "tier": "bronze"},
]
CATALOGUE = [
    ("MUG-ENAMEL", "Enamel mug", Decimal("12.50")),
    ("TEE-BLK-M", "T-shirt, black, M", Decimal("24.00")),
    ("HOOD-GRY-L", "Hoodie, grey, L", Decimal("54.90")),
    ("CAP-RED", "Cap, red", Decimal("17.95")),
    ("BOTTLE-750", "Steel bottle 750 ml", Decimal("21.00")),
    ("NOTEBOOK-A5", "Notebook A5", Decimal("8.40")),
    ("LAMP-DESK", "Desk lamp", Decimal("89.00")),
]
CARDS = ("visa", "mastercard", "amex")
GOLD = '{"customer": {"tier": "gold"}}'
CARRIERS = {"DHL Express": "JD01", "PostNL": "3SPNL"}
KINDS = {"regular": 82, "declined card": 8, "empty cart": 5, "free after voucher": 5}
"""What kind of order to make, with weights: the last three do not get far."""


class Demo:
    """Migrate, create the admin user, run orders through every path, and report."""

    def __init__(
        self,
        stdout: TextIO | OutputWrapper,
        style: Any = None,
        *,
        orders: int = DEFAULT_ORDERS,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if orders < 1:
            raise ValueError(f"orders must be a positive number, not {orders!r}")
        self.stdout = stdout
        self.style = style
        self.orders = orders
        self.seed = seed
        self.storage = storages["default"]

    def run(self) -> None:
        """Every part of the demo, in order."""
        self.migrate()
        self.create_superuser()
        started = self.start_orders()
        shipped = self.report_shipments(started)
        self.fire_timers(shipped)
        self.summarise()
        self.explain_admin()

    # --- the parts ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or update the tables."""
        self.heading("1. Database")
        call_command("migrate", interactive=False, verbosity=0)
        db = connection.settings_dict
        where = f"{db['NAME']} on {db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        self.say(f"Migrated database {where}; instances live in the table workflow_instances.")

    def create_superuser(self) -> None:
        """A superuser admin/admin, created or its password reset: for this example only."""
        self.heading("2. Admin user")
        user, created = get_user_model().objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"email": "admin@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(ADMIN_PASSWORD)
        user.save()
        verb = "Created" if created else "Reset the password of"
        self.say(f"{verb} the development superuser {ADMIN_USERNAME} / {ADMIN_PASSWORD}.")
        self.say("(Example project only: never use this account or password anywhere else.)")

    def start_orders(self) -> list[UUID]:
        """Start ``self.orders`` orders with varied, seeded contexts; return their ids."""
        self.heading("3. Placing orders")
        first = self.next_order_id()
        rng = random.Random(f"{self.seed}:{first}")  # the same seed and database, the same orders
        contexts = [self.make_order(rng, first + n) for n in range(self.orders)]
        last = contexts[-1]["order_id"]
        self.say(f"OrderFulfilment.start(context) for orders #{first}-#{last} (seed {self.seed}).")
        self.say("Each order runs until it waits, completes or fails:")
        ids = []
        began = time.monotonic()
        for context in self.progress(contexts, "orders"):
            ids.append(OrderFulfilment.start(context))
        elapsed = time.monotonic() - began
        counts = count_by_step(WorkflowInstance.objects.filter(id__in=ids).to_instances())
        width = max(len(step) for _status, step in counts)
        for (status, step), n in sorted(counts.items(), key=lambda item: -item[1]):
            why = EXPLAIN_START.get(step, "")
            self.say(f"  {n:4}  {status:<9}  at {step:<{width}}  {why}".rstrip())
        self.say(f"({len(ids)} orders in {elapsed:.2f} s: every wave of steps is one write.)")
        return ids

    def report_shipments(self, ids: list[UUID]) -> list[Instance]:
        """The warehouse reports: resume most waiting orders as shipped, a few as cancelled."""
        self.heading("4. The warehouse reports")
        waiting = WorkflowInstance.objects.filter(id__in=ids).waiting().to_instances()
        waiting.sort(key=lambda instance: instance.context.initial["order_id"])
        shipped: list[Instance] = []
        cancelled = untouched = 0
        for instance in waiting:
            rng = random.Random(f"{self.seed}:warehouse:{instance.context.initial['order_id']}")
            roll = rng.random()
            if roll < 0.65:
                context = instance.context
                booking = context.result(BookExpressCourier) or context.result(BookStandardCourier)
                payload = {
                    "carrier": booking["carrier"],
                    "tracking": f"{CARRIERS[booking['carrier']]}{rng.randrange(10**9):09d}",
                    "shipped_at": timezone.now().replace(microsecond=0),  # aware; stored tagged
                }
                shipped.append(OrderFulfilment.resume(instance.id, "shipped", payload))
            elif roll < 0.8:
                OrderFulfilment.resume(instance.id, "cancelled", {"reason": "customer cancelled"})
                cancelled += 1
            else:
                untouched += 1
        window = delivery_window()
        self.say(
            f'  {len(shipped):4}  OrderFulfilment.resume(id, "shipped", {{"carrier": ..., '
            '"tracking": ..., "shipped_at": ...})'
        )
        self.say(
            f"        -> a delivery window of {window}: a Wait timer, stored with the instance"
        )
        self.say(f'  {cancelled:4}  OrderFulfilment.resume(id, "cancelled", {{"reason": ...}})')
        self.say("        -> RefundPayment -> Cancelled")
        self.say(f"  {untouched:4}  not reported yet: still waiting at AwaitShipment")
        return shipped

    def fire_timers(self, shipped: list[Instance]) -> None:
        """Wait until the delivery windows are over, then fire the due timers."""
        self.heading("5. Timers")
        due_times = [
            waiting.resume_at
            for instance in shipped
            for waiting in instance.waiting_steps.values()
            if waiting.resume_at is not None
        ]
        if due_times:
            delay = max((max(due_times) - datetime.now(UTC)).total_seconds(), 0)
            self.say(f"Waiting {delay:.1f} s until the last delivery window is over...")
            time.sleep(delay + 0.05)
        fired = run_once()  # what `manage.py hephaestus_worker` does in a loop
        self.say(f"hephaestus_django.worker.run_once(): {len(fired)} timers fired.")
        thanked = sum(1 for i in fired if i.context.result(ThankGoldCustomer) is not None)
        reviewed = sum(1 for i in fired if i.context.result(RequestReview) is not None)
        completed = sum(1 for i in fired if i.status is Status.COMPLETED)
        self.say("Then a Route on the customer's tier chose the follow-up:")
        self.say(f"  {thanked:4}  ThankGoldCustomer (gold customers)")
        self.say(f"  {reviewed:4}  RequestReview (everyone else)")
        self.say(f"  {completed:4}  of them completed")

    def summarise(self) -> None:
        """Counts by workflow, status and step; a JSONB query; one failure."""
        self.heading("6. What is in the database (all runs so far)")
        rows = (
            WorkflowInstance.objects.values("workflow", "status", step=KT("state__current_step"))
            .annotate(count=Count("id"))
            .order_by("workflow", "status", "-count")
        )
        table = [
            (row["workflow"], row["status"], short_name(row["step"]), str(row["count"]))
            for row in rows
        ]
        self.table(("workflow", "status", "current step", "count"), table, right=(3,))

        self.say("")
        self.say("The orders of gold customers, found through the GIN index on the JSONB state:")
        self.say('  >>> WorkflowInstance.objects.with_context(customer={"tier": "gold"})')
        self.say('  # = .filter(state__contains={"context": {"initial": ' + GOLD + "}})")
        gold = WorkflowInstance.objects.with_context(customer={"tier": "gold"})
        latest = gold.order_by("-inserted_at")[:5].to_instances()
        examples = ", ".join(f"#{instance.context.initial['order_id']}" for instance in latest)
        self.say(f"  {gold.count()} instances, {gold.completed().count()} of them completed.")
        if examples:
            self.say(f"  The latest orders, via .to_instances(): {examples}")

        failed = WorkflowInstance.objects.of_workflow(OrderFulfilment).failed()
        row = failed.order_by("-inserted_at").first()
        self.say("")
        if row is None or (error := row.to_instance().error) is None:
            self.say("No failed instance (no declined card among these orders).")
            return
        order_id = row.state["context"]["initial"]["order_id"]
        self.say(f"{failed.count()} failed instances. The latest, order #{order_id}, {row.id}:")
        self.say(f"  step:  {error.step.__qualname__}", self.style_of("ERROR"))
        self.say(f"  error: {error.error_type}: {error.message}", self.style_of("ERROR"))

    def explain_admin(self) -> None:
        """How to look at all this in the admin."""
        self.heading("7. See it in the admin")
        self.say("  python manage.py runserver")
        self.say(f"  then open {ADMIN_URL} and log in as {ADMIN_USERNAME} / {ADMIN_PASSWORD}.")
        self.say("  Filter by status, search the context (order_id=10001),")
        self.say("  resume a waiting order, read a failed one's error and history.")

    # --- orders -----------------------------------------------------------------------------

    def next_order_id(self) -> int:
        """One above the highest stored order id, so a second run adds new orders."""
        highest = (
            WorkflowInstance.objects.of_workflow(OrderFulfilment)
            .annotate(order_id=Cast(KT("state__context__initial__order_id"), IntegerField()))
            .aggregate(highest=Max("order_id"))["highest"]
        )
        return FIRST_ORDER_ID if highest is None else highest + 1

    @staticmethod
    def make_order(rng: random.Random, order_id: int) -> dict[str, Any]:
        """One order's initial context; what kind it is comes from ``KINDS``."""
        (kind,) = rng.choices(list(KINDS), weights=list(KINDS.values()))
        lines = rng.sample(CATALOGUE, k=rng.randint(1, 3))
        items = [
            {"sku": sku, "name": name, "quantity": rng.randint(1, 3), "unit_price": price}
            for sku, name, price in lines
        ]
        if kind == "empty cart":
            items = []
        subtotal = sum((item["unit_price"] * item["quantity"] for item in items), Decimal("0.00"))
        discount = subtotal if kind == "free after voucher" else Decimal("0.00")
        placed_at = datetime(2025, 3, 3, 9, 0, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(60 * 24 * 28)
        )
        return {
            "order_id": order_id,
            "placed_at": placed_at,
            "customer": rng.choice(CUSTOMERS),
            "items": items,
            "discount": discount,
            "total": subtotal - discount,
            "currency": "EUR",
            "card": "declined" if kind == "declined card" else rng.choice(CARDS),
        }

    # --- output -----------------------------------------------------------------------------

    def heading(self, text: str) -> None:
        """A blank line, then ``text`` as a heading."""
        self.say("")
        self.say(text, self.style_of("MIGRATE_HEADING"))

    def say(self, text: str, style_func: Any = None) -> None:
        """Write one line, styled by ``style_func`` if given."""
        self.stdout.write((style_func or str)(text) + "\n")

    def style_of(self, name: str) -> Any:
        """The command's style function ``name`` (e.g. ``ERROR``), or None without a style."""
        return getattr(self.style, name, None)

    def table(
        self, header: tuple[str, ...], rows: list[tuple[str, ...]], *, right: tuple[int, ...] = ()
    ) -> None:
        """Rows in aligned columns; the columns in ``right`` are right-aligned."""
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                cell.rjust(width) if index in right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        self.say("  " + line(header), self.style_of("SQL_FIELD"))
        for row in rows:
            self.say("  " + line(row))

    def progress(self, items: list[Any], unit: str) -> Iterator[Any]:
        """Yield ``items`` with a progress bar on a terminal: tqdm's when installed."""
        stream = RawStream(self.stdout)
        if len(items) < PROGRESS_FROM or not stream.isatty():
            yield from items
            return
        try:
            from tqdm import tqdm
        except ImportError:
            yield from simple_progress(items, unit, stream)
        else:
            yield from tqdm(items, unit=unit, file=stream, leave=False, dynamic_ncols=True)


EXPLAIN_START = {
    "AwaitShipment": "a WaitForEvent: waits for resume()",
    "Rejected": "empty cart or nothing to pay",
    "ChargePayment": "declined card: the step raised PaymentDeclined",
}


def count_by_step(instances: Iterable[Instance]) -> dict[tuple[str, str], int]:
    """How many instances are in each (status, current step)."""
    counts: dict[tuple[str, str], int] = {}
    for instance in instances:
        step = instance.current_step.__qualname__ if instance.current_step else "-"
        key = (instance.status.value, step)
        counts[key] = counts.get(key, 0) + 1
    return counts


def short_name(dotted: str | None) -> str:
    """``shop.workflows.Rejected`` -> ``Rejected``."""
    return dotted.rsplit(".", 1)[-1] if dotted else "-"


def delivery_window() -> str:
    """The configured Wait as words: ``2 seconds``."""
    config = DELIVERY_WINDOW.config
    return f"{config['duration']} {config['unit']}"


class RawStream:
    """Write text as given: a command's stdout would add a newline to every write."""

    def __init__(self, stream: TextIO | OutputWrapper) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    @property
    def encoding(self) -> str | None:
        """The wrapped stream's encoding (tqdm draws with Unicode blocks when it is UTF-8)."""
        return getattr(self.stream, "encoding", None)

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())


def simple_progress(items: list[Any], unit: str, stream: RawStream) -> Iterator[Any]:
    """A one-line progress bar, redrawn with a carriage return."""
    width = 30
    for done, item in enumerate(items, start=1):
        yield item
        filled = width * done // len(items)
        stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{len(items)} {unit}")
        stream.flush()
    stream.write("\r" + " " * (width + 40) + "\r")
