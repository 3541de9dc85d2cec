"""``TasksDispatcher``: ``QueuedRunner``'s jobs as Django Tasks.

Django's Tasks API is ``django.tasks`` on Django 6 and the ``django-tasks`` backport on
Django 5.2; this module uses whichever the project runs on (``django.tasks`` when it exists),
as the ``django-tasks-db`` database backend does. ``pip install 'hephaestus-django[tasks]'``
brings the database backend and the backport::

    INSTALLED_APPS = [..., "django_tasks_db", "hephaestus_django"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    HEPHAESTUS = {"RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {"dispatcher": "hephaestus_django.queues.tasks.TasksDispatcher"},
    }}

then ``manage.py db_worker`` runs the steps and ``manage.py hephaestus_worker`` is the sweep.

Two tasks carry the jobs: :func:`run_step` (a :class:`StepJob`) and :func:`run_wakeup` (a
:class:`WakeUp`, enqueued with ``run_after`` at its due time); both hand their JSON payload to
:func:`hephaestus_django.runtime.queued.receive`. A worker finds a task by the dotted path
stored with it (``hephaestus_django.queues.tasks.run_step``). The ``Task`` objects are built
on demand, not by ``@task`` when this module is imported: the decorator validates a task
against a backend and queue at import time, and those are the dispatcher's options, so the
module (and the settings that name it) must import before ``TASKS`` says which backend serves.

Enqueueing joins the caller's transaction when the backend is the ``django-tasks-db``
database backend writing to the storage's database: the task row is an ``INSERT`` on the same
connection, so ``QueuedRunner`` commits a transition and its tasks together (the Tasks API
enqueues at once, never deferred to the commit). Any other backend, or the database backend
on another database, enqueues after the commit, and the sweep mends a crash in between.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from hephaestus_django.core.errors import InvalidJobError
from hephaestus_django.queues import Requirements
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import StepJob, WakeUp, job_from_payload
from hephaestus_django.runtime.queued import receive

logger = logging.getLogger("hephaestus_django.queue")

DEFAULT_BACKEND = "default"
DEFAULT_QUEUE_NAME = "default"
DEFAULT_PRIORITY = 0
MIN_PRIORITY, MAX_PRIORITY = -100, 100
"""The Tasks API's priority bounds (``TASK_MIN_PRIORITY``, ``TASK_MAX_PRIORITY``)."""

INSTALL_HINT = "pip install 'hephaestus-django[tasks]'"


class TasksNotInstalled(ImportError):
    """Neither ``django.tasks`` (Django 6) nor the ``django-tasks`` backport can be imported."""


def _has_django_tasks() -> bool:
    """Whether this Django has ``django.tasks`` (Django 6 and later)."""
    return importlib.util.find_spec("django.tasks") is not None


def framework() -> ModuleType:
    """The Tasks API in use: ``django.tasks`` on Django 6, else the ``django_tasks`` backport."""
    if _has_django_tasks():
        return importlib.import_module("django.tasks")
    try:
        return importlib.import_module("django_tasks")
    except ImportError as error:
        raise TasksNotInstalled(
            f"Django Tasks is not installed: this Django has no django.tasks (Django 6 has) "
            f"and the django-tasks backport is missing; {INSTALL_HINT}"
        ) from error


def framework_exceptions() -> ModuleType:
    """The Tasks API's exceptions module (``TaskException``, an invalid task or backend)."""
    return importlib.import_module(f"{framework().__name__}.exceptions")


def base_task_class() -> type:
    """The Tasks API's ``Task`` class (a backend may name its own as ``task_class``)."""
    task: type = importlib.import_module(f"{framework().__name__}.base").Task
    return task


def database_backend_class() -> type | None:
    """``django_tasks_db.DatabaseBackend``; None when django-tasks-db is not installed."""
    try:
        module = importlib.import_module("django_tasks_db")
    except (ImportError, ValueError):  # its compat module raises ValueError without a Tasks API
        return None
    backend: type = module.DatabaseBackend
    return backend


class TasksDispatcher:
    """Enqueues ``QueuedRunner``'s jobs on a Django Tasks backend.

    ``backend`` is the alias in ``settings.TASKS``; ``queue_name`` the queue the jobs go to
    (one of the backend's ``QUEUES``; run ``db_worker --queue-name`` on it); ``priority`` their
    priority (-100 to 100, higher first, where the backend supports priorities). Nothing of
    Django Tasks is imported until the first job is enqueued, so the runner builds (and
    ``manage.py check`` reports what is missing) even before the package is installed.
    """

    def __init__(
        self,
        *,
        backend: str = DEFAULT_BACKEND,
        queue_name: str = DEFAULT_QUEUE_NAME,
        priority: int = DEFAULT_PRIORITY,
    ) -> None:
        if not isinstance(backend, str) or not backend:
            raise ValueError(f"backend must be an alias of settings.TASKS, not {backend!r}")
        if not isinstance(queue_name, str) or not queue_name:
            raise ValueError(f"queue_name must be a non-empty string, not {queue_name!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority must be a whole number, not {priority!r}")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(
                f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, not {priority}"
            )
        self.backend = backend
        self.queue_name = queue_name
        self.priority = priority

    def __repr__(self) -> str:
        return (
            f"TasksDispatcher(backend={self.backend!r}, queue_name={self.queue_name!r}, "
            f"priority={self.priority})"
        )

    # --- the Dispatcher protocol ------------------------------------------------------------

    def enqueue_steps(self, jobs: Sequence[StepJob]) -> None:
        """One :func:`run_step` task per job."""
        if not jobs:
            return
        task = self.task(_step_function)
        defers: bool | None = None
        for job in jobs:
            options: dict[str, Any] = {}
            if job.priority:  # the instance's, added to ours, within the Tasks API's bounds
                options["priority"] = max(
                    MIN_PRIORITY, min(MAX_PRIORITY, self.priority + job.priority)
                )
            if job.at is not None:  # an item's retry after its backoff
                if defers is None:
                    defers = bool(self.get_backend().supports_defer)
                if defers:  # else the runner waits for it (or enqueues it again)
                    options["run_after"] = job.at
            if options:
                task.using(**options).enqueue(job.payload())
            else:
                task.enqueue(job.payload())

    def enqueue_wakeup(self, wakeup: WakeUp) -> None:
        """A :func:`run_wakeup` task with ``run_after`` at the timer's due time.

        A backend that cannot defer (``supports_defer`` false, e.g. the immediate backend) gets
        no wake-up: the sweep fires the timer, one lease after it is due.
        """
        if not self.get_backend().supports_defer:
            logger.debug(
                "the task backend %r cannot run a task later: the sweep fires the %s",
                self.backend,
                wakeup,
            )
            return
        self.task(_wakeup_function).using(run_after=wakeup.at).enqueue(wakeup.payload())

    def pending_steps(self, jobs: Sequence[StepJob]) -> frozenset[StepJob]:
        """Those of ``jobs`` with a :func:`run_step` task row that no worker has started
        (``READY``), where the backend is django-tasks-db's database backend: one query on its
        database (inside the sweep's transaction where enqueueing joins it). Any other backend
        cannot be asked: none is pending, and the sweep enqueues the steps again, as before."""
        alias = self.database_alias() if jobs else None
        if alias is None:
            return frozenset()
        from django_tasks_db.models import DBTaskResult

        wanted = set(jobs)
        instances = sorted({str(job.instance_id) for job in jobs})
        rows = DBTaskResult.objects.using(alias).filter(
            status="READY",
            task_path=f"{__name__}.{_step_function.__name__}",
            args_kwargs__args__0__instance__in=instances,
        )
        found: set[StepJob] = set()
        for arguments in rows.values_list("args_kwargs", flat=True):
            try:
                job = job_from_payload(arguments["args"][0])
            except (InvalidJobError, KeyError, IndexError, TypeError):
                continue
            if isinstance(job, StepJob) and job in wanted:
                found.add(job)
        return frozenset(found)

    def joins_transaction(self, storage: Storage) -> bool:
        """True when the backend is the database backend writing to ``storage``'s database.

        The task row is then written by the same connection as the instance, inside the
        runner's ``transaction.atomic()``: both commit, or neither does.
        """
        from hephaestus_django.postgres.storage import DjangoStorage

        if not isinstance(storage, DjangoStorage):
            return False
        return self.database_alias() == storage.using

    # --- system checks ----------------------------------------------------------------------

    @property
    def requirements(self) -> Requirements:
        """What the generic checks verify (E011, E012): the Tasks API importable
        (``django.tasks``, else the backport), and ``django_tasks_db`` in ``INSTALLED_APPS``
        when the backend is its database backend."""
        module = "django.tasks" if _has_django_tasks() else "django_tasks"
        try:
            database_backend = database_backend_class()
            is_database = database_backend is not None and isinstance(
                self.get_backend(), database_backend
            )
        except Exception:  # no Tasks API, or the backend is unknown: E011 or E013 say so
            is_database = False
        return Requirements(
            engine="Django Tasks",
            module=module,
            extra="tasks",
            app="django_tasks_db" if is_database else None,
        )

    def check(self, storages: Mapping[str, Storage]) -> list[Any]:
        """What ``manage.py check`` reports about this dispatcher's task backend once the
        generic queue checks passed (see :mod:`hephaestus_django.checks`): the backend unknown
        (E013) or refusing our tasks' queue or priority (E014), errors; a backend that cannot
        delay a wake-up (W003), a warning. Whether enqueueing joins each storage's transaction
        (W002) is checked for every adapter, with :meth:`joins_transaction`."""
        from django.core.checks import Error, Warning

        where = "settings.HEPHAESTUS['RUNNER']['OPTIONS']"
        api = framework()
        try:
            backend = self.get_backend()
        except Exception as error:  # the Tasks API's InvalidTaskBackend (ImproperlyConfigured)
            return [
                Error(
                    f"The TasksDispatcher's task backend {self.backend!r} cannot be used: {error}",
                    hint=f"Name an alias of settings.TASKS as OPTIONS['dispatcher_options']"
                    f"['backend'] (TASKS: {sorted(getattr(api.task_backends, 'settings', {}))}"
                    f"); for the database backend, {INSTALL_HINT} and use "
                    f"'django_tasks_db.DatabaseBackend'.",
                    obj=where,
                    id="hephaestus.E013",
                )
            ]
        messages: list[Any] = []
        try:
            self.task(_step_function)
        except framework_exceptions().TaskException as error:
            messages.append(
                Error(
                    f"The task backend {self.backend!r} refuses the TasksDispatcher's tasks "
                    f"(queue_name={self.queue_name!r}, priority={self.priority}): {error}",
                    hint="Use a queue_name of the backend's QUEUES (or add it there), and "
                    "priority 0 for a backend without priorities.",
                    obj=where,
                    id="hephaestus.E014",
                )
            )
        if not backend.supports_defer:
            messages.append(
                Warning(
                    f"The task backend {self.backend!r} cannot run a task later (run_after): "
                    f"timers get no wake-up task.",
                    hint="hephaestus_worker fires them instead, one lease after they are due; "
                    "use a backend that supports run_after (django-tasks-db does).",
                    obj=where,
                    id="hephaestus.W003",
                )
            )
        return messages

    # --- what the adapter's checks and tasks use --------------------------------------------

    def get_backend(self) -> Any:
        """The task backend ``settings.TASKS[backend]`` (the Tasks API's error if there is none)."""
        return framework().task_backends[self.backend]

    def database_alias(self) -> str | None:
        """The database the backend writes its task rows to; None when it is not the
        django-tasks-db database backend (those tasks live elsewhere: no transaction to join)."""
        database_backend = database_backend_class()
        if database_backend is None or not isinstance(self.get_backend(), database_backend):
            return None
        from django.db import router
        from django_tasks_db.models import DBTaskResult

        alias: str = router.db_for_write(DBTaskResult)
        return alias

    def task(self, function: Callable[[dict[str, str]], Any]) -> Any:
        """``function`` as a Task on this dispatcher's backend, queue and priority (validated by
        the backend: an unknown queue or an unsupported priority raises the Tasks API's error)."""
        task_class = getattr(self.get_backend(), "task_class", None) or base_task_class()
        return task_class(
            func=function,
            backend=self.backend,
            queue_name=self.queue_name,
            priority=self.priority,
        )


def run_step(payload: dict[str, str]) -> dict[str, str] | None:
    """The task of a :class:`StepJob`: execute one step of one instance, apply its result."""
    return _outcome(payload)


def run_wakeup(payload: dict[str, str]) -> dict[str, str] | None:
    """The task of a :class:`WakeUp`: fire the instance's due timers."""
    return _outcome(payload)


def _outcome(payload: dict[str, str]) -> dict[str, str] | None:
    """Run the job; what the task result records (JSON): the instance's status after it, or
    None when the job was dropped. An error propagates and the task is recorded as failed; the
    instance's lease then lapses and the sweep enqueues its work again."""
    instance = receive(payload)
    if instance is None:
        return None
    return {"instance": str(instance.id), "status": instance.status.value}


# The module attributes named like the functions are the Task objects a worker imports by the
# path stored with each task row ("hephaestus_django.queues.tasks.run_step"); they are built by
# __getattr__ on first access, with the configured dispatcher's options (see the docstring).
_step_function = run_step
_wakeup_function = run_wakeup
_FUNCTIONS = {function.__name__: function for function in (run_step, run_wakeup)}
del run_step, run_wakeup


def __getattr__(name: str) -> Any:
    function = _FUNCTIONS.get(name)
    if function is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return configured_dispatcher().task(function)


def configured_dispatcher() -> TasksDispatcher:
    """The configured runner's ``TasksDispatcher``, else one with the default options."""
    dispatcher = getattr(backends.runner(), "dispatcher", None)
    return dispatcher if isinstance(dispatcher, TasksDispatcher) else TasksDispatcher()
