"""``InMemoryDispatcher``: the job queue of ``QueuedRunner`` in a list, for tests.

Nothing runs until the test says so: :meth:`InMemoryDispatcher.drain` runs the
jobs (and the jobs they enqueue) until none is left that is due; a wake-up
whose time has not come by the storage's clock stays queued, so a test moves
that clock (``InMemoryStorage(clock=...)``) and drains again. Every job goes
through its JSON payload on the way, as on a real job engine. To test what a
job engine may do (deliver twice, late, out of order, never), :meth:`take`
hands the queued jobs to the test, and :meth:`run` runs any job it is given::

    dispatcher = InMemoryDispatcher()
    configure(storages={"default": InMemoryStorage()},
              runner=QueuedRunner(dispatcher=dispatcher))
    instance_id = OrderWorkflow.start({"order_id": 7})   # nothing has run yet
    dispatcher.drain()                                   # now every step has
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import Job, StepJob, WakeUp, job_from_payload

DRAIN_LIMIT = 10_000
"""How many jobs one :meth:`InMemoryDispatcher.drain` runs at most: a guard against a loop."""


class InMemoryDispatcher:
    """Keeps the jobs ``QueuedRunner`` enqueues, in order, until a test runs them."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<InMemoryDispatcher, {len(self._jobs)} job(s) queued>"

    def enqueue_steps(self, jobs: Sequence[StepJob]) -> None:
        with self._lock:
            self._jobs.extend(_through_payload(job) for job in jobs)

    def enqueue_wakeup(self, wakeup: WakeUp) -> None:
        with self._lock:
            self._jobs.append(_through_payload(wakeup))

    def joins_transaction(self, storage: Storage) -> bool:
        """Never: a list in memory does not roll back with a database transaction."""
        return False

    def pending_steps(self, jobs: Sequence[StepJob]) -> frozenset[StepJob]:
        """Those of ``jobs`` still in the list (a job a test took or ran is not pending)."""
        wanted = set(jobs)
        with self._lock:
            return frozenset(job for job in self._jobs if job in wanted)

    @property
    def jobs(self) -> list[Job]:
        """The queued jobs, oldest first (a copy)."""
        with self._lock:
            return list(self._jobs)

    def take(self) -> list[Job]:
        """Remove every queued job and return them, for a test to run as it likes."""
        with self._lock:
            taken, self._jobs = self._jobs, []
        return taken

    def run(self, job: Job) -> Instance | None:
        """Run ``job`` now with the configured ``QueuedRunner``, as a worker would."""
        from hephaestus_django.runtime.queued import receive

        return receive(job.payload())

    def drain(self, *, limit: int | None = None) -> int:
        """Run queued jobs, oldest first, until none is due (or ``limit`` ran); return how many.

        Jobs enqueued meanwhile run too. A wake-up not yet due by its storage's clock
        stays queued. Without a ``limit``, more than :data:`DRAIN_LIMIT` jobs in one drain
        are taken for a loop and raise ``RuntimeError``.
        """
        ran = 0
        while limit is None or ran < limit:
            job = self._next_due()
            if job is None:
                return ran
            if limit is None and ran == DRAIN_LIMIT:
                raise RuntimeError(
                    f"drain() ran {DRAIN_LIMIT} jobs and more keep coming; does a step enqueue "
                    f"work without end?"
                )
            self.run(job)
            ran += 1
        return ran

    def _next_due(self) -> Job | None:
        with self._lock:
            for index, job in enumerate(self._jobs):
                if not isinstance(job, (WakeUp, StepJob)) or _due(job):
                    return self._jobs.pop(index)
        return None


def _due(job: WakeUp | StepJob) -> bool:
    """Whether ``job`` may run now: a wake-up or a deferred job (an item's retry) once its
    time has come by its storage's clock; any other job at once."""
    if job.at is None:
        return True
    return job.at <= backends.storage(job.storage).now()


def _through_payload(job: Job) -> Job:
    """The job as a worker would get it back from its JSON payload, with the priority a job
    engine keeps beside it (so a test can read it)."""
    found = job_from_payload(job.payload())
    if isinstance(job, StepJob) and isinstance(found, StepJob) and job.priority:
        return replace(found, priority=job.priority)
    return found
