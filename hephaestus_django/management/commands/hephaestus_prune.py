"""``manage.py hephaestus_prune``: delete old finished workflow instances, in batches.

It reports progress as it goes (every ``--progress-every`` seconds) and stops cleanly on Ctrl-C:
the first SIGINT lets the batch under way commit and stops there, printing the totals; a second
one abandons that batch (its statement is cancelled and rolls back). Either way the exit status
is 130, the shell's code for "interrupted by SIGINT", after the totals.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from dataclasses import replace
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.management.arguments import (
    database_of,
    non_negative_seconds,
    positive_int,
)
from hephaestus_django.postgres.retention import Pruner, PruneReport, parse_age
from hephaestus_django.runtime.filters import status_value

INTERRUPTED = 130
"""Exit status after Ctrl-C: 128 + SIGINT, what shells report for a process SIGINT stopped."""


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


def progress_line(report: PruneReport) -> str:
    """``"120,000 of 750,000 deleted (16%) in 120 batches, 11,500 rows/s, about 55 s to go"``."""
    share = f" ({report.deleted / report.matched:.0%})" if report.matched else ""
    line = (
        f"{report.deleted:,} of {report.matched:,} deleted{share} in {report.batches:,} "
        f"batch(es), {report.rate:,.0f} rows/s"
    )
    left = report.matched - report.deleted
    if report.rate > 0 and left > 0:
        line += f", about {left / report.rate:,.0f} s to go"
    return line


class ProgressLines:
    """Writes a progress line after a batch when ``every`` seconds passed since the last one."""

    def __init__(self, out: OutputWrapper, every: float) -> None:
        self.out = out
        self.every = every
        self.last: PruneReport | None = None
        self._written = time.monotonic()

    def __call__(self, report: PruneReport) -> None:
        self.last = report
        now = time.monotonic()
        if now - self._written >= self.every:
            self.out.write(progress_line(report))
            self._written = now


class CtrlC:
    """While active, the first SIGINT asks the prune to stop; a second one interrupts it."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.requested = threading.Event()
        self._previous: Any = None

    def _first(self, signum: int, frame: FrameType | None) -> None:
        self.requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.out.write("Stopping after the batch under way (Ctrl-C again to abandon it)...")

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._first)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Command(BaseCommand):
    help = (
        "Delete workflow instances in the given statuses whose last change is older than "
        "--older-than, in batches. Example: --status completed --status cancelled --older-than "
        "30d --dry-run"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--status",
            type=status,
            action="append",
            required=True,
            dest="statuses",
            help="a status to prune (repeat for several): the finished ones are completed, "
            "failed and cancelled; there is no default, a prune names what it deletes",
        )
        parser.add_argument("--older-than", type=age, required=True, help="e.g. 30d, 12h, 2w")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=positive_int, default=1000)
        parser.add_argument(
            "--storage",
            help="storage alias in settings.HEPHAESTUS['STORAGES'] whose database to prune "
            "(default: default)",
        )
        parser.add_argument("--database", help="database alias to prune (instead of --storage)")
        parser.add_argument(
            "--progress-every",
            type=non_negative_seconds,
            default=5.0,
            help="seconds between progress lines (default 5; 0: after every batch)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pruner = Pruner(
                statuses=options["statuses"],
                older_than=options["older_than"],
                using=database_of(options["storage"], options["database"]),
                batch_size=options["batch_size"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        cutoff = f"{pruner.cutoff:%Y-%m-%d %H:%M:%S %Z}"
        what = f"{', '.join(pruner.statuses)} instances last changed before {cutoff}"
        if options["dry_run"]:
            report = pruner.run(dry_run=True)
            self.stdout.write(f"Dry run: {report.matched} {what} would be deleted.")
            return
        progress = ProgressLines(self.stdout, options["progress_every"])
        with CtrlC(self.stdout) as ctrl_c:
            try:
                report = pruner.run(progress=progress, stop=ctrl_c.requested.is_set)
            except KeyboardInterrupt:
                if progress.last is None:
                    self.stdout.write("Interrupted before the first batch: nothing deleted.")
                    raise SystemExit(INTERRUPTED) from None
                report = replace(progress.last, interrupted=True)
                self.stdout.write("The batch under way was abandoned (rolled back).")
        totals = (
            f"{report.deleted} {what} in {report.batches} batch(es) of at most "
            f"{pruner.batch_size}, {report.elapsed_s:.1f} s ({report.rate:,.0f} rows/s)"
        )
        if report.interrupted:
            self.stdout.write(
                f"Interrupted: deleted {totals}; {report.matched - report.deleted} of the "
                f"{report.matched} matched when it started are left. Run the command again "
                "to go on."
            )
            raise SystemExit(INTERRUPTED)
        self.stdout.write(f"Deleted {totals}.")
