"""A record of the workers' passes, so that "does any worker run?" has an answer.

Timers fire and stalled instances move on only while a worker runs, and nothing in the instances'
table says whether one does: a quiet table looks the same with or without one. So each worker
process records its passes in ``hephaestus_worker_passes``: one row per process, storage and role
(``host:pid``; role ``sweep`` for ``hephaestus_worker``, ``jobs`` for a job engine's worker
receiving ``QueuedRunner``'s jobs, see :class:`JobRecorder`), upserted after a pass that worked, at
most once every :data:`RECORD_EVERY` seconds, in the database of the storage the pass served. A
worker polling every second thus costs one small write every ten seconds, not one per pass. The
same statement deletes the rows of workers not seen for :data:`FORGET_AFTER`, so the table stays a
handful of rows.

The time written is the database's (``statement_timestamp()``), like every other time the app
decides with. A record that cannot be written (the migration is not applied yet, the database is
away) is logged and never stops the worker: firing timers matters more than saying so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from django.db import DatabaseError, connections, transaction

from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.sql import RECORD_PASSES
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import Job

logger = logging.getLogger("hephaestus_django.worker")

RECORD_EVERY = 10.0
"""Seconds between two records of one worker's passes on one storage, at the least."""


SWEEP = "sweep"
"""The role of ``hephaestus_worker``'s passes."""
JOBS = "jobs"
"""The role of a job engine's worker (procrastinate's, ``db_worker``) receiving
``QueuedRunner``'s jobs: a *step worker*. Each job it receives counts as a pass."""


@dataclass
class _Pending:
    """Passes not recorded yet on one storage, and when the last record was written."""

    passes: int = 0
    handled: int = 0
    written: float | None = None
    failing: bool = False


class PassRecorder:
    """The worker's ``after_pass`` hook: records its passes on each Django storage.

    Storages that are not in a Django database (``InMemoryStorage``, a backend of your own
    without a ``using`` alias) are left alone: there is nowhere to record them.
    """

    def __init__(
        self, every: float = RECORD_EVERY, *, worker: str | None = None, role: str = SWEEP
    ) -> None:
        self.every = every
        self.role = role
        self._what = "worker's pass" if role == SWEEP else "step worker's jobs"
        self._what_plural = "worker's passes" if role == SWEEP else "step worker's jobs"
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.worker = (worker or f"{self.host}:{self.pid}")[:255]
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, storage: Storage, handled: list[Instance]) -> None:
        using = getattr(storage, "using", None)
        if not isinstance(using, str):
            return
        with self._lock:
            pending = self._pending.setdefault(name, _Pending())
            pending.passes += 1
            pending.handled += len(handled)
            now = time.monotonic()
            if pending.written is not None and now - pending.written < self.every:
                return
            passes, moved = pending.passes, pending.handled
            try:
                # atomic: inside a caller's transaction, a failed record rolls back to its
                # savepoint and leaves that transaction usable.
                with transaction.atomic(using=using), connections[using].cursor() as cursor:
                    cursor.execute(
                        RECORD_PASSES,
                        [self.worker, name[:255], self.role, self.host, self.pid, passes, moved],
                    )
            except DatabaseError as error:
                if not pending.failing:
                    logger.warning("could not record the %s on %s: %s", self._what, name, error)
                pending.failing = True
                return
            if pending.failing:
                logger.info("the %s on %s are recorded again", self._what_plural, name)
            pending.passes = pending.handled = 0
            pending.written, pending.failing = now, False


class JobRecorder:
    """Records, in role :data:`JOBS`, that this process received ``QueuedRunner`` jobs: the sign
    of life of a step worker (procrastinate's worker, ``db_worker``), which
    ``hephaestus_status --max-step-worker-silence`` and the dashboard read.

    Installed by the app's ``ready()`` as an observer of
    :func:`hephaestus_django.runtime.queued.receive`; it shares :class:`PassRecorder`'s
    throttle (one upsert per storage every :data:`RECORD_EVERY` seconds at most, the first at
    once) and never fails a job: a record that cannot be written is logged.
    """

    def __init__(self, every: float = RECORD_EVERY) -> None:
        self._passes = PassRecorder(every, role=JOBS)

    def __call__(self, job: Job) -> None:
        from hephaestus_django.runtime.config import backends

        try:
            storage = backends.storage(job.storage)
        except HephaestusError:  # the job names no storage of this process: handle() says so
            return
        self._passes(job.storage, storage, [])
