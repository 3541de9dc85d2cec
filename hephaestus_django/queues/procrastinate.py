"""``ProcrastinateDispatcher``: ``QueuedRunner``'s jobs as procrastinate jobs.

Set-up (``pip install 'hephaestus-django[procrastinate]'``)::

    INSTALLED_APPS = [..., "procrastinate.contrib.django", "hephaestus_django"]
    HEPHAESTUS = {
        "RUNNER": {
            "BACKEND": "hephaestus_django.runtime.QueuedRunner",
            "OPTIONS": {
                "dispatcher": "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
                "dispatcher_options": {"queue": "hephaestus", "priority": 0},
            },
        },
    }

then ``manage.py migrate`` (procrastinate's tables), ``manage.py procrastinate worker``
(as many as you like, anywhere) and ``manage.py hephaestus_worker`` (the sweep).

**Transactional defer.** A job is inserted into ``procrastinate_jobs`` through Django's
connection of the calling thread on procrastinate's database alias
(``settings.PROCRASTINATE_DATABASE_ALIAS``, default ``"default"``), never through a pool of
procrastinate's own, also inside ``manage.py procrastinate worker`` (whose app uses a pool).
So when the storage is a ``DjangoStorage`` on that alias, the jobs join the transaction that
records the transition: both commit, or neither (:meth:`ProcrastinateDispatcher.joins_transaction`).
Procrastinate's insert trigger notifies the workers (LISTEN/NOTIFY) when it commits.

**procrastinate's own function, in one statement.** The jobs are inserted by the SQL
function procrastinate's own ``defer`` calls, ``procrastinate_defer_jobs_v1`` (procrastinate
3.2 and later; :func:`defer_statement`), in one statement on Django's cursor, and not through
a ``procrastinate.App`` with a ``DjangoConnector``: building the job objects, adapting them to
the composite type and the connector's wrapping cost a worker ~0.5 ms of CPU per job (a no-op
step's job takes ~7 ms in all), for the same rows. A job that records its step's result goes
further: the call is an expression of the storage's own write
(:meth:`ProcrastinateDispatcher.jobs_for_put`, ``DjangoStorage.put_with_jobs``), evaluated
only when that write lands, so the result and the next step's job are one statement that
commits by itself, rather than a transaction of two (its ``BEGIN`` and ``COMMIT`` are round
trips too). procrastinate versions its SQL functions (``_v1``) and changes a signature only
under a new name, so the statement holds as long as procrastinate's own defer calls that
function: ``tests/dispatchers/test_procrastinate.py`` fails if the installed procrastinate's
defer statement, its job type or the rows it writes differ from this module's.

**The tasks.** Two procrastinate tasks, :data:`STEP_TASK` and :data:`WAKE_UP_TASK`, run on
the workers; both hand their payload to :func:`hephaestus_django.runtime.queued.receive`.
``hephaestus_django``'s ``AppConfig.ready()`` registers them on
``procrastinate.contrib.django.app`` when ``procrastinate.contrib.django`` is installed
(:func:`register_tasks`), whatever ``PROCRASTINATE_AUTODISCOVER_MODULE_NAME`` says, and in
whichever order the two apps come. Neither this module nor the app imports procrastinate
otherwise: importing this module, and building the dispatcher, work without it.

**No retries, no locks.** A job that fails (the database went away mid-step) is not retried
by procrastinate: the instance's lease lapses and ``hephaestus_worker`` enqueues its work
again, the one recovery path, which also covers a worker that was killed. Jobs take no
procrastinate ``lock``: the branches of a fan-out must run at once, and the runner already
serializes each instance's transitions. Nor a ``queueing_lock``: a second job of a waiting one
would make procrastinate's defer raise, aborting the transaction of the write that enqueued it;
instead the sweep asks :meth:`ProcrastinateDispatcher.pending_steps` which steps still have a
job waiting (``todo``), and enqueues only the others.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver

from hephaestus_django.core.errors import InvalidJobError
from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.sql import (
    DEFER_FUNCTION,
    JOB_TYPE,
    PROCRASTINATE_JOB_ROW,
    PROCRASTINATE_PENDING_STEPS,
)
from hephaestus_django.postgres.storage import DjangoStorage, JobsSQL
from hephaestus_django.queues import Requirements
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import StepJob, WakeUp, job_from_payload
from hephaestus_django.runtime.queued import receive

STEP_TASK = "hephaestus_django.step"
"""The procrastinate task that executes one step of one instance."""
WAKE_UP_TASK = "hephaestus_django.wake_up"
"""The procrastinate task that fires an instance's due timers (deferred with ``schedule_at``)."""

JOB_FIELDS = (
    "queue_name",
    "task_name",
    "priority",
    "lock",
    "queueing_lock",
    "args",
    "scheduled_at",
)
"""The type's fields in order (``procrastinate.types.JobToDefer``): what :func:`defer_statement`
writes, in that order, in each ``ROW(...)``."""

_Job = tuple[str, str, int, dict[str, Any], datetime | None]
"""A job to defer: its queue, task, priority, task keyword arguments and ``scheduled_at``."""

DEFAULT_QUEUE = "hephaestus"
DJANGO_APP = "procrastinate.contrib.django"
INSTALL_HINT = "pip install 'hephaestus-django[procrastinate]'"


class ProcrastinateDispatcher:
    """Enqueues ``QueuedRunner``'s jobs with procrastinate, in the caller's transaction.

    ``queue``: the procrastinate queue of every job (default ``"hephaestus"``); a worker
    started with ``--queues`` must name it. ``priority``: the procrastinate priority of step
    jobs (higher runs first; default 0), to which each job adds its instance's priority
    (``start(..., priority=N)``). ``wakeup_priority``: that of wake-up jobs (default:
    ``priority``).
    """

    requirements = Requirements(
        engine="procrastinate",
        module="procrastinate.contrib.django",
        extra="procrastinate",
        app=DJANGO_APP,
    )
    """What the system checks verify: the package installed, its Django app installed."""

    def __init__(
        self,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        wakeup_priority: int | None = None,
    ) -> None:
        if not isinstance(queue, str) or not queue.strip():
            raise ValueError(f"queue must be a non-empty string, not {queue!r}")
        for name, value in (("priority", priority), ("wakeup_priority", wakeup_priority)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        self.queue = queue
        self.priority = priority
        self.wakeup_priority = priority if wakeup_priority is None else wakeup_priority
        self._ready: set[str] = set()  # the aliases whose procrastinate set-up was checked
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ProcrastinateDispatcher(queue={self.queue!r}, priority={self.priority}, "
            f"wakeup_priority={self.wakeup_priority})"
        )

    def database_alias(self) -> str:
        """The database alias procrastinate keeps its jobs in: what its workers read, so what
        this dispatcher writes to (``settings.PROCRASTINATE_DATABASE_ALIAS``)."""
        return _database_alias()

    def joins_transaction(self, storage: Storage) -> bool:
        """True exactly when ``storage`` is a ``DjangoStorage`` on procrastinate's alias: the
        job's insert then runs on the very connection of the storage's open transaction."""
        return isinstance(storage, DjangoStorage) and storage.using == _database_alias()

    def enqueue_steps(self, jobs: Sequence[StepJob]) -> None:
        """One procrastinate job per step, all in one statement (:func:`defer_statement`)."""
        if jobs:
            self._defer(self._rows(jobs, None))

    def enqueue_wakeup(self, wakeup: WakeUp) -> None:
        """A procrastinate job that no worker takes before ``wakeup.at`` (its ``scheduled_at``,
        what procrastinate's ``schedule_at`` sets)."""
        self._defer(self._rows((), wakeup))

    def jobs_for_put(
        self, steps: Sequence[StepJob], wakeup: WakeUp | None, storage: Storage
    ) -> JobsSQL | None:
        """``steps`` and ``wakeup`` as the expression a ``DjangoStorage`` on procrastinate's
        alias evaluates in the statement of its put (``DjangoStorage.put_with_jobs``): a job's
        recording of its step and the next step's job are then one statement, not a
        transaction of two (whose ``BEGIN`` and ``COMMIT`` are round trips too)."""
        rows = self._rows(steps, wakeup)
        if not rows:
            return None
        self._check(self.database_alias())
        return JobsSQL(*defer_expression(rows))

    def pending_steps(self, jobs: Sequence[StepJob]) -> frozenset[StepJob]:
        """Those of ``jobs`` with a step job in ``procrastinate_jobs`` that no worker has
        started (status ``todo``, in any queue): one statement
        (:data:`~hephaestus_django.postgres.sql.PROCRASTINATE_PENDING_STEPS`), on the
        connection the jobs are deferred through, so inside the sweep's transaction."""
        if not jobs:
            return frozenset()
        alias = self.database_alias()
        self._check(alias)
        instances = sorted({str(job.instance_id) for job in jobs})
        rows = fetch_all(connections[alias], PROCRASTINATE_PENDING_STEPS, [STEP_TASK, instances])
        return _pending(jobs, (row[0] for row in rows))

    def _rows(self, steps: Sequence[StepJob], wakeup: WakeUp | None) -> list[_Job]:
        rows: list[_Job] = [
            (
                self.queue,
                STEP_TASK,
                _int4(self.priority + job.priority),
                {"payload": job.payload()},
                job.at,  # an item's retry after its backoff: not taken before
            )
            for job in steps
        ]
        if wakeup is not None:
            kwargs = {"payload": wakeup.payload()}
            rows.append((self.queue, WAKE_UP_TASK, self.wakeup_priority, kwargs, wakeup.at))
        return rows

    def _check(self, alias: str) -> None:
        """:func:`_check_installed`, once per alias."""
        if alias not in self._ready:
            with self._lock:
                _check_installed()
                self._ready.add(alias)

    def _defer(self, jobs: Sequence[_Job]) -> None:
        alias = self.database_alias()
        self._check(alias)
        sql, params = defer_statement(jobs)
        fetch_all(connections[alias], sql, params)


_alias: list[str] = []
"""``settings.PROCRASTINATE_DATABASE_ALIAS`` as last read (asked on every write of a queued
transition: a setting Django does not hold is looked up through an exception each time)."""


def _database_alias() -> str:
    if not _alias:
        alias = getattr(settings, "PROCRASTINATE_DATABASE_ALIAS", "default")
        _alias[:] = [alias if isinstance(alias, str) else "default"]
    return _alias[0]


@receiver(setting_changed)
def _forget_alias(*, setting: str, **kwargs: Any) -> None:
    if setting == "PROCRASTINATE_DATABASE_ALIAS":
        _alias.clear()


def _pending(jobs: Sequence[StepJob], payloads: Iterable[object]) -> frozenset[StepJob]:
    """Those of ``jobs`` equal to a job of ``payloads`` (JSON text or decoded); a payload that
    does not parse is nobody's job."""
    wanted = set(jobs)
    found: set[StepJob] = set()
    for payload in payloads:
        try:
            job = job_from_payload(json.loads(payload) if isinstance(payload, str) else payload)
        except (InvalidJobError, ValueError):
            continue
        if isinstance(job, StepJob) and job in wanted:
            found.add(job)
    return frozenset(found)


def _check_installed() -> None:
    """Raise ``ImproperlyConfigured`` unless procrastinate imports and its Django app (its
    tables, its workers) is installed: without them, the jobs would go nowhere."""
    try:
        import procrastinate.contrib.django  # noqa: F401
    except ImportError as error:
        raise ImproperlyConfigured(
            f"QueuedRunner's dispatcher is ProcrastinateDispatcher, but procrastinate does "
            f"not import ({error}); {INSTALL_HINT}"
        ) from error
    if not apps.is_installed(DJANGO_APP):
        raise ImproperlyConfigured(
            f"QueuedRunner's dispatcher is ProcrastinateDispatcher, but {DJANGO_APP!r} is not "
            f"in INSTALLED_APPS (its tables and its workers come with it)"
        )


def defer_statement(jobs: Sequence[_Job]) -> tuple[str, list[Any]]:
    """The statement that defers ``jobs``, each ``(queue, task, priority, kwargs,
    scheduled_at)``, and its parameters: procrastinate's own (``procrastinate.sql.queries
    ["defer_jobs"]``), its job array written by :func:`defer_expression`. It returns the
    jobs' ids."""
    expression, params = defer_expression(jobs)
    return f"SELECT unnest({expression}) AS id", params


def defer_expression(jobs: Sequence[_Job]) -> tuple[str, list[Any]]:
    """The call of :data:`DEFER_FUNCTION` that defers ``jobs`` (its value: their ids), and its
    parameters: the job array written as ``ROW(...)`` values of plain parameters.

    Every job has no ``lock`` and no ``queueing_lock`` (see the module's docstring); ``kwargs``
    are the task's keyword arguments, stored as the job's ``args``. Each parameter is cast, so
    the expression also works with ``server_side_binding``.
    """
    params: list[Any] = []
    for queue, task, priority, kwargs, scheduled_at in jobs:
        # A payload is strings under string keys (StepJob.payload): orjson writes it as json
        # would, faster.
        params += [queue, task, priority, codec.dumps_encoded(kwargs), scheduled_at]
    return _defer_sql(len(jobs)), params


@lru_cache(maxsize=64)
def _defer_sql(count: int) -> str:
    rows = ", ".join([PROCRASTINATE_JOB_ROW] * count)
    return f"{DEFER_FUNCTION}(ARRAY[{rows}]::{JOB_TYPE}[])"


def run_step(payload: dict[str, Any]) -> None:
    """The body of the procrastinate task ``hephaestus_django.step``."""
    receive(payload)


def wake_up(payload: dict[str, Any]) -> None:
    """The body of the procrastinate task ``hephaestus_django.wake_up``."""
    receive(payload)


_registration = threading.Lock()


def register_tasks() -> None:
    """Register :data:`STEP_TASK` and :data:`WAKE_UP_TASK` on procrastinate's Django app.

    Called by ``hephaestus_django``'s ``AppConfig.ready()`` when ``procrastinate.contrib.django``
    is installed, so ``manage.py procrastinate worker`` knows them. Before procrastinate's own
    ``ready()`` the app is a blueprint whose tasks it takes over; after it, the app itself.
    Registering twice does nothing.
    """
    from procrastinate.contrib.django import app

    with _registration:
        if STEP_TASK not in app.tasks:
            app.task(name=STEP_TASK)(run_step)
        if WAKE_UP_TASK not in app.tasks:
            app.task(name=WAKE_UP_TASK)(wake_up)


def _int4(priority: int) -> int:
    """``priority`` within procrastinate's ``integer`` column."""
    return max(-(2**31), min(2**31 - 1, priority))
