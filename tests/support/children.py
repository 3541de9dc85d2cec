"""The runner fixture of the child-workflow tests: one workflow setup for every storage and
runner they run on.

``drain`` configures a storage and a runner as the process's backends and yields what makes
the queued work happen (nothing for ``LocalRunner``; draining the in-memory queue, as a worker
would, for ``QueuedRunner``). Its parameter names the runner (``local``, ``queued``), and the
storage follows the test's database: ``DjangoStorage`` under ``django_db``, else
``InMemoryStorage``. A module that runs on both storages parametrizes it with :data:`EVERY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.contract import Storage
from tests.timers import Clock

Drain = Callable[[], None]

_DATABASE = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit

EVERY = [
    pytest.param("memory-local", id="memory-local"),
    pytest.param("memory-queued", id="memory-queued"),
    pytest.param("django-local", id="django-local", marks=_DATABASE),
    pytest.param("django-queued", id="django-queued", marks=_DATABASE),
]
"""Every storage with every runner: ``pytest.mark.parametrize("drain", EVERY, indirect=True)``."""


def _storage(kind: str) -> Storage:
    if kind == "django":
        from hephaestus_django.storage import DjangoStorage

        return DjangoStorage()
    return InMemoryStorage(clock=Clock())


@pytest.fixture(params=["local", "queued"])
def drain(request: pytest.FixtureRequest) -> Iterator[Drain]:
    """The backends of a child-workflow test (see the module), and what drains its queue."""
    param = str(request.param)
    if "-" in param:
        kind, runner_name = param.split("-", 1)
    else:
        database = request.node.get_closest_marker("django_db") is not None
        kind, runner_name = ("django" if database else "memory"), param
    storage = _storage(kind)
    if runner_name == "local":
        runner: LocalRunner | QueuedRunner = LocalRunner()
        configure(storages={"default": storage}, runner=runner)
        yield lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=runner)
        yield lambda: dispatcher.drain() and None
    runner.close()
    configure()
