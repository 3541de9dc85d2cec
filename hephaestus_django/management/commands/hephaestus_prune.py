"""``manage.py hephaestus_prune``: delete old finished workflow instances, in batches."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.management.arguments import positive_int
from hephaestus_django.retention import Pruner, parse_age
from hephaestus_django.runtime.filters import status_value


def age(text: str) -> Any:
    try:
        return parse_age(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def status(text: str) -> str:
    try:
        return status_value(text)
    except InvalidQueryError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class Command(BaseCommand):
    help = (
        "Delete workflow instances in the given statuses whose last change is older than "
        "--older-than, in batches. Example: --status completed --older-than 30d --dry-run"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--status",
            type=status,
            action="append",
            required=True,
            dest="statuses",
            help="a status to prune (repeat for several), e.g. completed",
        )
        parser.add_argument("--older-than", type=age, required=True, help="e.g. 30d, 12h, 2w")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=positive_int, default=1000)
        parser.add_argument("--database", default="default", help="database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pruner = Pruner(
                statuses=options["statuses"],
                older_than=options["older_than"],
                using=options["database"],
                batch_size=options["batch_size"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        report = pruner.run(dry_run=options["dry_run"])
        cutoff = f"{report.cutoff:%Y-%m-%d %H:%M:%S %Z}"
        what = f"{', '.join(pruner.statuses)} instances last changed before {cutoff}"
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {report.matched} {what} would be deleted.")
        else:
            self.stdout.write(
                f"Deleted {report.deleted} {what} in {report.batches} batch(es) "
                f"of at most {pruner.batch_size}."
            )
