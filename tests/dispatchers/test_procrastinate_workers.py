"""``QueuedRunner`` on procrastinate under load, with real worker processes: ``python -m django
procrastinate worker`` (what ``manage.py procrastinate worker`` runs) on the test database
(``worker_settings``), started by this process's ``start()`` calls. What every engine's workers
do (a chain and a fan-out, timers, a dropped job, ``kill -9``) is in ``test_workers.py``.

The workers log to files in the test's ``tmp_path``; a failing test names them. Waits are for
an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import (
    PROCRASTINATE,
    Workers,
    all_completed,
    pids,
    recorded,
    spawn_workers,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """``start()`` here enqueues on procrastinate; the test starts the worker processes."""
    yield from spawn_workers(PROCRASTINATE, tmp_path, lease=60)


def job_statuses() -> Counter[str]:
    """Jobs by status; a job still ``doing`` may have committed its work already."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
        return Counter(dict(cursor.fetchall()))


@pytest.mark.slow
def test_four_workers_complete_200_instances_with_fan_outs_and_timers(workers: Workers) -> None:
    for number in range(4):
        workers.worker(f"worker-{number}", concurrency=2)
    ids = [workflows.Busy.start({}) for _ in range(200)]

    workers.wait_for(all_completed(ids), "all 200 completing", timeout=300)
    storage = DjangoStorage()
    ran_in: set[int] = set()
    for instance_id in ids:
        instance = storage.get(instance_id)
        assert recorded(instance) == {
            "Fork": 1,
            "Left": 1,
            "Right": 1,
            "Snooze": 1,
            "Join": 1,
            "Done": 1,
        }, instance_id
        ran_in |= pids(instance)
    assert len(ran_in) > 1  # the work was spread over the worker processes
    assert "failed" not in job_statuses()
