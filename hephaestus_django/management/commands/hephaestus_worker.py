"""``manage.py hephaestus_worker``: fire due timers and recover stalled instances, in a loop."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from hephaestus_django.conf import storages
from hephaestus_django.management.arguments import positive_float, positive_int
from hephaestus_django.runtime.worker import DEFAULT_MAX_BACKOFF
from hephaestus_django.worker import prune_schedules, worker

LOGGER = "hephaestus_django"
logger = logging.getLogger("hephaestus_django.schedules")


class Command(BaseCommand):
    help = (
        "Fire due workflow timers, take over instances whose runner died and start the "
        "schedules' ticks, in every configured storage or those named; on start, remove the "
        "records of schedules no longer configured. Safe to run as several processes; survives "
        "database restarts. Stops cleanly on SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--storage",
            action="append",
            dest="storages",
            metavar="ALIAS",
            help="a storage alias of settings.HEPHAESTUS['STORAGES'] to serve; repeat it for "
            "several (default: every configured storage)",
        )
        parser.add_argument("--batch-size", type=positive_int, default=100)
        parser.add_argument(
            "--interval", type=positive_float, default=1.0, help="seconds between idle polls"
        )
        parser.add_argument(
            "--max-backoff",
            type=positive_float,
            default=None,
            help="the longest wait, in seconds, between passes that keep failing (default: "
            f"{DEFAULT_MAX_BACKOFF:g}, or the interval if that is longer)",
        )
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        _log_to_stderr_unless_configured(options["verbosity"])
        names = options["storages"] or list(storages)
        unknown = [name for name in names if name not in storages.settings]
        if unknown:
            known = ", ".join(repr(name) for name in storages.settings) or "none"
            raise CommandError(
                f"no storage named {', '.join(map(repr, unknown))} in "
                f"settings.HEPHAESTUS['STORAGES'] (configured: {known})"
            )
        if options["max_backoff"] is None:
            options["max_backoff"] = max(DEFAULT_MAX_BACKOFF, options["interval"])
        if options["max_backoff"] < options["interval"]:
            raise CommandError("--max-backoff must be at least --interval")
        try:
            # The rows of schedules removed from the settings: this worker's settings are the
            # newest of a deployment (an old worker, already running, does not prune).
            prune_schedules(names)
        except DatabaseError:
            logger.exception("the records of removed schedules were not pruned; next start")
        work = worker(
            names,
            batch_size=options["batch_size"],
            interval=options["interval"],
            max_backoff=options["max_backoff"],
        )
        if options["once"]:
            handled = work.run_once()
            self.stdout.write(f"Moved {len(handled)} instance(s) on.")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(
            f"Worker running on {', '.join(names)}; stop it with Ctrl-C or SIGTERM.", ending="\n"
        )
        self.stdout.flush()
        work.run(stop)
        self.stdout.write("Worker stopped.")


def _log_to_stderr_unless_configured(verbosity: int) -> None:
    """Show the worker's log in a project whose ``LOGGING`` says nothing about it.

    Django's default logging configures the ``django`` logger only, so the worker's INFO records
    would go nowhere (and its errors to Python's last-resort handler, unformatted). A project
    whose ``LOGGING`` names ``hephaestus_django`` (or one of its loggers, or the root logger),
    or that attached a handler any other way, keeps its own configuration untouched: its
    levels, its handlers, its silence. ``--verbosity 0`` adds nothing either.
    """
    logger = logging.getLogger(LOGGER)
    if verbosity < 1 or _configured_by_project() or logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity >= 3 else logging.INFO)


def _configured_by_project() -> bool:
    """Whether ``settings.LOGGING`` configures our loggers or the root logger."""
    configured = getattr(settings, "LOGGING", None) or {}
    if not isinstance(configured, dict):
        return False
    if configured.get("root"):
        return True
    loggers = configured.get("loggers") or {}
    return any(
        name in ("", "root", LOGGER) or str(name).startswith(f"{LOGGER}.") for name in loggers
    )
