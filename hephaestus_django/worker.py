"""The worker, wired to ``settings.HEPHAESTUS``: ``run_once()`` for cron and task queues.

``manage.py hephaestus_worker`` runs the same work in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from hephaestus_django.conf import (
    InvalidScheduleError,
    runner,
    schedule_settings,
    scheduler,
    storages,
)
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.reconnect import close_obsolete_connections
from hephaestus_django.postgres.worker_passes import PassRecorder
from hephaestus_django.runtime.contract import ScheduleTable
from hephaestus_django.runtime.worker import DEFAULT_MAX_BACKOFF, Worker

logger = logging.getLogger("hephaestus_django.schedules")


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


def prune_schedules(storage: str | Iterable[str] | None = None) -> dict[str, list[str]]:
    """Delete the records (``hephaestus_schedules`` rows) of schedules no longer in
    ``settings.HEPHAESTUS["SCHEDULES"]``, in the storage named ``storage``, several, or every
    configured one; the names removed, by storage. ``hephaestus_worker`` runs it when it starts.

    A record is kept while its name is configured at all, even by an entry the system checks
    refuse (so its pause survives a fix); with a malformed setting nothing is removed.
    """
    try:
        keep = list(schedule_settings())
    except InvalidScheduleError as error:
        logger.error("no schedule record is pruned: %s", error)
        return {}
    names = (
        list(storages) if storage is None else [storage] if isinstance(storage, str) else storage
    )
    removed: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        found = storages[name]
        if isinstance(found, ScheduleTable):
            gone = scheduler().prune(found, keep)
            if gone:
                logger.info("storage %r: removed the records of schedules %s", name, gone)
            removed[name] = gone
    return removed
