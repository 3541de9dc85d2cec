"""The worker, wired to ``settings.HEPHAESTUS``: ``run_once()`` for cron and task queues.

``manage.py hephaestus_worker`` runs the same work in a loop.
"""

from __future__ import annotations

from hephaestus_django.conf import runner, storages
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.worker import Worker


def worker(storage: str = "default", *, batch_size: int = 100, interval: float = 1.0) -> Worker:
    """A worker for the storage named ``storage``, using the configured runner."""
    return Worker(storages[storage], runner.get(), batch_size=batch_size, interval=interval)


def run_once(storage: str = "default", *, batch_size: int = 100) -> list[Instance]:
    """Fire every due timer and take over every stalled instance once; return them."""
    return worker(storage, batch_size=batch_size).run_once()
