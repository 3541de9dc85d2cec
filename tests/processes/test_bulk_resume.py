"""A bulk retry of 10,000 failed instances whose worker is killed (``kill -9``) half way: another
worker process resumes it, and each instance is retried exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django import LocalRunner, Status
from hephaestus_django.models import BulkOperation, BulkOutcome
from hephaestus_django.runtime import bulk, configure
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers.workflows import BulkRetried
from tests.processes.children import REPO, Children
from tests.support.bulk import copies

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

INSTANCES = 10_000
LEASE = 2.0


class Workers:
    """``manage.py hephaestus_worker`` processes on the test database, killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **Children(tmp_path, dict(connection.settings_dict)).env,
            "DJANGO_SETTINGS_MODULE": "tests.processes.bulk_worker_settings",
            "LEASE": str(LEASE),
        }
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, name: str) -> subprocess.Popen[str]:
        log = (self.tmp_path / f"{name}.log").open("a")
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "hephaestus_worker", "--interval", "0.2"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.tmp_path.glob("*.log")
        )

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 150) -> None:
        """Poll ``done``; fail naming ``what`` (with the logs) if it does not hold within
        ``timeout`` s (a bound on a hang, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what} did not happen\n{self.logs()}"
            time.sleep(0.1)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    spawned = Workers(tmp_path)
    try:
        yield spawned
    finally:
        spawned.kill_all()
        configure()


def outcomes() -> int:
    return BulkOutcome.objects.count()


def test_a_bulk_retry_killed_half_way_is_resumed_and_retries_each_instance_once(
    workers: Workers,
) -> None:
    first = BulkRetried.start()
    storage = DjangoStorage()
    assert storage.get(first).status is Status.FAILED
    copies(first, INSTANCES - 1)
    made = bulk.create(storage, bulk.spec("retry", BulkRetried, batch_size=250))

    doomed = workers.start("doomed")
    workers.wait_for(lambda: outcomes() >= INSTANCES // 2, "half the instances retried")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    half = outcomes()
    assert half < INSTANCES  # killed before the end: the rest is the next worker's

    workers.start("survivor")
    workers.wait_for(
        lambda: BulkOperation.objects.get(pk=made.id).status == "done", "the operation's end"
    )
    final = storage.bulk_state(made.id)
    assert (final.done, final.refused) == (INSTANCES, 0)  # a second retry would be refused
    assert outcomes() == INSTANCES
    instances = storage.query(workflow=BulkRetried)
    assert len(instances) == INSTANCES
    for instance in instances:
        assert instance.status is Status.COMPLETED, instance.id
        failures = [e for e in instance.execution_history if e.error is not None]
        assert len(failures) == 1, instance.id  # the one failure retry recorded: once
