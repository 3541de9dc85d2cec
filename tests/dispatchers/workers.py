"""Worker processes of the job engines, on the test database, for the process tests.

Each :class:`Engine` says how this process enqueues on it (its dispatcher) and which
``manage.py`` command runs its workers; :class:`Workers` starts them, with
``hephaestus_worker`` as the sweep where a test needs one, and stops them at the end of the
test. The processes use ``worker_settings`` with the engine's dispatcher; each logs to a file in
the test's ``tmp_path``, which a failing wait prints.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import QueuedRunner, configure
from hephaestus_django.storage import DjangoStorage
from tests.processes.children import REPO, Children

PROCRASTINATE_QUEUE = "hephaestus"
POLL = "0.2"  # seconds between a worker's looks for jobs scheduled later (wake-ups)


@dataclass(frozen=True)
class StepJobs:
    """An engine's step jobs, counted: every one it was given (finished ones stay in its
    table), and those that no worker has taken yet."""

    enqueued: int
    waiting: int


@dataclass(frozen=True)
class Engine:
    """A job engine as the process tests drive it."""

    name: str
    dispatcher: str
    """The dotted path of its dispatcher (built with its default options, as the workers do)."""
    worker: Callable[[int], tuple[str, ...]]
    """The ``manage.py`` arguments of one of its workers, given a concurrency."""
    clear: Callable[[], None]
    """Empty its job tables."""
    failed: Callable[[], int]
    """How many of its jobs ended as failed (a dropped job is done with, not failed)."""
    step_jobs: Callable[[], StepJobs]
    """How many step jobs it was given, and how many of them still wait for a worker."""

    def __str__(self) -> str:
        return self.name


def _procrastinate_worker(concurrency: int) -> tuple[str, ...]:
    return (
        "procrastinate",
        "worker",
        "--queues",
        PROCRASTINATE_QUEUE,
        "--concurrency",
        str(concurrency),
        "--fetch-job-polling-interval",
        POLL,
    )


def _procrastinate_clear() -> None:
    from tests.dispatchers.harness_procrastinate import clear_jobs

    clear_jobs()


def _procrastinate_failed() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'")
        (count,) = cursor.fetchone()
    return int(count)


def _procrastinate_step_jobs() -> StepJobs:
    from hephaestus_django.queues.procrastinate import STEP_TASK

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'todo') FROM procrastinate_jobs"
            " WHERE task_name = %s",
            [STEP_TASK],
        )
        enqueued, waiting = cursor.fetchone()
    return StepJobs(int(enqueued), int(waiting))


def _db_worker(concurrency: int) -> tuple[str, ...]:
    # db_worker runs one task at a time: concurrency comes from more processes.
    return ("db_worker", "--interval", POLL, "--no-startup-delay", "--no-reload")


def _tasks_clear() -> None:
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()


def _tasks_failed() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(status="FAILED").count()


def _tasks_step_jobs() -> StepJobs:
    from django_tasks_db.models import DBTaskResult

    steps = DBTaskResult.objects.filter(task_path="hephaestus_django.queues.tasks.run_step")
    return StepJobs(steps.count(), steps.filter(status="READY").count())


PROCRASTINATE = Engine(
    name="procrastinate",
    dispatcher="hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
    worker=_procrastinate_worker,
    clear=_procrastinate_clear,
    failed=_procrastinate_failed,
    step_jobs=_procrastinate_step_jobs,
)
TASKS = Engine(
    name="tasks",
    dispatcher="hephaestus_django.queues.tasks.TasksDispatcher",
    worker=_db_worker,
    clear=_tasks_clear,
    failed=_tasks_failed,
    step_jobs=_tasks_step_jobs,
)
ENGINES = [PROCRASTINATE, TASKS]


class Workers:
    """Worker processes of one engine on the test database, stopped at the end of the test."""

    def __init__(self, engine: Engine, tmp_path: Path, lease: float) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.env = {
            **Children(tmp_path, dict(connection.settings_dict)).env,
            "DJANGO_SETTINGS_MODULE": "tests.dispatchers.worker_settings",
            "DISPATCHER": engine.dispatcher,
            "LEASE": str(lease),
        }
        self.processes: list[subprocess.Popen[str]] = []

    def spawn(self, *argv: str, name: str) -> subprocess.Popen[str]:
        """``manage.py`` ``argv`` in a child process, logging to ``<name>.log``."""
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
        """One of the engine's own workers."""
        return self.spawn(*self.engine.worker(concurrency), name=name)

    def sweep(self) -> subprocess.Popen[str]:
        """``manage.py hephaestus_worker``: fires lost timers, re-enqueues lapsed work."""
        return self.spawn("hephaestus_worker", "--interval", "0.2", name="sweep")

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.tmp_path.glob("*.log")
        )

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Poll ``done`` until it holds; fail naming ``what`` (with the workers' logs) if a
        worker exits or it does not hold within ``timeout`` s: a bound on a hang, not a timing
        assertion."""
        deadline = time.monotonic() + timeout
        while not done():
            for process in self.processes:
                code = process.poll()
                assert code is None or code < 0, f"a worker exited {code}\n{self.logs()}"
            assert time.monotonic() < deadline, f"{what} did not happen\n{self.logs()}"
            time.sleep(0.1)

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


def spawn_workers(engine: Engine, tmp_path: Path, lease: float) -> Iterator[Workers]:
    """``start()`` here enqueues on ``engine`` (a ``QueuedRunner`` with ``lease``); the test
    starts the worker processes."""
    engine.clear()
    runner = QueuedRunner(dispatcher=engine.dispatcher, lease=lease)
    configure(storages={"default": DjangoStorage()}, runner=runner)
    workers = Workers(engine, tmp_path, lease)
    try:
        yield workers
    finally:
        workers.stop()
        configure()
        runner.close()
        engine.clear()


def statuses(ids: list[uuid.UUID]) -> Counter[str]:
    """The instances' statuses, counted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM workflow_instances WHERE id = ANY(%s) GROUP BY status",
            [ids],
        )
        return Counter(dict(cursor.fetchall()))


def all_completed(ids: list[uuid.UUID]) -> Callable[[], bool]:
    return lambda: statuses(ids) == {"completed": len(ids)}


def recorded(instance: Instance) -> Counter[str]:
    """How often each step's result is in the history."""
    return Counter(entry.step.__name__ for entry in instance.execution_history)


def pids(instance: Instance) -> set[int]:
    """The processes that ran the instance's steps (their results say)."""
    return {result["pid"] for result in instance.context.steps.values() if "pid" in result}
