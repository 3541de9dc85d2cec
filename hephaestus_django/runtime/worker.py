"""The worker: fires due timers and takes over instances whose runner died.

:meth:`Worker.run_once` does one full pass (for cron, Celery beat or a Django
task); :meth:`Worker.run` loops until told to stop. Any number of workers may
run at once, on any machines: each instance needing work is claimed by exactly
one of them (see ``storage.claim``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.runner import Runner
from hephaestus_django.runtime.storage import Storage

logger = logging.getLogger("hephaestus_django.worker")


class Worker:
    """Moves on every instance that waits for a due timer or lost its runner."""

    def __init__(
        self, storage: Storage, runner: Runner, *, batch_size: int = 100, interval: float = 1.0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.storage = storage
        self.runner = runner
        self.batch_size = batch_size
        self.interval = interval

    def run_once(self) -> list[Instance]:
        """Handle everything that needs work now, batch after batch; return what was handled."""
        handled: list[Instance] = []
        while True:
            batch = self.runner.work(storage=self.storage, limit=self.batch_size)
            handled.extend(batch)
            if len(batch) < self.batch_size:
                break
        if handled:
            statuses = Counter(instance.status.value for instance in handled)
            summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            logger.info("moved %d instance(s) on: now %s", len(handled), summary)
        return handled

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set, sleeping ``interval`` seconds when there is nothing to do.

        A pass that is under way when ``stop`` is set finishes first, so no step is cut off.
        """
        logger.info("worker started (batch size %d, every %.1fs)", self.batch_size, self.interval)
        while not stop.is_set():
            try:
                busy = bool(self.run_once())
            except Exception:  # a database hiccup must not end the worker; log and go on
                logger.exception("worker pass failed; trying again in %.1fs", self.interval)
                busy = False
            if not busy:
                stop.wait(self.interval)
        logger.info("worker stopped")
