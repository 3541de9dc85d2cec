"""``QueuedRunner`` on procrastinate with real worker processes: ``python -m django procrastinate
worker`` (what ``manage.py procrastinate worker`` runs) and ``hephaestus_worker`` as the sweep,
on the test database (``worker_settings``), started by this process's ``start()`` calls.

The workers log to files in the test's ``tmp_path``; a failing test names them. Waits are for
an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django.core.instance import Instance
from hephaestus_django.queues.procrastinate import (
    STEP_TASK,
    WAKE_UP_TASK,
    ProcrastinateDispatcher,
)
from hephaestus_django.runtime import QueuedRunner, configure
from hephaestus_django.runtime.dispatch import StepJob
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.harness_procrastinate import clear_jobs
from tests.processes.children import REPO, Children

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "hephaestus"
POLL = "0.2"  # seconds between a worker's looks for scheduled jobs (wake-ups); default 5


class Workers:
    """Worker processes on the test database, killed at the end of the test."""

    def __init__(self, tmp_path: Path, lease: float) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **Children(tmp_path, dict(connection.settings_dict)).env,
            "DJANGO_SETTINGS_MODULE": "tests.dispatchers.worker_settings",
            "LEASE": str(lease),
        }
        self.processes: list[subprocess.Popen[str]] = []

    def spawn(self, *argv: str, name: str) -> subprocess.Popen[str]:
        log = self.tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "django", *argv],
            cwd=REPO,
            env=self.env,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def worker(self, name: str, concurrency: int = 1) -> subprocess.Popen[str]:
        """``manage.py procrastinate worker`` on the queue of hephaestus' jobs."""
        return self.spawn(
            "procrastinate",
            "worker",
            "--queues",
            QUEUE,
            "--concurrency",
            str(concurrency),
            "--fetch-job-polling-interval",
            POLL,
            name=name,
        )

    def sweep(self) -> subprocess.Popen[str]:
        """``manage.py hephaestus_worker``: fires lost timers, re-enqueues lapsed work."""
        return self.spawn("hephaestus_worker", "--interval", "0.2", name="sweep")

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.tmp_path.glob("*.log")
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def spawn_workers(tmp_path: Path, lease: float) -> Iterator[Workers]:
    clear_jobs()
    runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue=QUEUE), lease=lease)
    configure(storages={"default": DjangoStorage()}, runner=runner)
    workers = Workers(tmp_path, lease)
    try:
        yield workers
    finally:
        workers.stop()
        configure()
        runner.close()
        clear_jobs()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """``start()`` here enqueues on procrastinate; the test starts the worker processes."""
    yield from spawn_workers(tmp_path, lease=60)


@pytest.fixture
def short_lease_workers(tmp_path: Path) -> Iterator[Workers]:
    """As ``workers``, with a 3-second lease: the sweep takes over 3 s after a death."""
    yield from spawn_workers(tmp_path, lease=3)


def wait_for(done: Callable[[], bool], what: str, workers: Workers, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen\n{workers.logs()}"
        time.sleep(0.1)


def statuses(ids: list[uuid.UUID]) -> Counter[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM workflow_instances WHERE id = ANY(%s) GROUP BY status",
            [ids],
        )
        return Counter(dict(cursor.fetchall()))


def all_completed(ids: list[uuid.UUID]) -> Callable[[], bool]:
    return lambda: statuses(ids) == {"completed": len(ids)}


def deferred() -> list[tuple[str, datetime | None]]:
    """Every job deferred (any status): its task and when it was scheduled for."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT task_name, scheduled_at FROM procrastinate_jobs ORDER BY id")
        return list(cursor.fetchall())


def job_statuses() -> Counter[str]:
    """Jobs by status; a job still ``doing`` may have committed its work already."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
        return Counter(dict(cursor.fetchall()))


def recorded(instance: Instance) -> Counter[str]:
    return Counter(entry.step.__name__ for entry in instance.execution_history)


def pids(instance: Instance) -> set[int]:
    return {result["pid"] for result in instance.context.steps.values() if "pid" in result}


def test_a_worker_runs_a_chain_and_a_fan_out_with_its_join(workers: Workers) -> None:
    workers.worker("worker")
    chain = workflows.Chain.start({})
    diamond = workflows.Diamond.start({})

    wait_for(all_completed([chain, diamond]), "both completing", workers)
    storage = DjangoStorage()
    assert recorded(storage.get(chain)) == {"First": 1, "Second": 1, "Third": 1, "Done": 1}
    assert recorded(storage.get(diamond)) == {
        "Fork": 1,
        "Left": 1,
        "Right": 1,
        "Join": 1,
        "Done": 1,
    }
    assert pids(storage.get(chain)) != {os.getpid()}  # run by the worker, not here
    assert [task for task, _ in deferred()] == [STEP_TASK] * (3 + 4)  # one per step, but Done
    assert "failed" not in job_statuses()


def test_a_wake_up_job_fires_a_timer_with_no_sweep_running(workers: Workers) -> None:
    workers.worker("worker")
    instance_id = workflows.Napping.start({})

    wait_for(all_completed([instance_id]), "the timer firing", workers)
    assert recorded(DjangoStorage().get(instance_id)) == {"First": 1, "Nap": 1, "Done": 1}
    (wakeup,) = [job for job in deferred() if job[0] == WAKE_UP_TASK]
    assert wakeup[1] is not None  # scheduled: not taken before the timer is due
    assert "failed" not in job_statuses()


def test_a_job_for_an_unknown_instance_is_logged_once_and_the_worker_goes_on(
    workers: Workers,
) -> None:
    missing = uuid.uuid4()
    ProcrastinateDispatcher(queue=QUEUE).enqueue_steps(
        [StepJob("default", missing, workflows.First.path())]
    )
    after = workflows.Chain.start({})
    workers.worker("worker")

    wait_for(all_completed([after]), "the next instance completing", workers)
    log = (workers.tmp_path / "worker.log").read_text()
    assert log.count(str(missing)) == 1, log
    assert f"dropped the step {workflows.First.path()} of instance {missing}" in log
    assert len(deferred()) == 4
    assert "failed" not in job_statuses()  # the dropped job is done with, not failed


@pytest.mark.slow
def test_four_workers_complete_200_instances_with_fan_outs_and_timers(workers: Workers) -> None:
    for number in range(4):
        workers.worker(f"worker-{number}", concurrency=2)
    ids = [workflows.Busy.start({}) for _ in range(200)]

    wait_for(all_completed(ids), "all 200 completing", workers, timeout=300)
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


@pytest.mark.slow
def test_a_worker_killed_mid_step_its_step_runs_again_on_another(
    short_lease_workers: Workers, tmp_path: Path
) -> None:
    workers = short_lease_workers
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    first = workers.worker("worker-1")
    instance_id = workflows.Crunching.start({"dir": str(attempts)})
    wait_for(lambda: any(attempts.glob("attempt-1-*")), "the first attempt", workers)
    (started,) = attempts.glob("attempt-1-*")
    assert started.name == f"attempt-1-{first.pid}"

    first.send_signal(signal.SIGKILL)  # kill -9 in the middle of the step
    first.wait()
    workers.worker("worker-2")
    workers.sweep()

    wait_for(all_completed([instance_id]), "the step running again", workers)
    (again,) = attempts.glob("attempt-2-*")
    assert again.name != f"attempt-2-{first.pid}"
    assert sorted(path.name.split("-")[1] for path in attempts.iterdir()) == ["1", "2"]
    instance = DjangoStorage().get(instance_id)
    assert recorded(instance) == {"First": 1, "Crunch": 1, "Done": 1}
    assert f"took over instance {instance_id}" in (tmp_path / "sweep.log").read_text()
