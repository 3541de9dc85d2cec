"""``manage.py hephaestus_worker``: fire due timers and recover stalled instances, in a loop."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from hephaestus_django.management.arguments import positive_float, positive_int
from hephaestus_django.worker import worker


class Command(BaseCommand):
    help = (
        "Fire due workflow timers and take over instances whose runner died. Safe to run as "
        "several processes. Stops cleanly on SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--storage", default="default", help="storage alias (default: default)")
        parser.add_argument("--batch-size", type=positive_int, default=100)
        parser.add_argument(
            "--interval", type=positive_float, default=1.0, help="seconds between idle polls"
        )
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] >= 1:
            logging.getLogger("hephaestus_django").setLevel(logging.INFO)
        work = worker(
            options["storage"], batch_size=options["batch_size"], interval=options["interval"]
        )
        if options["once"]:
            handled = work.run_once()
            self.stdout.write(f"Moved {len(handled)} instance(s) on.")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("Worker running; stop it with Ctrl-C or SIGTERM.")
        work.run(stop)
        self.stdout.write("Worker stopped.")
