"""The demo behind ``manage.py demo``: orders in every state, then a summary of what happened.

The steps run on worker processes, as in production: the example project's runner is
``QueuedRunner`` with the procrastinate adapter, and the demo starts ``--workers`` procrastinate
workers and the sweep (``hephaestus_worker``) itself, then stops them when it ends, however it
ends (:mod:`shop.processes`). ``start()`` and ``resume()`` return at once; the demo then waits
until the workers have moved every order to the state it expects, and fails, naming the orders
that are stuck, if they take longer than ``timeout`` seconds.

A plain class, so it can be run and tested without the command line::

    Demo(sys.stdout, orders=10, seed=1).run()

It is re-runnable: every run adds new orders (numbered after the highest stored one) to what
the database already holds.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
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

from hephaestus_django import Instance, Status, Step, storages
from hephaestus_django.models import WorkflowInstance
from shop.processes import DemoProcesses, check_free
from shop.workflows import (
    DELIVERY_WINDOW,
    AwaitShipment,
    BookExpressCourier,
    BookStandardCourier,
    Cancelled,
    ChargePayment,
    OrderFulfilment,
    Rejected,
    RequestReview,
    ThankGoldCustomer,
)

DEFAULT_ORDERS = 50
DEFAULT_SEED = 2024
DEFAULT_WORKERS = 2
DEFAULT_ADDRESS = "127.0.0.1:8000"
FIRST_ORDER_ID = 10001
LOG_DIR = Path(__file__).resolve().parent.parent / ".pgdata" / "logs"
"""Where the workers' and the sweep's output goes (``example_project/.pgdata/logs/``)."""
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


class DemoFailed(Exception):
    """The demo could not go on: orders stuck or in an unexpected state (the message says which)."""


@dataclass(frozen=True)
class Expected:
    """The state an order should reach: a status, and where (waiting at, completed, failed at)."""

    status: Status
    step: type[Step]

    def met(self, instance: Instance) -> bool:
        if instance.status is not self.status:
            return False
        if self.status is Status.WAITING:
            return self.step in instance.waiting_steps
        if self.status is Status.FAILED:
            return instance.error is not None and instance.error.step is self.step
        return self.step in instance.completed_steps

    def __str__(self) -> str:
        return f"{self.status} at {self.step.__qualname__}"


UNDER_WAY = frozenset({Status.PENDING, Status.RUNNING, Status.WAITING})
"""Statuses an instance may still leave by itself; in any other it stays (until retried)."""


class Demo:
    """Migrate, create the admin user, start the workers, run orders through every path, report;
    then serve the admin if ``serve`` names an address (``127.0.0.1:8000``) until Ctrl-C."""

    def __init__(
        self,
        stdout: TextIO | OutputWrapper,
        style: Any = None,
        *,
        orders: int = DEFAULT_ORDERS,
        seed: int = DEFAULT_SEED,
        workers: int = DEFAULT_WORKERS,
        timeout: float | None = None,
        serve: str | None = None,
    ) -> None:
        if orders < 1:
            raise ValueError(f"orders must be a positive number, not {orders!r}")
        if workers < 1:
            raise ValueError(f"workers must be a positive number, not {workers!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.stdout = stdout
        self.style = style
        self.orders = orders
        self.seed = seed
        self.timeout = default_timeout(orders, workers) if timeout is None else timeout
        self.serve = serve
        self.storage = storages["default"]
        self.processes = DemoProcesses(workers=workers, log_dir=LOG_DIR)
        self.serving = False
        """True once the admin is served: Ctrl-C is then the way to stop, not a failure."""

    def run(self) -> None:
        """Every part of the demo, in order; the processes it started are stopped at the end,
        also when a part fails or the demo is interrupted."""
        if self.serve:
            check_free(self.serve)
        self.migrate()
        self.create_superuser()
        with self.processes:
            self.start_processes()
            started = self.start_orders()
            self.report_shipments(started)
            self.summarise()
            self.explain_admin()
            if self.serve:
                self.serving = True
                self.processes.serve(self.serve)
        self.say("Stopped the workers and the sweep.")

    # --- the parts ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or update the tables: the instances', and procrastinate's jobs."""
        self.heading("1. Database")
        call_command("migrate", interactive=False, verbosity=0)
        db = connection.settings_dict
        where = f"{db['NAME']} on {db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        self.say(f"Migrated database {where}; instances live in the table workflow_instances,")
        self.say("and their steps' jobs in procrastinate_jobs.")

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

    def start_processes(self) -> None:
        """Start the procrastinate workers and the sweep."""
        self.heading("3. Workers")
        self.say("The runner is QueuedRunner with the procrastinate adapter: every step is a job.")
        began = time.monotonic()
        workers = self.processes.start_workers()
        sweep = self.processes.start_sweep()
        pids = ", ".join(str(child.pid) for child in workers)
        self.say(
            f"Started {len(workers)} workers, `manage.py procrastinate worker` "
            f"(pid {pids}), in {time.monotonic() - began:.1f} s,"
        )
        self.say(
            f"and the sweep, `manage.py hephaestus_worker` (pid {sweep.pid}): it enqueues again"
        )
        self.say("the work of an instance whose worker died. They stop when the demo stops.")
        self.say(f"Their logs: {self.processes.log_dir}/")

    def start_orders(self) -> list[UUID]:
        """Start ``self.orders`` orders with varied, seeded contexts; return their ids once the
        workers have moved every one of them as far as it goes."""
        self.heading("4. Placing orders")
        first = self.next_order_id()
        rng = random.Random(f"{self.seed}:{first}")  # the same seed and database, the same orders
        contexts = [self.make_order(rng, first + n) for n in range(self.orders)]
        last = contexts[-1]["order_id"]
        self.say(f"OrderFulfilment.start(context) for orders #{first}-#{last} (seed {self.seed}).")
        ids = []
        began = time.monotonic()
        for context in self.progress(contexts, "orders"):
            ids.append(OrderFulfilment.start(context))
        elapsed = time.monotonic() - began
        self.say(
            f"({len(ids)} starts in {elapsed:.2f} s: each commits the instance and its first job "
            "together, and returns.)"
        )
        expected = {
            id: expected_after_start(context) for id, context in zip(ids, contexts, strict=True)
        }
        moved, waited = self.wait_for(expected, "placed")
        self.say(
            f"The workers ran each order until it waited, completed or failed ({waited:.2f} s):"
        )
        counts = count_by_step(moved)
        width = max(len(step) for _status, step in counts)
        for (status, step), n in sorted(counts.items(), key=lambda item: -item[1]):
            why = EXPLAIN_START.get(step, "")
            self.say(f"  {n:4}  {status:<9}  at {step:<{width}}  {why}".rstrip())
        return ids

    def report_shipments(self, ids: list[UUID]) -> None:
        """The warehouse reports: resume most waiting orders as shipped, a few as cancelled;
        then the workers run the refunds, and fire the delivery windows' timers when due."""
        self.heading("5. The warehouse reports")
        waiting = WorkflowInstance.objects.filter(id__in=ids).waiting().to_instances()
        waiting.sort(key=lambda instance: instance.context.initial["order_id"])
        expected: dict[UUID, Expected] = {}
        untouched = 0
        began = time.monotonic()
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
                OrderFulfilment.resume(instance.id, "shipped", payload)
                expected[instance.id] = Expected(Status.COMPLETED, follow_up_of(instance))
            elif roll < 0.8:
                OrderFulfilment.resume(instance.id, "cancelled", {"reason": "customer cancelled"})
                expected[instance.id] = Expected(Status.COMPLETED, Cancelled)
            else:
                untouched += 1
        elapsed = time.monotonic() - began
        shipped = sum(1 for e in expected.values() if e.step is not Cancelled)
        cancelled = len(expected) - shipped
        window = delivery_window()
        self.say(
            f'  {shipped:4}  OrderFulfilment.resume(id, "shipped", {{"carrier": ..., '
            '"tracking": ..., "shipped_at": ...})'
        )
        self.say(
            f"        -> a delivery window of {window}: a Wait timer, stored with the instance,"
        )
        self.say("           and a wake-up job scheduled for when it is due")
        self.say(f'  {cancelled:4}  OrderFulfilment.resume(id, "cancelled", {{"reason": ...}})')
        self.say("        -> RefundPayment -> Cancelled")
        self.say(f"  {untouched:4}  not reported yet: still waiting at AwaitShipment")
        if expected:
            self.say(
                f"({len(expected)} resumes in {elapsed:.2f} s: each returns once its transition "
                "and jobs are committed.)"
            )
        self.heading("6. Timers")
        finished, waited = self.wait_for(expected, "reported")
        self.say("The workers ran the refunds, and fired each delivery window's timer when it")
        self.say(f"was over ({window}; all done in {waited:.2f} s); then a Route on the")
        self.say("customer's tier chose the follow-up:")
        thanked = sum(1 for i in finished if i.context.result(ThankGoldCustomer) is not None)
        reviewed = sum(1 for i in finished if i.context.result(RequestReview) is not None)
        refunded = sum(1 for i in finished if Cancelled in i.completed_steps)
        self.say(f"  {thanked:4}  ThankGoldCustomer (gold customers)")
        self.say(f"  {reviewed:4}  RequestReview (everyone else)")
        self.say(f"  {thanked + reviewed:4}  of them completed")
        self.say(f"  {refunded:4}  cancelled orders refunded (RefundPayment -> Cancelled)")

    def wait_for(
        self, expected: Mapping[UUID, Expected], what: str
    ) -> tuple[list[Instance], float]:
        """Wait until every instance of ``expected`` is in its expected state; return them, and
        how many seconds that took.

        Fails with :class:`DemoFailed`, naming the orders, when one ends in another state, or
        when they are not all there after ``self.timeout`` seconds; with
        :class:`~shop.processes.ProcessFailed` when a worker or the sweep has died.
        """
        began = time.monotonic()
        pending = dict(expected)
        arrived: list[Instance] = []
        stream = RawStream(self.stdout)
        show = stream.isatty() and len(expected) >= PROGRESS_FROM
        while pending:
            found = {
                instance.id: instance
                for instance in WorkflowInstance.objects.filter(id__in=pending).to_instances()
            }
            wrong = []
            for id, expectation in list(pending.items()):
                instance = found.get(id)
                if instance is None:
                    wrong.append(f"{id}: the instance no longer exists")
                elif expectation.met(instance):
                    arrived.append(instance)
                    del pending[id]
                elif instance.status not in UNDER_WAY:
                    wrong.append(f"{describe(instance)}, expected {expectation}")
            if wrong:
                raise DemoFailed(
                    f"{len(wrong)} {what} orders ended in a state the demo does not expect:\n"
                    + listing(wrong)
                )
            if not pending:
                break
            self.processes.check_running()
            if time.monotonic() - began > self.timeout:
                stuck = [
                    f"{describe(found[id])}, expected {expectation}"
                    for id, expectation in pending.items()
                ]
                raise DemoFailed(
                    f"{len(stuck)} of {len(expected)} {what} orders did not reach the state "
                    f"expected within {self.timeout:g} s (--timeout):\n{listing(stuck)}\n"
                    f"The workers' and the sweep's logs: {self.processes.log_dir}/"
                )
            if show:
                done = len(expected) - len(pending)
                stream.write(f"\r  the workers have moved {done}/{len(expected)} orders on")
                stream.flush()
            time.sleep(0.1)
        if show:
            stream.write("\r" + " " * 60 + "\r")
        return arrived, time.monotonic() - began

    def summarise(self) -> None:
        """Counts by workflow, status and step; a JSONB query; one failure; who ran the steps."""
        self.heading("7. What is in the database (all runs so far)")
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

        self.say("")
        self.say_workers()

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

    def say_workers(self) -> None:
        """Which worker processes ran this run's steps, and how many jobs each."""
        jobs = self.processes.jobs_by_worker()
        busy = sum(1 for count in jobs.values() if count)
        self.say(
            f"This run's steps ran as {sum(jobs.values())} procrastinate jobs on {busy} of "
            f"{len(jobs)} workers, on host {socket.gethostname()}:"
        )
        for child, count in jobs.items():
            self.say(f"  {child.name} (pid {child.pid}): {count} jobs")

    def explain_admin(self) -> None:
        """How to look at all this in the admin."""
        self.heading("8. See it in the admin")
        url = f"http://{self.serve or DEFAULT_ADDRESS}/admin/"
        if self.serve:
            self.say(f"Serving the admin at {url}: log in as {ADMIN_USERNAME} / {ADMIN_PASSWORD}.")
            self.say("  The workers and the sweep keep running. Resume an order waiting at")
            self.say("  AwaitShipment: the page returns at once, the instance running; reload it")
            self.say("  to see the workers move it on. Filter by status, search the context")
            self.say("  (order_id=10001), read a failed one's error and history.")
            self.say("  Ctrl-C stops the admin, the workers and the sweep.")
            self.say("")
            return
        self.say("  make demo   (it serves the admin, with the workers running, until Ctrl-C)")
        self.say(f"  then open {url} and log in as {ADMIN_USERNAME} / {ADMIN_PASSWORD}.")
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


def expected_after_start(order: Mapping[str, Any]) -> Expected:
    """Where a new order should get to by itself, from what ``make_order`` made of it."""
    if not order["items"] or order["total"] <= 0:
        return Expected(Status.COMPLETED, Rejected)
    if order["card"] == "declined":
        return Expected(Status.FAILED, ChargePayment)
    return Expected(Status.WAITING, AwaitShipment)


def follow_up_of(instance: Instance) -> type[Step]:
    """The step a shipped order's delivery ends with: the Route of ``shop.workflows``."""
    if instance.context.initial["customer"]["tier"] == "gold":
        return ThankGoldCustomer
    return RequestReview


def describe(instance: Instance) -> str:
    """``#10003 (1a2b...) is running at ChargePayment``."""
    order = instance.context.initial.get("order_id", "?")
    steps = sorted(step.__qualname__ for step in instance.active_steps) or [
        instance.current_step.__qualname__ if instance.current_step else "-"
    ]
    return f"order #{order} ({instance.id}) is {instance.status} at {', '.join(steps)}"


def listing(lines: list[str], most: int = 10) -> str:
    """The first ``most`` lines, indented, and how many more there are."""
    shown = [f"  {line}" for line in lines[:most]]
    if len(lines) > most:
        shown.append(f"  ... and {len(lines) - most} more")
    return "\n".join(shown)


def default_timeout(orders: int, workers: int) -> float:
    """How long the demo waits for the workers by default: a minute, and a second more per
    order and worker (a worker moves a few orders a second on, so this is generous)."""
    return 60.0 + orders / workers


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
