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
serializes each instance's transitions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from hephaestus_django.queues import Requirements
from hephaestus_django.runtime.dispatch import StepJob, WakeUp
from hephaestus_django.runtime.queued import receive
from hephaestus_django.runtime.storage import Storage

STEP_TASK = "hephaestus_django.step"
"""The procrastinate task that executes one step of one instance."""
WAKE_UP_TASK = "hephaestus_django.wake_up"
"""The procrastinate task that fires an instance's due timers (deferred with ``schedule_at``)."""

DEFAULT_QUEUE = "hephaestus"
DJANGO_APP = "procrastinate.contrib.django"
INSTALL_HINT = "pip install 'hephaestus-django[procrastinate]'"


class ProcrastinateDispatcher:
    """Enqueues ``QueuedRunner``'s jobs with procrastinate, in the caller's transaction.

    ``queue``: the procrastinate queue of every job (default ``"hephaestus"``); a worker
    started with ``--queues`` must name it. ``priority``: the procrastinate priority of step
    jobs (higher runs first; default 0). ``wakeup_priority``: that of wake-up jobs (default:
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
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ProcrastinateDispatcher(queue={self.queue!r}, priority={self.priority}, "
            f"wakeup_priority={self.wakeup_priority})"
        )

    def database_alias(self) -> str:
        """The database alias procrastinate keeps its jobs in: what its workers read, so what
        this dispatcher writes to (``settings.PROCRASTINATE_DATABASE_ALIAS``)."""
        alias = getattr(settings, "PROCRASTINATE_DATABASE_ALIAS", "default")
        return alias if isinstance(alias, str) else "default"

    def joins_transaction(self, storage: Storage) -> bool:
        """True exactly when ``storage`` is a ``DjangoStorage`` on procrastinate's alias: the
        job's insert then runs on the very connection of the storage's open transaction."""
        from hephaestus_django.storage import DjangoStorage

        return isinstance(storage, DjangoStorage) and storage.using == self.database_alias()

    def enqueue_steps(self, jobs: Sequence[StepJob]) -> None:
        """One procrastinate job per step, all in one ``INSERT`` (``batch_defer``)."""
        if not jobs:
            return
        deferrer = self._app().configure_task(STEP_TASK, queue=self.queue, priority=self.priority)
        deferrer.batch_defer(*({"payload": job.payload()} for job in jobs))

    def enqueue_wakeup(self, wakeup: WakeUp) -> None:
        """A procrastinate job that no worker takes before ``wakeup.at`` (``schedule_at``)."""
        deferrer = self._app().configure_task(
            WAKE_UP_TASK,
            queue=self.queue,
            priority=self.wakeup_priority,
            schedule_at=wakeup.at,
        )
        deferrer.defer(payload=wakeup.payload())

    def _app(self) -> Any:
        """A procrastinate app writing through Django's connection on procrastinate's alias.

        Not ``procrastinate.contrib.django.app`` itself: ``manage.py procrastinate worker``
        swaps that app's connector for a pool of its own, whose inserts would commit apart from
        the transition a step's job records.
        """
        alias = self.database_alias()
        found = self._apps.get(alias)
        if found is not None:
            return found
        with self._lock:
            if alias not in self._apps:
                self._apps[alias] = _deferring_app(alias)
            return self._apps[alias]


def _deferring_app(alias: str) -> Any:
    try:
        import procrastinate
        from procrastinate.contrib.django.django_connector import DjangoConnector
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
    return procrastinate.App(connector=DjangoConnector(alias=alias))


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
