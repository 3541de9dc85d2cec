"""``manage.py demo``: orders in every state, then a summary; see :mod:`shop.demo`."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from shop.demo import DEFAULT_ORDERS, DEFAULT_SEED, Demo


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class Command(BaseCommand):
    """Migrate, create admin/admin, run orders through every path of OrderFulfilment, report."""

    help = (
        "Migrate, create a development superuser (admin/admin), run orders through every path "
        "of the OrderFulfilment workflow and print a summary. Re-runnable: adds more orders."
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

    def handle(self, *args: Any, orders: int, seed: int, **options: Any) -> None:
        try:
            Demo(self.stdout, self.style, orders=orders, seed=seed).run()
        except OperationalError as error:
            raise CommandError(
                f"cannot use the database: {error}".strip()
                + "\nCheck DATABASE_URL, or unset it to use the embedded PostgreSQL."
            ) from error
