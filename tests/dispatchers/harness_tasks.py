"""``TasksDispatcher``'s harness: jobs as django-tasks-db task rows (``DBTaskResult``), run by
django-tasks-db's own worker in this process (``db_worker --batch``: it stops when no task is
ready). The test's transaction holds the rows, so nothing is left behind."""

from __future__ import annotations

import signal
from typing import Any
from unittest import mock

from django.core.management import call_command

from hephaestus_django.queues.tasks import TasksDispatcher
from hephaestus_django.runtime.dispatch import Job, job_from_payload
from hephaestus_django.storage import DjangoStorage


def run_db_worker_batch(*arguments: str) -> None:
    """``db_worker --batch``: the real worker, in this process, until no task is ready.

    The worker installs its own SIGINT/SIGTERM handlers; they are put back afterwards so the
    test run's own Ctrl-C still works. Between tasks it closes "old" connections, which inside
    a test's transaction means closing the test's own: that call is a no-op meanwhile (a
    worker process has no such transaction; the process tests run the command unchanged).
    """
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


def queued_jobs() -> list[Job]:
    """The tasks waiting to run (``READY``, due or not), oldest first, as jobs."""
    from django_tasks_db.models import DBTaskResult

    rows = DBTaskResult.objects.filter(status="READY").order_by("enqueued_at", "id")
    return [job_from_payload(row.args_kwargs["args"][0]) for row in rows]


class TasksHarness:
    """``TasksDispatcher`` on django-tasks-db's database backend over ``DjangoStorage``, both
    on the test database: enqueueing joins the storage's transaction."""

    def __init__(self) -> None:
        self.storage = DjangoStorage(using="default")
        self.dispatcher = TasksDispatcher()

    def queued(self) -> list[Job]:
        return queued_jobs()

    def drain(self) -> None:
        run_db_worker_batch()

    def deliver(self, payload: Any) -> None:
        from hephaestus_django.queues import tasks

        tasks.run_step.enqueue(payload)
        self.drain()

    def close(self) -> None:
        pass
