"""The worker, wired to ``settings.HEPHAESTUS``: ``run_once()`` for cron and task queues.

``manage.py hephaestus_worker`` runs the same work in a loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from hephaestus_django.conf import runner, scheduler, storages
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.reconnect import close_obsolete_connections
from hephaestus_django.postgres.worker_passes import PassRecorder
from hephaestus_django.runtime.worker import DEFAULT_MAX_BACKOFF, Worker


def worker(
    storage: str | Iterable[str] | None = None,
    *,
    batch_size: int = 100,
    interval: float = 1.0,
    max_backoff: float = DEFAULT_MAX_BACKOFF,
) -> Worker:
    """A worker for the storage named ``storage``, or several names, with the configured runner.

    With no name, every storage of ``settings.HEPHAESTUS["STORAGES"]``.
    """
    if storage is None:
        names = list(storages)
    else:
        names = [storage] if isinstance(storage, str) else list(dict.fromkeys(storage))
    return Worker(
        {name: storages[name] for name in names},
        runner.get(),
        batch_size=batch_size,
        interval=interval,
        max_backoff=max_backoff,
        # As between two requests: a connection past CONN_MAX_AGE, or one that failed its
        # health check, is closed and the next statement connects again.
        before_pass=close_obsolete_connections,
        # Each pass that worked is recorded (at most every ten seconds) for hephaestus_status
        # and the admin's dashboard: whether any worker runs.
        after_pass=PassRecorder(),
        # The schedules of settings.HEPHAESTUS["SCHEDULES"] that pass the system checks.
        scheduler=scheduler(),
    )


def run_once(
    storage: str | Iterable[str] | None = None, *, batch_size: int = 100
) -> list[Instance]:
    """Fire every due timer, take over every stalled instance and start every due tick of the
    configured schedules, once; return the instances moved on (not the ticks started).

    In the storage named ``storage``, several, or (with no name) every configured storage. Each
    gets its pass even if another's fails; the first failure is raised afterwards.
    """
    return worker(storage, batch_size=batch_size).run_once()
