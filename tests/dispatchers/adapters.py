"""The job-engine adapters the shared contract suite (``test_contract.py``) runs over.

Each :class:`Adapter` says how a test configures ``QueuedRunner`` with it in this process,
which commands run its workers in child processes, and how to see and run its queued jobs in
this process. Add an adapter as one self-contained block and append it to :data:`ADAPTERS`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Adapter:
    """One job engine as the contract suite drives it."""

    name: str
    dispatcher: str
    """The dotted path ``QueuedRunner``'s ``dispatcher`` option names."""
    settings_module: str
    """Django settings of the worker processes (database from ``$HEPHAESTUS_TEST_DB``)."""
    worker: tuple[str, ...]
    """The engine's worker command (``manage.py`` arguments), run until killed."""
    queued: Callable[[], int]
    """How many jobs wait to run, as committed or visible to this connection."""
    drain: Callable[[], None]
    """Run every job due now (and those they enqueue) in this process, with the engine's
    own worker, then return."""
    duplicate: Callable[[], int]
    """Enqueue every waiting job a second time, as an engine delivering twice would; return
    how many were duplicated."""
    enqueue_payload: Callable[[dict[str, Any]], None]
    """Enqueue a step job carrying any payload, as a stale or hostile producer might."""
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


# --- Django Tasks (hephaestus_django.queues.tasks, django-tasks-db) --------------------------


def _tasks_queued() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(status="READY").count()


def run_db_worker_batch(*arguments: str) -> None:
    """``db_worker --batch``: the real worker, in this process, until no task is ready.

    The worker installs its own SIGINT/SIGTERM handlers; they are put back afterwards so the
    test run's own Ctrl-C still works. Between tasks it closes "old" connections, which inside
    a test's transaction means closing the test's own: that call is a no-op meanwhile (a
    worker process has no such transaction; the process tests run the command unchanged).
    """
    from unittest import mock

    from django.core.management import call_command

    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    worker_module = "django_tasks_db.management.commands.db_worker"
    try:
        with mock.patch(f"{worker_module}.close_old_connections", return_value=None):
            call_command(
                "db_worker",
                "--batch",
                "--no-startup-delay",
                "--no-reload",
                "--interval",
                "0",
                *arguments,
                verbosity=0,
            )
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _tasks_duplicate() -> int:
    import uuid

    from django_tasks_db.models import DBTaskResult

    ready = list(DBTaskResult.objects.filter(status="READY"))
    for row in ready:
        row.pk = uuid.uuid4()
        row._state.adding = True
        row.save()
    return len(ready)


def _tasks_enqueue_payload(payload: dict[str, Any]) -> None:
    from hephaestus_django.queues import tasks

    tasks.run_step.enqueue(payload)


TASKS = Adapter(
    name="tasks",
    dispatcher="hephaestus_django.queues.tasks.TasksDispatcher",
    settings_module="tests.dispatchers.tasks_settings",
    worker=("db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"),
    queued=_tasks_queued,
    drain=run_db_worker_batch,
    duplicate=_tasks_duplicate,
    enqueue_payload=_tasks_enqueue_payload,
)

ADAPTERS = [TASKS]
