"""The dispatcher contract with real worker processes, for each job engine
(``workers.ENGINES``): the engine's own worker command (``manage.py procrastinate worker``,
``manage.py db_worker``) and ``hephaestus_worker`` as the sweep, on the test database, running
the jobs of this process's ``start()`` calls.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from hephaestus_django.runtime import QueuedRunner
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.dispatch import StepJob
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import (
    Workers,
    all_completed,
    pids,
    recorded,
)

pytestmark = pytest.mark.django_db(transaction=True)


def markers(folder: Path) -> list[str]:
    """The steps' marker files (``<step_key>-<attempt>-<pid>``), one per run of a step."""
    return sorted(path.name for path in folder.iterdir())


def test_two_workers_run_a_chain_and_a_fan_out_each_step_once(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    started = {workers.worker("worker-1").pid, workers.worker("worker-2").pid}
    chain = workflows.Chain.start({"dir": str(ran)})
    diamond = workflows.Diamond.start({"dir": str(ran)})

    workers.wait_for(all_completed([chain, diamond]), "both completing")
    storage = DjangoStorage()
    assert recorded(storage.get(chain)) == {"First": 1, "Second": 1, "Third": 1, "Done": 1}
    assert recorded(storage.get(diamond)) == {
        "Fork": 1,
        "Left": 1,
        "Right": 1,
        "Join": 1,
        "Done": 1,
    }
    # every step ran once, in one of the workers (not here)
    runs = markers(ran)
    assert sorted(name.split("-")[0] for name in runs) == sorted(
        ["first", "second", "third", "fork", "left", "right", "join"]
    )
    assert {name.rsplit("-", 2)[1] for name in runs} == {"1"}
    assert {int(name.rsplit("-", 1)[1]) for name in runs} <= started
    assert pids(storage.get(chain)) <= started
    assert os.getpid() not in started
    assert workers.engine.failed() == 0


def test_a_wake_up_job_fires_a_timer_with_no_sweep_running(workers: Workers) -> None:
    """The timer becomes a job due at its time; no ``hephaestus_worker`` runs, so only that
    job can have fired it."""
    workers.worker("worker")
    instance_id = workflows.Napping.start({})

    workers.wait_for(all_completed([instance_id]), "the timer firing")
    assert recorded(DjangoStorage().get(instance_id)) == {"First": 1, "Nap": 1, "Done": 1}
    assert workers.engine.failed() == 0


def test_a_job_for_an_unknown_instance_is_logged_once_and_the_worker_goes_on(
    workers: Workers,
) -> None:
    missing = uuid.uuid4()
    runner = backends.runner()
    assert isinstance(runner, QueuedRunner)
    runner.dispatcher.enqueue_steps([StepJob("default", missing, workflows.First.path())])
    after = workflows.Chain.start({})
    workers.worker("worker")

    workers.wait_for(all_completed([after]), "the next instance completing")
    log = (workers.tmp_path / "worker.log").read_text()
    assert log.count(str(missing)) == 1, log
    assert f"dropped the step {workflows.First.path()} of instance {missing}" in log
    assert workers.engine.failed() == 0  # the dropped job is done with, not failed


@pytest.mark.slow
def test_a_worker_killed_mid_step_its_step_runs_again_on_another(
    short_lease_workers: Workers, tmp_path: Path
) -> None:
    """Neither engine re-runs the killed worker's job; the instance's lease lapses (no
    heartbeat renews it) and the sweep enqueues the step again for another worker. The step
    ran twice (at least once), its result is recorded once."""
    workers = short_lease_workers
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    first = workers.worker("worker-1")
    instance_id = workflows.Crunching.start({"dir": str(attempts)})
    workers.wait_for(lambda: any(attempts.glob("crunch-1-*")), "the first attempt")

    first.send_signal(signal.SIGKILL)  # kill -9 in the middle of the step
    first.wait()
    second = workers.worker("worker-2")
    workers.sweep()

    workers.wait_for(all_completed([instance_id]), "the step running again")
    assert [name for name in markers(attempts) if name.startswith("crunch-")] == [
        f"crunch-1-{first.pid}",
        f"crunch-2-{second.pid}",
    ]
    instance = DjangoStorage().get(instance_id)
    assert recorded(instance) == {"First": 1, "Crunch": 1, "Done": 1}
    assert instance.context.result(workflows.Crunch) == {"pid": second.pid}
    assert f"took over instance {instance_id}" in (tmp_path / "sweep.log").read_text()
