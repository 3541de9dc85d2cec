"""The ``adapter`` fixture: each contract test runs once per adapter of ``adapters.ADAPTERS``;
``engine``, ``workers`` and ``short_lease_workers``: real worker processes of each job engine
(``workers.ENGINES``) for the tests that run them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

from hephaestus_django.runtime import QueuedRunner, configure
from tests.dispatchers.adapters import ADAPTERS
from tests.dispatchers.harness import Harness
from tests.dispatchers.workers import ENGINES, Engine, Workers, spawn_workers


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The adapter's harness, its storage configured as ``"default"`` and a ``QueuedRunner``
    on its dispatcher as the runner (in this process, and so in its in-process workers)."""
    harness: Harness = import_string(request.param)()
    runner = QueuedRunner(dispatcher=harness.dispatcher, lease=60)
    configure(storages={"default": harness.storage}, runner=runner)
    try:
        yield harness
    finally:
        configure()
        runner.close()
        harness.close()


@pytest.fixture(params=ENGINES, ids=str)
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def workers(engine: Engine, tmp_path: Path) -> Iterator[Workers]:
    """``start()`` here enqueues on the engine; the test starts its worker processes."""
    yield from spawn_workers(engine, tmp_path, lease=60)


@pytest.fixture
def short_lease_workers(engine: Engine, tmp_path: Path) -> Iterator[Workers]:
    """As ``workers``, with a 3-second lease: the sweep takes over 3 s after a death."""
    yield from spawn_workers(engine, tmp_path, lease=3)
