"""The ``adapter`` fixture: each contract test runs once per adapter of ``adapters.ADAPTERS``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils.module_loading import import_string

from hephaestus_django.runtime import QueuedRunner, configure
from tests.dispatchers.adapters import ADAPTERS
from tests.dispatchers.harness import Harness


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
