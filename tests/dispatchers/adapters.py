"""The adapters the contract suite runs against: one entry each, the dotted path of its harness.

An adapter's harness (see :class:`tests.dispatchers.harness.Harness`) builds its dispatcher and
storage and runs the queued jobs as the engine's workers would. Add an adapter here and the
whole contract suite (``test_contract.py``) runs against it too; add its worker processes to
:data:`tests.dispatchers.workers.ENGINES` and the worker-process suite (``test_workers.py``)
does.
"""

from __future__ import annotations

import pytest

ADAPTERS = [
    pytest.param("tests.dispatchers.harness.MemoryHarness", id="memory"),
    pytest.param(
        "tests.dispatchers.harness_procrastinate.ProcrastinateHarness",
        id="procrastinate",
        marks=pytest.mark.django_db(transaction=True),
    ),
    pytest.param(
        "tests.dispatchers.harness_tasks.TasksHarness",
        id="tasks",
        # The test's transaction holds the task rows: db_worker --batch runs them in it.
        marks=pytest.mark.django_db,
    ),
]
