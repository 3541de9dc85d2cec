"""Both runners over a given storage, for the tests that run one scenario on each.

``with runner_over(storage, "local" | "queued") as settle:`` configures the ``default``
storage and the runner; ``settle()`` runs what is left to run: nothing with ``LocalRunner``
(the steps ran in the caller), the in-memory queue drained with ``QueuedRunner`` (as a worker
would run the jobs). The configuration is reset on exit. The rewind and pause tests run
it over ``InMemoryStorage`` and ``DjangoStorage``, each module over both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.contract import Storage

Settle = Callable[[], None]

RUNNERS = ("local", "queued")
"""The runner names :func:`runner_over` takes (a fixture's ``params``)."""

STORAGES = ("memory", "django")
"""The storage names :func:`storage_named` takes (a fixture's ``params``; the module's tests
then need the database: ``django_db(transaction=True)``, queued jobs are enqueued on commit)."""


def storage_named(name: str) -> Storage:
    """A new ``InMemoryStorage`` (``memory``) or ``DjangoStorage`` on ``default`` (``django``)."""
    if name == "memory":
        return InMemoryStorage()
    if name == "django":
        from hephaestus_django.storage import DjangoStorage

        return DjangoStorage()
    raise ValueError(f"storage must be one of {STORAGES}, not {name!r}")


@contextmanager
def runner_over(
    storage: Storage, runner: str, *, lease: timedelta | None = None
) -> Iterator[Settle]:
    """``storage`` as the default, driven by the runner named ``runner`` (``QueuedRunner``'s
    lease ``lease``, its default unless told); yields ``settle``."""
    if runner == "local":
        configure(storages={"default": storage}, runner=LocalRunner())
        try:
            yield lambda: None
        finally:
            configure()
        return
    if runner != "queued":
        raise ValueError(f"runner must be one of {RUNNERS}, not {runner!r}")
    dispatcher = InMemoryDispatcher()
    queued = (
        QueuedRunner(dispatcher=dispatcher)
        if lease is None
        else QueuedRunner(dispatcher=dispatcher, lease=lease)
    )
    configure(storages={"default": storage}, runner=queued)
    try:
        yield lambda: dispatcher.drain() and None
    finally:
        queued.close()
        configure()
