"""The contract every ``QueuedRunner`` dispatcher keeps, run over each adapter of
``adapters.ADAPTERS`` against real PostgreSQL and the engine's own worker.

In this process (one test transaction) a test drives the engine's worker in batch mode; the
process tests run its worker command as child processes, as in production, with
``hephaestus_worker`` as the sweep where a test needs one.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from pathlib import Path

import pytest
from django.db import connection, transaction

from hephaestus_django import HephaestusError, InstanceNotFound, Status, storages
from hephaestus_django.runtime.dispatch import StepJob
from tests.dispatchers import workflows
from tests.dispatchers.adapters import Adapter
from tests.dispatchers.conftest import Processes


class RolledBack(Exception):
    """Raised to roll a test's transaction back."""


def history(instance_id: object) -> list[tuple[str, str]]:
    instance = storages["default"].get(instance_id)
    return [(entry.step.__name__, entry.event) for entry in instance.execution_history]


def markers(folder: Path, key: str) -> list[str]:
    return sorted(path.name for path in folder.glob(f"{key}-*"))


def status(instance_id: object) -> Status:
    return storages["default"].get(instance_id).status


# --- in this process -------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_returns_before_the_step_runs_and_leaves_one_job(
    queued: Adapter, tmp_path: Path
) -> None:
    """The caller never waits for a step: start() writes the instance and its first job."""
    instance_id = workflows.QueuedChain.start({"dir": str(tmp_path)})

    instance = storages["default"].get(instance_id)
    assert instance.status is Status.RUNNING
    assert instance.completed_steps == set()
    assert list(tmp_path.iterdir()) == []
    assert queued.queued() == 1


@pytest.mark.django_db
def test_a_rolled_back_transaction_leaves_neither_instance_nor_job(
    queued: Adapter, tmp_path: Path
) -> None:
    """The job is written in the caller's transaction, not after it: a rollback takes both,
    so no job ever names an instance that was never committed."""
    started: list[object] = []

    def start_then_roll_back() -> None:
        with transaction.atomic():
            started.append(workflows.QueuedChain.start({"dir": str(tmp_path)}))
            assert queued.queued() == 1  # inside the transaction already
            raise RolledBack

    with pytest.raises(RolledBack):
        start_then_roll_back()

    (instance_id,) = started
    assert queued.queued() == 0
    with pytest.raises(InstanceNotFound):
        storages["default"].get(instance_id)


@pytest.mark.django_db
def test_the_engines_worker_runs_a_chain_and_a_fan_out(queued: Adapter, tmp_path: Path) -> None:
    chain = workflows.QueuedChain.start({"dir": str(tmp_path)})
    fan_out = workflows.QueuedFanOut.start({"dir": str(tmp_path)})

    queued.drain()

    assert history(chain) == [("Fetch", "ok"), ("Verify", "ok"), ("Store", "ok"), ("Done", "done")]
    steps = history(fan_out)
    assert sorted(steps[1:3]) == [("Left", "ok"), ("Right", "ok")]
    assert [steps[0], *steps[3:]] == [("Open", "ok"), ("Rejoin", "ok"), ("Done", "done")]
    assert status(chain) is status(fan_out) is Status.COMPLETED
    assert queued.queued() == 0


@pytest.mark.django_db
def test_a_job_delivered_twice_has_one_effect(queued: Adapter, tmp_path: Path) -> None:
    """The second delivery finds its step no longer runnable and does nothing: the step does
    not even execute again, and no result is recorded twice."""
    instance_id = workflows.QueuedChain.start({"dir": str(tmp_path)})
    assert queued.duplicate() == 1

    queued.drain()

    assert markers(tmp_path, "fetch") == [f"fetch-1-{os.getpid()}"]
    assert history(instance_id) == [
        ("Fetch", "ok"),
        ("Verify", "ok"),
        ("Store", "ok"),
        ("Done", "done"),
    ]


@pytest.mark.django_db
def test_an_event_delivered_twice_has_one_effect(queued: Adapter, tmp_path: Path) -> None:
    instance_id = workflows.QueuedApproval.start({"dir": str(tmp_path)})
    queued.drain()
    assert status(instance_id) is Status.WAITING

    workflows.QueuedApproval.resume(instance_id, "approved")
    with pytest.raises(HephaestusError):
        workflows.QueuedApproval.resume(instance_id, "approved")
    assert queued.queued() == 1
    queued.drain()

    assert markers(tmp_path, "after_approval") == [f"after_approval-1-{os.getpid()}"]
    assert history(instance_id) == [
        ("Approval", "approved"),
        ("AfterApproval", "ok"),
        ("Done", "done"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["unknown", "deleted", "corrupt", "unregistered", "malformed"])
def test_a_job_naming_an_unusable_instance_is_logged_once_and_dropped(
    queued: Adapter, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """Running such a job again would not help: it is logged and dropped, the engine records
    it as done, and the worker goes on with the next job."""
    victim = uuid.uuid4()
    if case == "unknown":
        queued.enqueue_payload(StepJob("default", victim, workflows.Fetch.path()).payload())
    elif case == "malformed":
        queued.enqueue_payload({"kind": "step", "storage": "default", "instance": "nonsense"})
    else:
        victim = workflows.QueuedChain.start({"dir": str(tmp_path)})
        with connection.cursor() as cursor:
            change = {
                "deleted": "DELETE FROM workflow_instances WHERE id = %s",
                "corrupt": "UPDATE workflow_instances SET state = '{}' WHERE id = %s",
                "unregistered": "UPDATE workflow_instances SET workflow = 'gone.Gone' "
                "WHERE id = %s",
            }[case]
            cursor.execute(change, [victim])
    survivor = workflows.QueuedChain.start({"dir": str(tmp_path / "survivor")})
    (tmp_path / "survivor").mkdir()
    caplog.set_level(logging.INFO, logger="hephaestus_django.queue")

    queued.drain()

    dropped = [
        record.getMessage()
        for record in caplog.records
        if record.name == "hephaestus_django.queue" and "dropped" in record.getMessage()
    ]
    assert len(dropped) == 1, dropped
    assert ("nonsense" if case == "malformed" else str(victim)) in dropped[0]
    assert status(survivor) is Status.COMPLETED
    assert queued.queued() == 0


# --- worker processes ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_processes_run_a_chain_and_a_fan_out_to_completion(
    processes: Processes, tmp_path: Path
) -> None:
    """Two of the engine's workers; every step runs in one of them, the join once."""
    workers = {processes.worker().pid, processes.worker().pid}
    chain = workflows.QueuedChain.start({"dir": str(tmp_path)})
    fan_out = workflows.QueuedFanOut.start({"dir": str(tmp_path)})

    processes.wait_until(
        lambda: status(chain) is status(fan_out) is Status.COMPLETED, "completed both"
    )

    assert history(chain) == [("Fetch", "ok"), ("Verify", "ok"), ("Store", "ok"), ("Done", "done")]
    assert [step for step, _event in history(fan_out)].count("Rejoin") == 1
    ran = [path.name for path in tmp_path.iterdir() if not path.name.endswith(".log")]
    assert len(ran) == 7  # fetch, verify, store, open, left, right, rejoin: each once
    assert {int(name.rsplit("-", 1)[1]) for name in ran} <= workers


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_job_fires_a_timer_with_no_sweep_running(
    processes: Processes, tmp_path: Path
) -> None:
    """The timer becomes a job due at its time; no ``hephaestus_worker`` runs, so only that
    job can have fired it."""
    processes.worker()
    instance_id = workflows.QueuedTimer.start({"dir": str(tmp_path)})

    processes.wait_until(lambda: status(instance_id) is Status.COMPLETED, "fired the timer")

    assert history(instance_id) == [("BeforeDoze", "ok"), ("Doze", "timeout"), ("Done", "done")]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_step_its_step_runs_again_once_the_lease_lapses(
    processes: Processes, tmp_path: Path
) -> None:
    """The engine does not re-run the killed worker's job; the instance's lease lapses (no
    heartbeat renews it) and the sweep enqueues the step again for another worker. The step
    ran twice (at least once), its result is recorded once."""
    victim = processes.worker()
    instance_id = workflows.QueuedCrunching.start({"dir": str(tmp_path)})
    processes.wait_until(lambda: bool(markers(tmp_path, "grind")), "started the step")
    victim.send_signal(signal.SIGKILL)  # kill -9 in the middle of the step
    victim.wait()
    survivor = processes.worker()
    processes.sweep()

    processes.wait_until(lambda: status(instance_id) is Status.COMPLETED, "completed")

    assert markers(tmp_path, "grind") == [f"grind-1-{victim.pid}", f"grind-2-{survivor.pid}"]
    assert history(instance_id) == [("Grind", "ok"), ("Done", "done")]
    assert storages["default"].get(instance_id).context.result(workflows.Grind) == {
        "pid": survivor.pid
    }
