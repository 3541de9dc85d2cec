"""Concurrency limits with ``LocalRunner`` in real processes: five processes start 200
instances at once (each caller runs what its limits admit, and returns), four
``hephaestus_worker`` processes run what waited in line. The limits hold across all of them,
sampled throughout and checked on every execution's interval afterwards; every instance
completes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django import Status
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.processes.children import Children
from tests.support.flow_control import TENANTS, most_at_once, sample

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


def test_callers_and_four_workers_never_run_more_than_the_limits(
    children: Children, tmp_path: Path
) -> None:
    (tmp_path / "running").mkdir()
    go = children.go_file()
    starters = [
        children.spawn(
            "start",
            {
                "workflow": workflows.Throttled.path(),
                "context": {"dir": str(tmp_path), "tenant": tenant},
                "count": 40,
                "go": str(go),
            },
            LEASE="10",
        )
        for tenant in TENANTS
    ]
    workers = [
        children.spawn(
            "manage",
            {"argv": ["hephaestus_worker", "--interval", "0.05"]},
            log=tmp_path / f"worker-{n}.log",
            LEASE="10",
        )
        for n in range(4)
    ]
    go.touch()
    seen: dict[str, int] = {}
    ids = [i for process in starters for i in children.result(process)["ids"]]
    assert len(ids) == 200
    deadline = time.monotonic() + 600
    storage = DjangoStorage()
    while any(storage.get(i).status is not Status.COMPLETED for i in ids):
        sample(tmp_path / "running", seen)
        assert time.monotonic() < deadline, "not every instance completed"
        time.sleep(0.05)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        children.result(worker)

    assert seen.get("gateway", 0) <= 3, seen
    assert all(seen.get(f"tenant:{tenant}", 0) <= 1 for tenant in TENANTS), seen
    most = most_at_once(tmp_path / "intervals")
    assert 2 <= most[("gateway", "-")] <= 3, most  # in parallel, never past the limit
    assert all(most[("tenant", tenant)] == 1 for tenant in TENANTS), most
    assert len((tmp_path / "intervals").read_text().splitlines()) >= 400
    assert all(use.holding == 0 for use in storage.limits())
