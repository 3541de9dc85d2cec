"""Rate limits with ``LocalRunner`` in real processes: eight processes start instances of a
workflow whose starts are limited to 10 a second, and whose second step is limited to 10
calls a second; four ``hephaestus_worker`` processes run what waited. Each start and each call
leaves its moment (one clock for the machine); in no sliding window of a second are there more
than 10 of either. Every instance completes.

The issue's figure is 1,000 starts (about two minutes at 10 a second);
``HEPHAESTUS_RATE_STARTS`` sets the number, 200 by default to keep the slow suite short.
"""

from __future__ import annotations

import os
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
from tests.support.flow_control import most_in_a_window

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STARTERS = 8
STARTS = int(os.environ.get("HEPHAESTUS_RATE_STARTS", "200"))


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


def test_eight_starters_never_start_or_call_more_than_the_rate(
    children: Children, tmp_path: Path
) -> None:
    go = children.go_file()
    starters = [
        children.spawn(
            "start",
            {
                "workflow": workflows.RateLimited.path(),
                "context": {"dir": str(tmp_path)},
                "count": STARTS // STARTERS,
                "go": str(go),
            },
            LEASE="10",
        )
        for _ in range(STARTERS)
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
    ids = [i for process in starters for i in children.result(process)["ids"]]
    assert len(ids) == STARTS // STARTERS * STARTERS
    deadline = time.monotonic() + STARTS / 10 * 3 + 120
    storage = DjangoStorage()
    remaining = list(ids)
    while remaining:
        remaining = [i for i in remaining if storage.get(i).status is not Status.COMPLETED]
        assert time.monotonic() < deadline, f"{len(remaining)} instances did not complete"
        time.sleep(0.5)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        children.result(worker)

    starts, calls = tmp_path / "starts", tmp_path / "calls"
    assert len(starts.read_text().splitlines()) == len(ids)
    assert len(calls.read_text().splitlines()) == len(ids)
    assert most_in_a_window(starts, 1.0) <= 10
    assert most_in_a_window(calls, 1.0) <= 10
