"""``manage.py demo``: orders in every state, then a summary; see :mod:`shop.demo`."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from shop.demo import DEFAULT_ORDERS, DEFAULT_SEED, DEFAULT_WORKERS, Demo, DemoFailed
from shop.processes import ProcessFailed


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def address(text: str) -> str:
    """An argparse type: ``PORT`` or ``HOST:PORT``, as ``HOST:PORT`` (host 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PORT or HOST:PORT")
    return f"{host or '127.0.0.1'}:{port}"


def _stop_on_signals() -> None:
    """Let SIGINT (Ctrl-C) and SIGTERM unwind the demo, so it stops the processes it started.

    Both raise KeyboardInterrupt, also when the demo was started with SIGINT ignored (as a
    shell script's ``&`` does) and over the handler the embedded server's start installs
    (the server is still stopped at exit, after the demo's processes).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def stopped(demo: Demo) -> str:
    """What to add to an error about the processes the demo started (all stopped by now)."""
    return "\nThe workers and the sweep are stopped." if demo.processes.started else ""


class Command(BaseCommand):
    """Migrate, create admin/admin, start the workers, run orders through every path of
    OrderFulfilment, report; optionally serve the admin with the workers running."""

    help = (
        "Migrate, create a development superuser (admin/admin), start procrastinate workers and "
        "the sweep, run orders through every path of the OrderFulfilment workflow and print a "
        "summary; with --serve, then serve the admin until Ctrl-C. Every process it starts is "
        "stopped when it ends. Re-runnable: adds more orders."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--orders",
            type=positive_int,
            default=DEFAULT_ORDERS,
            metavar="N",
            help=f"how many orders to start (default {DEFAULT_ORDERS})",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help=f"seed of the random orders (default {DEFAULT_SEED})",
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=DEFAULT_WORKERS,
            metavar="N",
            help="how many procrastinate worker processes run the steps "
            f"(default {DEFAULT_WORKERS})",
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=None,
            metavar="SECONDS",
            help="how long to wait for the workers to move the orders on before failing "
            "(default: 60 s, and more for many orders)",
        )
        parser.add_argument(
            "--serve",
            type=address,
            default=None,
            metavar="[HOST:]PORT",
            help="after the summary, serve the admin here (runserver) with the workers running, "
            "until Ctrl-C",
        )

    def handle(
        self,
        *args: Any,
        orders: int,
        seed: int,
        workers: int,
        timeout: float | None,
        serve: str | None,
        **options: Any,
    ) -> None:
        _stop_on_signals()
        demo = Demo(
            self.stdout,
            self.style,
            orders=orders,
            seed=seed,
            workers=workers,
            timeout=timeout,
            serve=serve,
        )
        try:
            demo.run()
        except KeyboardInterrupt:
            if demo.serving:
                self.stdout.write("Stopped the admin, the workers and the sweep.")
                return
            raise CommandError(f"interrupted{stopped(demo)}", returncode=130) from None
        except (DemoFailed, ProcessFailed) as error:
            raise CommandError(f"{error}{stopped(demo)}") from error
        except OperationalError as error:
            raise CommandError(
                f"cannot use the database: {error}".strip()
                + "\nCheck DATABASE_URL, or unset it to use the embedded PostgreSQL."
            ) from error
