"""``ProcrastinateDispatcher``'s harness: jobs in ``procrastinate_jobs``, run by procrastinate's
own worker in this process (``run_worker(wait=False)``: it stops when no job is due)."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection

from hephaestus_django.queues.procrastinate import STEP_TASK, ProcrastinateDispatcher
from hephaestus_django.runtime.dispatch import Job, job_from_payload
from hephaestus_django.storage import DjangoStorage

QUEUE = "hephaestus-contract"


def clear_jobs() -> None:
    """Empty procrastinate's tables: pytest-django's flush leaves unmanaged tables alone."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE")


def queued_jobs(queue: str | None = None) -> list[Job]:
    """The jobs waiting in ``procrastinate_jobs`` (of ``queue``, or all), oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT args->'payload' FROM procrastinate_jobs"
            " WHERE status = 'todo' AND (%s::text IS NULL OR queue_name = %s) ORDER BY id",
            [queue, queue],
        )
        rows = [row[0] for row in cursor.fetchall()]
    # Django's connection hands jsonb back as text (its JSONField decodes it).
    return [job_from_payload(json.loads(row) if isinstance(row, str) else row) for row in rows]


def procrastinate_app() -> Any:
    """A procrastinate app deferring through Django's connection, as procrastinate's own
    ``defer`` does outside a worker: to deliver any payload, and to compare rows with."""
    import procrastinate
    from procrastinate.contrib.django.django_connector import DjangoConnector

    return procrastinate.App(connector=DjangoConnector(alias="default"))


class ProcrastinateHarness:
    """``ProcrastinateDispatcher`` over ``DjangoStorage`` on the same (test) database."""

    def __init__(self) -> None:
        clear_jobs()
        self.storage = DjangoStorage(using="default")
        self.dispatcher = ProcrastinateDispatcher(queue=QUEUE)

    def queued(self) -> list[Job]:
        return queued_jobs(QUEUE)

    def drain(self) -> None:
        from procrastinate.contrib.django import app

        # As `manage.py procrastinate worker` does: the worker reads jobs through a connector
        # of its own (Django's connection hands jsonb back as text, which procrastinate's
        # worker does not expect), while the tasks it runs write through Django's.
        with app.replace_connector(app.connector.get_worker_connector()):
            app.run_worker(
                queues=[QUEUE],
                wait=False,
                listen_notify=False,
                install_signal_handlers=False,
                concurrency=1,
            )

    def deliver(self, payload: Any) -> None:
        procrastinate_app().configure_task(STEP_TASK, queue=QUEUE).defer(payload=payload)
        self.drain()

    def close(self) -> None:
        clear_jobs()
