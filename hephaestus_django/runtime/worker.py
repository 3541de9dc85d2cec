"""The worker: fires due timers and takes over instances whose runner died.

:meth:`Worker.run_once` does one full pass (for cron, Celery beat or a Django
task); :meth:`Worker.run` loops until told to stop. Any number of workers may
run at once, on any machines: each instance needing work is claimed by exactly
one of them (see ``storage.claim``). One worker may serve several storages.

A worker is meant to outlive its database's restarts. A pass that fails (the
database is down, a connection was dropped) is logged as one line and tried
again after a delay that doubles with each failure in a row, up to
``max_backoff``; the first pass that works again says so. Each storage keeps
its own pace, so one storage whose database is down does not hold up the
others. The loop never ends because of a failed pass.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hephaestus_django.core.durations import checked_duration
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import bulk
from hephaestus_django.runtime.contract import BulkTable, Storage
from hephaestus_django.runtime.schedules import Scheduler
from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.worker")

DEFAULT_MAX_BACKOFF = 5.0
"""Seconds between two passes on a storage whose passes keep failing, at the most."""


class Worker:
    """Moves on every instance that waits for a due timer or lost its runner.

    ``storage`` is one storage, or several by name (``{"default": ..., "tenant_a": ...}``).
    ``before_pass`` is called before each pass, as a web server calls its frameworks' hooks
    between requests (the Django worker closes connections past ``CONN_MAX_AGE`` there).
    ``after_pass`` is called after each pass that worked, with the storage's name, the storage
    and the instances it moved on (the Django worker records there that a worker runs).
    ``scheduler``, if given, starts the due ticks of its schedules at each pass on a storage
    (see :mod:`~hephaestus_django.runtime.schedules`), after the timers and takeovers.
    On a storage that keeps bulk operations, each pass also runs one batch of a pending bulk
    operation (see :mod:`~hephaestus_django.runtime.bulk`), leased for the runner's lease: a
    worker that dies mid-operation leaves it to another once the lease lapses.
    """

    def __init__(
        self,
        storage: Storage | Mapping[str, Storage],
        runner: Runner,
        *,
        batch_size: int = 100,
        interval: float = 1.0,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        before_pass: Callable[[], None] | None = None,
        after_pass: Callable[[str, Storage, list[Instance]], None] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        interval = checked_duration("interval", interval).total_seconds()
        max_backoff = checked_duration("max_backoff", max_backoff).total_seconds()
        if max_backoff < interval:
            raise ValueError(
                f"max_backoff must be at least the interval ({interval!r}s), not {max_backoff!r}"
            )
        self.storages = dict(storage) if isinstance(storage, Mapping) else {repr(storage): storage}
        if not self.storages:
            raise ValueError("a worker needs at least one storage")
        self.runner = runner
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self.before_pass = before_pass
        self.after_pass = after_pass
        self.scheduler = scheduler
        self.bulk_owner = f"bulk:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who holds the bulk operations this worker runs (their lease's owner)."""
        self._bulk_ran = False

    def run_once(self) -> list[Instance]:
        """Handle everything that needs work now in every storage; return what was handled.

        A storage whose pass fails does not keep the others from theirs; the first error is
        raised once every storage had its pass.
        """
        handled: list[Instance] = []
        failure: Exception | None = None
        for name, storage in self.storages.items():
            try:
                handled.extend(self._pass(name, storage))
            except Exception as error:
                _log_failure(name, error, failures=1, delay=None)
                failure = failure or error
        if failure is not None:
            raise failure
        return handled

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set, sleeping ``interval`` seconds when there is nothing to do.

        A pass that is under way when ``stop`` is set finishes first, so no step is cut off.
        """
        names = ", ".join(self.storages)
        logger.info(
            "worker started on %s (batch size %d, every %.1fs)",
            names,
            self.batch_size,
            self.interval,
        )
        lanes = [_Lane(name, storage) for name, storage in self.storages.items()]
        while not stop.is_set():
            busy = False
            for lane in lanes:
                if stop.is_set():
                    break
                if lane.next_pass <= time.monotonic():
                    busy = self._lane_pass(lane) or busy
            if not busy:
                soonest = min(lane.next_pass for lane in lanes)
                stop.wait(max(soonest - time.monotonic(), 0.01))
        logger.info("worker stopped")

    def _lane_pass(self, lane: _Lane) -> bool:
        """One pass on one storage, keeping its pace; whether it found work."""
        try:
            moved = self._pass(lane.name, lane.storage)
        except Exception as error:
            lane.failures += 1
            delay = min(self.interval * 2 ** (lane.failures - 1), self.max_backoff)
            lane.next_pass = time.monotonic() + delay
            _log_failure(lane.name, error, failures=lane.failures, delay=delay)
            return False
        if lane.failures:
            logger.warning(
                "worker pass on %s works again, after %d failed pass(es)", lane.name, lane.failures
            )
            lane.failures = 0
        busy = bool(moved) or self._bulk_ran
        lane.next_pass = time.monotonic() if busy else time.monotonic() + self.interval
        return busy

    def _pass(self, name: str, storage: Storage) -> list[Instance]:
        if self.before_pass is not None:
            self.before_pass()
        handled: list[Instance] = []
        while True:
            batch = self.runner.work(storage=storage, limit=self.batch_size)
            handled.extend(batch)
            if len(batch) < self.batch_size:
                break
        if handled:
            statuses = Counter(instance.status.value for instance in handled)
            summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            logger.info("moved %d instance(s) on in %s: now %s", len(handled), name, summary)
        if self.scheduler is not None:
            self.scheduler.run_due(name, storage)
        # The debounced starts whose window was quiet (runtime/debounce.py): each once. A
        # runner that is not a Runner (a stand-in with work() alone) starts none.
        start_due = getattr(self.runner, "start_debounced_due", None)
        if start_due is not None:
            start_due(storage=storage, limit=self.batch_size)
        self._bulk_ran = self._bulk_batch(name, storage)
        if self.after_pass is not None:
            self.after_pass(name, storage, handled)
        return handled

    def _bulk_batch(self, name: str, storage: Storage) -> bool:
        """Run the next batch of a bulk operation that needs a runner; whether one ran."""
        if not isinstance(storage, BulkTable):
            return False
        report = bulk.run_batch(
            storage, self.runner, owner=self.bulk_owner, lease=self.runner.lease
        )
        if report is None:
            return False
        state = report.state
        logger.info(
            "bulk %s %s in %s: batch of %d done, %d refused; %d done, %d refused in all%s",
            state.operation,
            state.id,
            name,
            report.done,
            report.refused,
            state.done,
            state.refused,
            " (finished)" if state.finished else "",
        )
        return True


@dataclass
class _Lane:
    """One storage of a looping worker, and when its next pass is due."""

    name: str
    storage: Storage
    failures: int = 0
    next_pass: float = 0.0


def _log_failure(name: str, error: Exception, *, failures: int, delay: float | None) -> None:
    """One line per failed pass; the traceback only at DEBUG level."""
    text = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    streak = f" ({failures} in a row)" if failures > 1 else ""
    then = f"; trying again in {delay:g}s" if delay is not None else ""
    logger.error("worker pass on %s failed%s: %s%s", name, streak, reason, then)
    logger.debug("the failed pass on %s", name, exc_info=error)
