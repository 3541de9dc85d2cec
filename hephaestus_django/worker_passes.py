"""A record of the workers' passes, so that "does any worker run?" has an answer.

Timers fire and stalled instances move on only while a worker runs, and nothing in the
instances' table says whether one does: a quiet table looks the same with or without one. So
each worker process records its passes in ``hephaestus_worker_passes``: one row per process and
storage (``host:pid``), upserted after a pass that worked, at most once every
:data:`RECORD_EVERY` seconds, in the database of the storage the pass served. A worker polling
every second thus costs one small write every ten seconds, not one per pass. The same statement
deletes the rows of workers not seen for :data:`FORGET_AFTER`, so the table stays a handful of
rows.

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

from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.contract import Storage

logger = logging.getLogger("hephaestus_django.worker")

RECORD_EVERY = 10.0
"""Seconds between two records of one worker's passes on one storage, at the least."""

FORGET_AFTER = "7 days"
"""Rows of workers not seen for this long are deleted (a PostgreSQL interval)."""

TABLE = "hephaestus_worker_passes"

UPSERT = f"""
WITH forgotten AS (
    DELETE FROM {TABLE} WHERE last_pass_at < statement_timestamp() - interval '{FORGET_AFTER}'
)
INSERT INTO {TABLE} AS w (worker, storage, host, pid, started_at, last_pass_at, passes, handled)
VALUES (%s, %s, %s, %s, statement_timestamp(), statement_timestamp(), %s, %s)
ON CONFLICT (worker, storage) DO UPDATE SET
    last_pass_at = statement_timestamp(),
    passes = w.passes + EXCLUDED.passes,
    handled = w.handled + EXCLUDED.handled
"""


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

    def __init__(self, every: float = RECORD_EVERY, *, worker: str | None = None) -> None:
        self.every = every
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
                        UPSERT, [self.worker, name[:255], self.host, self.pid, passes, moved]
                    )
            except DatabaseError as error:
                if not pending.failing:
                    logger.warning("could not record the worker's pass on %s: %s", name, error)
                pending.failing = True
                return
            if pending.failing:
                logger.info("the worker's passes on %s are recorded again", name)
            pending.passes = pending.handled = 0
            pending.written, pending.failing = now, False
