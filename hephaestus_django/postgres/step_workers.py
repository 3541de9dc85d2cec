"""Whether ``QueuedRunner``'s jobs are being run: the job engine's queue, read where it is kept.

With ``QueuedRunner`` the steps run on a job engine's workers (procrastinate's, ``db_worker``),
and nothing in the instances' table says whether any runs: while they are all dead, the sweep
takes the lapsed leases over and enqueues the work again, every lease, so no instance ever
counts as stalled. What does say it is the engine's own table: jobs that are due and that no
worker has taken. :func:`queue_state` reads it, for ``hephaestus_status --check`` and the
admin's dashboard (through :func:`hephaestus_django.postgres.snapshot.snapshot`):

- **procrastinate**: ``procrastinate_jobs`` in ``todo`` on the dispatcher's queue and due
  (``scheduled_at`` passed or none), each waiting since it was deferred (its ``deferred``
  event) or came due, whichever is later; and ``procrastinate_workers.last_heartbeat``: a
  procrastinate 3 worker beats every few seconds, idle or not, so it is seen while alive.
- **Django Tasks** on django-tasks-db's database backend: its task rows ``READY`` on the
  dispatcher's backend and queue and due (``run_after`` passed or none), waiting since
  enqueued or due. ``db_worker`` records no heartbeat: it is seen only by the jobs it
  receives (:class:`~hephaestus_django.postgres.worker_passes.JobRecorder`), so an idle one cannot
  be told from a dead one until work waits.

Each read is a bounded index scan (at most :data:`COUNT_LIMIT` rows counted, the oldest
:data:`SAMPLE` read for the longest wait) in its own short transaction on the queue's
database, with the statement timeout of the snapshot. A queue that cannot be read (the
engine's tables are not migrated, the database is away) is reported as a problem, never as
"all is well".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction

from hephaestus_django.postgres.sql import PROCRASTINATE_QUEUE, QUEUE_SAMPLE, TASKS_QUEUE

COUNT_LIMIT = 10_000
"""Waiting jobs counted exactly before the count becomes "more than"."""
SAMPLE = QUEUE_SAMPLE
"""Oldest waiting jobs read to find the longest wait."""
STATEMENT_TIMEOUT_MS = 2_000


@dataclass(frozen=True)
class QueueState:
    """The job engine's queue of ``QueuedRunner``'s jobs, at its database's ``now``."""

    engine: str
    """``"procrastinate"`` or ``"Django Tasks"``."""
    queue: str
    database: str
    """The database alias the engine keeps its jobs in."""
    now: datetime | None = None
    waiting: int = 0
    """Jobs due that no worker has taken, counted up to :data:`COUNT_LIMIT` (+1: more)."""
    oldest_since: datetime | None = None
    """Since when the longest-waiting of them has waited (None: none waits)."""
    heartbeat_at: datetime | None = None
    """The newest heartbeat of the engine's workers (procrastinate); None when it has none."""
    heartbeats: bool = False
    """Whether the engine's workers beat while idle, so that silence alone says they are gone."""
    problem: str | None = None
    """Why the queue could not be read; the other fields are then unknown."""

    @property
    def waiting_text(self) -> str:
        if self.waiting > COUNT_LIMIT:
            return f"more than {COUNT_LIMIT:,}"
        return f"{self.waiting:,}"

    @property
    def longest_wait(self) -> timedelta | None:
        """How long the longest-waiting due job has waited; None when none waits."""
        if self.now is None or self.oldest_since is None or not self.waiting:
            return None
        return max(self.now - self.oldest_since, timedelta(0))

    def as_json(self) -> dict[str, Any]:
        wait = self.longest_wait
        return {
            "engine": self.engine,
            "queue": self.queue,
            "database": self.database,
            "waiting": {
                "count": min(self.waiting, COUNT_LIMIT),
                "kind": "more_than" if self.waiting > COUNT_LIMIT else "exact",
            },
            "oldest_waiting_since": None if wait is None else _iso(self.oldest_since),
            "longest_wait_s": None if wait is None else round(wait.total_seconds(), 3),
            "engine_heartbeat_at": _iso(self.heartbeat_at),
            "problem": self.problem,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def configured_queue_state() -> QueueState | None:
    """The state of the configured ``QueuedRunner``'s queue; None when steps do not run as jobs
    of an engine whose queue can be read (``LocalRunner``: the sweep runs them; the in-memory
    dispatcher of tests; a dispatcher of your own)."""
    from hephaestus_django.runtime.config import backends
    from hephaestus_django.runtime.queued import QueuedRunner

    try:
        configured = backends.runner()
    except Exception:  # misconfigured: manage.py check says how
        return None
    if not isinstance(configured, QueuedRunner):
        return None
    return queue_state(configured.dispatcher)


def queue_state(dispatcher: object) -> QueueState | None:
    """The state of ``dispatcher``'s queue; None when it is not one of the adapters."""
    from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher
    from hephaestus_django.queues.tasks import TasksDispatcher, database_backend_class

    if isinstance(dispatcher, ProcrastinateDispatcher):
        alias = dispatcher.database_alias()
        found = QueueState("procrastinate", dispatcher.queue, alias, heartbeats=True)
        return _read(
            found, PROCRASTINATE_QUEUE, {"queue": dispatcher.queue, "limit": COUNT_LIMIT + 1}
        )
    if isinstance(dispatcher, TasksDispatcher):
        try:
            database = dispatcher.database_alias()
        except Exception as error:  # no Tasks API, an unknown backend: manage.py check says
            return QueueState(
                "Django Tasks", dispatcher.queue_name, "?", problem=f"{error}".strip()
            )
        if database is None:
            backend = type(dispatcher.get_backend()).__name__
            return QueueState(
                "Django Tasks",
                dispatcher.queue_name,
                "?",
                problem=f"the task backend {dispatcher.backend!r} ({backend}) keeps no queue "
                "this app can read; only django_tasks_db.DatabaseBackend's is watched",
            )
        from django_tasks_db.models import DBTaskResult, get_date_max

        assert database_backend_class() is not None
        found = QueueState("Django Tasks", dispatcher.queue_name, database)
        statement = TASKS_QUEUE.format(
            table=connections[database].ops.quote_name(DBTaskResult._meta.db_table)
        )
        return _read(
            found,
            statement,
            {
                "backend": dispatcher.backend,
                "queue": dispatcher.queue_name,
                "never": get_date_max(),
                "limit": COUNT_LIMIT + 1,
            },
        )
    return None


def _read(found: QueueState, statement: str, params: dict[str, Any]) -> QueueState:
    """``found`` with what ``statement`` reads on its database, or the problem that stopped it."""
    try:
        with (
            transaction.atomic(using=found.database),
            connections[found.database].cursor() as cursor,
        ):
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [f"{STATEMENT_TIMEOUT_MS}ms"]
            )
            cursor.execute(statement, params)
            now, waiting, oldest, heartbeat = cursor.fetchone()
    except DatabaseError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return QueueState(
            found.engine,
            found.queue,
            found.database,
            heartbeats=found.heartbeats,
            problem=f"the {found.engine} queue could not be read in database "
            f"{found.database!r}: {first}",
        )
    return QueueState(
        found.engine,
        found.queue,
        found.database,
        now=now,
        waiting=int(waiting),
        oldest_since=oldest,
        heartbeat_at=heartbeat,
        heartbeats=found.heartbeats,
    )
